// `ostrov receptive-field`: per-layer stride, jump and receptive field of a network.

#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/models/build.h"
#include "ostrov/models/detection/build.h"
#include "ostrov/nn/receptive_field.h"

namespace ostrov::cli {

Command add_receptive_field(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "receptive-field", "Print each layer's stride, jump and receptive field (FCN lecture)");
  auto preset = std::make_shared<std::string>();
  auto config = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  sub->add_option("config", *config,
                  "Run config (JSON): the table of its model's encoder (a detector's: up to its "
                  "coarsest feature map)");
  sub->add_option("--preset", *preset, "A classic network instead: alexnet or vgg16")
      ->check(CLI::IsMember({"alexnet", "vgg16"}));
  sub->add_flag("--json", *as_json, "Print a JSON array instead of a table");
  return [sub, preset, config, as_json]() {
    if (!sub->parsed()) return -1;
    if (config->empty() == preset->empty()) {
      throw ConfigError("receptive-field: give either CONFIG.json or --preset alexnet|vgg16");
    }
    std::vector<nn::LayerSpec> layers;
    if (!preset->empty()) {
      layers = *preset == "alexnet" ? nn::alexnet_layers() : nn::vgg16_layers();
    } else {
      const auto json = io::read_json(*config);
      if (!json.contains("model")) throw ConfigError(*config + ": missing required object model");
      const bool detector = json.value("task", std::string()) == "detection";
      layers = detector ? models::detector_receptive_field_layers(json["model"], *config)
                        : models::receptive_field_layers(json["model"], *config);
    }
    const auto fields = nn::receptive_fields(layers);
    if (*as_json) {
      nlohmann::json rows = nlohmann::json::array();
      for (const auto& f : fields) {
        rows.push_back({{"layer", f.name}, {"kernel", f.kernel}, {"stride", f.stride},
                        {"padding", f.padding}, {"dilation", f.dilation}, {"jump", f.jump},
                        {"receptive_field", f.receptive_field}, {"start", f.start}});
      }
      std::cout << rows.dump() << std::endl;
    } else {
      std::cout << nn::format_receptive_fields(fields);
    }
    return kExitOk;
  };
}

}  // namespace ostrov::cli
