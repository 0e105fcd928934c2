#include "ostrov/models/classifier.h"

#include <c10/util/Exception.h>

#include "ostrov/core/error.h"
#include "ostrov/core/registry.h"
#include "ostrov/io/json.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/mobilenet_v2.h"
#include "ostrov/models/backbones/mobilenet_v3.h"
#include "ostrov/models/backbones/resnet.h"
#include "../backbone_keys.h"

namespace ostrov::models {

namespace {

/// Wraps a torchvision-style network whose forward gives the logits.
template <typename Holder>
Classifier classifier_of(const std::string& name, Holder net) {
  auto module = net.ptr();
  return {name, module, [module](const at::Tensor& x) { return module->forward(x); }};
}

ClassifierEntry::Make parse_resnet(io::ConfigReader& r, const std::string& name,
                                   int64_t num_classes) {
  if (r.has("base_channels")) {
    throw ConfigError(r.where() + ": key " + r.path_of("base_channels") + " is spelled " +
                      r.path_of("backbone_channels") + " (as in every model with a backbone)");
  }
  // The classifier is its backbone: name and width are read as every model reads them.
  const auto spec = detail::read_backbone(r, name, BackboneOptions(name).channels(64),
                                          {{name}, true, {}});
  ResNetOptions options(spec.resnet_depth());
  options.num_classes(num_classes)
      .base_channels(spec.channels())
      .zero_init_residual(r.get<bool>("zero_init_residual", options.zero_init_residual()));
  return [name, options] { return classifier_of(name, ResNet(options)); };
}

double read_dropout(io::ConfigReader& r) {
  const auto dropout = r.get<double>("dropout", 0.2);
  if (!(dropout >= 0.0 && dropout < 1.0)) {
    throw ConfigError(r.where() + ": key " + r.path_of("dropout") + " must be in [0, 1), got " +
                      std::to_string(dropout));
  }
  return dropout;
}

ClassifierEntry::Make parse_mobilenet_v3(io::ConfigReader& r, const std::string& name,
                                         int64_t num_classes) {
  detail::read_backbone(r, name, BackboneOptions(name), {{name}, false, {}});
  const auto options = MobileNetV3Options(name).num_classes(num_classes).dropout(read_dropout(r));
  return [name, options] { return classifier_of(name, MobileNetV3(options)); };
}

ClassifierEntry::Make parse_mobilenet_v2(io::ConfigReader& r, const std::string& name,
                                         int64_t num_classes) {
  detail::read_backbone(r, name, BackboneOptions(name), {{name}, false, {}});
  const auto options = MobileNetV2Options().num_classes(num_classes).dropout(read_dropout(r));
  return [name, options] { return classifier_of(name, MobileNetV2(options)); };
}

core::Registry<ClassifierEntry>& registry() {
  static core::Registry<ClassifierEntry> r(
      "classifier", {{"resnet18", parse_resnet},
                     {"resnet34", parse_resnet},
                     {"resnet50", parse_resnet},
                     {"resnet101", parse_resnet},
                     {"mobilenet_v2", parse_mobilenet_v2},
                     {"mobilenet_v3_large", parse_mobilenet_v3},
                     {"mobilenet_v3_small", parse_mobilenet_v3}});
  return r;
}

struct ParsedClassifier {
  ClassifierEntry::Make make;
  std::string weights;
};

ParsedClassifier parse(const nlohmann::json& model_config, int64_t num_classes,
                       const std::string& where) {
  io::ConfigReader r(model_config, where, "model");
  const auto name = r.required<std::string>("name");
  const ClassifierEntry* entry = registry().find(name);
  if (entry == nullptr) {
    throw ConfigError(where + ": key " + r.path_of("name") + ": unknown classifier \"" + name +
                      "\" (known: " + registry().known() + ")");
  }
  if (num_classes < 2) {
    throw ConfigError(where + ": a classifier needs num_classes >= 2, got " +
                      std::to_string(num_classes));
  }
  ParsedClassifier p;
  p.make = entry->parse(r, name, num_classes);
  p.weights = r.get<std::string>("weights", "");
  r.finish();
  return p;
}

}  // namespace

void register_classifier(ClassifierEntry entry) {
  if (!entry.parse) throw Error("register_classifier: the entry has no parse function");
  registry().add(std::move(entry));
}

std::vector<std::string> classifier_names() { return registry().names(); }

void check_classifier(const nlohmann::json& model_config, int64_t num_classes,
                      const std::string& where) {
  parse(model_config, num_classes, where);
}

Classifier build_classifier(const nlohmann::json& model_config, int64_t num_classes,
                            const std::string& where) {
  const ParsedClassifier p = parse(model_config, num_classes, where);
  Classifier net;
  try {
    net = p.make();
  } catch (const c10::Error& e) {
    throw ConfigError(where + ": model: " + e.what_without_backtrace());
  }
  if (!p.weights.empty()) io::load_weights(*net.module, p.weights, /*strict=*/true);
  return net;
}

}  // namespace ostrov::models
