#include "ostrov/models/classifier.h"

#include <c10/util/Exception.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/io/weights.h"

namespace ostrov::models {

std::vector<std::string> classifier_names() {
  return {"resnet18", "resnet34", "resnet50", "resnet101"};
}

ResNet build_classifier(const nlohmann::json& model_config, int64_t num_classes,
                        const std::string& where) {
  io::ConfigReader r(model_config, where, "model");
  const auto name = r.required<std::string>("name");
  int64_t depth = 0;
  for (const auto& known : classifier_names()) {
    if (name == known) depth = std::stoll(known.substr(6));
  }
  if (depth == 0) {
    std::string known;
    for (const auto& n : classifier_names()) known += (known.empty() ? "" : ", ") + n;
    throw ConfigError(where + ": key " + r.path_of("name") + ": unknown classifier \"" + name +
                      "\" (known: " + known + ")");
  }
  if (num_classes < 2) {
    throw ConfigError(where + ": a classifier needs num_classes >= 2, got " +
                      std::to_string(num_classes));
  }
  ResNetOptions options(depth);
  options.num_classes(num_classes)
      .base_channels(r.get<int64_t>("base_channels", options.base_channels()))
      .zero_init_residual(r.get<bool>("zero_init_residual", options.zero_init_residual()));
  const auto weights = r.get<std::string>("weights", "");
  if (options.base_channels() < 1) {
    throw ConfigError(where + ": key " + r.path_of("base_channels") + " must be positive, got " +
                      std::to_string(options.base_channels()));
  }
  r.finish();
  ResNet net(options);
  if (!weights.empty()) io::load_weights(*net, weights, /*strict=*/true);
  return net;
}

}  // namespace ostrov::models
