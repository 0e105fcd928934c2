// `ostrov config --check CONFIG`: validates a run config the way `ostrov train` does before it
// trains — every key, the model and loss sections, and that the data folders and annotation
// files exist — without building a network or reading an image.

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "ostrov/tasks/config.h"

namespace ostrov::cli {

Command add_config(CLI::App& app) {
  auto* sub = app.add_subcommand("config", "Check a run config without training");
  auto check = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  sub->add_option("--check", *check, "Run config (JSON) to validate, data paths included")
      ->required();
  sub->add_option("--set", *overrides, "Override a config key: key.path=value")->take_all();
  return [sub, check, overrides]() {
    if (!sub->parsed()) return -1;
    auto config = tasks::load_run_config(*check, *overrides);
    tasks::check_split_exists(config, "train");
    if (!config.data.val.empty()) tasks::check_split_exists(config, "val");
    tasks::infer_num_classes(config);
    std::cout << *check << ": ok (task " << config.task << ", model "
              << config.model.value("name", std::string("?")) << ", "
              << config.data.num_classes << " classes)" << std::endl;
    return kExitOk;
  };
}

}  // namespace ostrov::cli
