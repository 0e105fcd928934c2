#include "ostrov/models/classifier.h"

#include <c10/util/Exception.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/io/weights.h"
#include "../backbone_keys.h"

namespace ostrov::models {

std::vector<std::string> classifier_names() {
  return {"resnet18", "resnet34", "resnet50", "resnet101"};
}

namespace {

struct ParsedClassifier {
  ResNetOptions options{18};
  std::string weights;
};

ParsedClassifier parse(const nlohmann::json& model_config, int64_t num_classes,
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
  if (r.has("base_channels")) {
    throw ConfigError(where + ": key " + r.path_of("base_channels") + " is spelled " +
                      r.path_of("backbone_channels") + " (as in every model with a backbone)");
  }
  // The classifier is its backbone: name and width are read as every model reads them.
  const auto spec = detail::read_backbone(r, name, BackboneOptions(name).channels(64),
                                          {{name}, true, {}});
  ParsedClassifier p;
  p.options = ResNetOptions(depth);
  p.options.num_classes(num_classes)
      .base_channels(spec.channels())
      .zero_init_residual(r.get<bool>("zero_init_residual", p.options.zero_init_residual()));
  p.weights = r.get<std::string>("weights", "");
  r.finish();
  return p;
}

}  // namespace

void check_classifier(const nlohmann::json& model_config, int64_t num_classes,
                      const std::string& where) {
  parse(model_config, num_classes, where);
}

ResNet build_classifier(const nlohmann::json& model_config, int64_t num_classes,
                        const std::string& where) {
  const ParsedClassifier p = parse(model_config, num_classes, where);
  ResNet net(p.options);
  if (!p.weights.empty()) io::load_weights(*net, p.weights, /*strict=*/true);
  return net;
}

}  // namespace ostrov::models
