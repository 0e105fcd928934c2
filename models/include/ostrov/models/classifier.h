#pragma once
// Image classifiers from the `model` object of an ostrov JSON config (task "classification"):
// torchvision's ResNets (optionally narrower), MobileNetV2 and MobileNetV3, whose state_dict
// keys are torchvision's — so a classifier trained here is a `backbone_weights` file for the
// models that take that backbone, and loads into torchvision with `load_state_dict`.
//
// Config keys (unknown keys are ostrov::ConfigError naming the key path, e.g. model.depht):
//   name                "resnet18" | "resnet34" | "resnet50" | "resnet101" | "mobilenet_v2" |
//                       "mobilenet_v3_large" | "mobilenet_v3_small"
//   backbone_channels   ResNets: width of the stem and layer1 (default 64, torchvision's; the
//                       key every model with a backbone reads)
//   zero_init_residual  ResNets: bool (default false)
//   dropout             MobileNets: before the last Linear (default 0.2, torchvision's)
//   weights             optional path: a whole-model state_dict (torchvision's keys; the last
//                       layer must have num_classes outputs), loaded strictly

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

namespace ostrov::io {
class ConfigReader;
}

namespace ostrov::models {

/// A built classifier: the network (torchvision's module and keys) and its logits.
struct Classifier {
  /// The config name ("resnet18", "mobilenet_v3_large", ...).
  std::string name;
  /// The network with torchvision's module names: parameters(), train(), to(), state dicts.
  std::shared_ptr<torch::nn::Module> module;
  /// images [N,3,H,W] float (ImageNet-normalised) -> logits [N, num_classes].
  std::function<at::Tensor(const at::Tensor&)> forward;
};

/// A classifier kind in the registry `build_classifier` reads: `parse` reads the kind's own
/// keys from the `model` section (ConfigError naming `model.key` for bad values) and returns
/// how to build it with `num_classes` outputs; `name` and `weights` are read around it and
/// unknown keys are rejected after.
struct ClassifierEntry {
  /// Allocates the classifier; c10::Error it throws becomes a ConfigError in build_classifier.
  using Make = std::function<Classifier()>;
  /// Reads the kind's keys through `model` and returns its Make; `name` is the config's name.
  using Parse = std::function<Make(io::ConfigReader& model, const std::string& name,
                                   int64_t num_classes)>;
  /// The config's `name` that selects this kind (non-empty and unique in the registry).
  std::string name;
  /// Reads the kind's keys; required (register_classifier throws ostrov::Error when empty).
  Parse parse;
};

/// Adds a classifier kind (`"name"` in configs); ostrov::Error when the name is taken.
void register_classifier(ClassifierEntry entry);

/// Builds the classifier named by `model_config["name"]` with `num_classes` outputs and loads
/// `weights` if given. `where` names the config file in errors. Throws ostrov::ConfigError
/// (unknown name or key, wrong type, invalid value — naming the key path) and ostrov::IoError
/// (weights: unreadable, or keys/shapes that do not match, listed).
Classifier build_classifier(const nlohmann::json& model_config, int64_t num_classes,
                            const std::string& where);

/// Validates `model_config` as `build_classifier` does (ConfigError) without allocating it.
void check_classifier(const nlohmann::json& model_config, int64_t num_classes,
                      const std::string& where);

/// The names `build_classifier` accepts (the registry's, in registration order).
std::vector<std::string> classifier_names();

}  // namespace ostrov::models
