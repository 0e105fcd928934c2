// `ostrov config --check CONFIG`: validates a run config the way `ostrov train` does before it
// trains — every key, the model and loss sections, and that the data folders and annotation
// files exist — without building a network or reading an image.
// `ostrov config --schema TASK`: every key a config of that task may hold, with its type,
// default and description (tasks/schema.h: read from the config readers themselves).

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "ostrov/tasks/config.h"
#include "ostrov/tasks/schema.h"
#include "ostrov/tasks/task.h"

namespace ostrov::cli {

Command add_config(CLI::App& app) {
  auto* sub = app.add_subcommand("config", "Check a run config, or list a task's config keys");
  auto check = std::make_shared<std::string>();
  auto schema = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  auto* check_opt =
      sub->add_option("--check", *check, "Run config (JSON) to validate, data paths included");
  auto* schema_opt = sub->add_option("--schema", *schema,
                                     "Print every key of a task's config (" +
                                         [] {
                                           std::string names;
                                           for (const auto& n : tasks::task_names()) {
                                             names += (names.empty() ? "" : ", ") + n;
                                           }
                                           return names;
                                         }() +
                                         ") with its type, default and description");
  auto* set_opt =
      sub->add_option("--set", *overrides, "Override a config key: key.path=value")->take_all();
  check_opt->excludes(schema_opt);
  set_opt->excludes(schema_opt);
  return [sub, check, schema, overrides]() {
    if (!sub->parsed()) return -1;
    if (!schema->empty()) {
      std::cout << tasks::format_schema(*schema, tasks::config_schema(*schema));
      return kExitOk;
    }
    if (check->empty()) {
      std::cerr << "ostrov config: give --check CONFIG or --schema TASK\n" << sub->help();
      return kExitUsage;
    }
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
