#pragma once
// Image classifiers from the `model` object of an ostrov JSON config (task "classification"):
// torchvision's ResNets, optionally narrower, whose state_dict keys are torchvision's — so a
// classifier trained here is a `backbone_weights` file for the light SSD, Mask R-CNN head and
// PSPNet, and loads into torchvision with `load_state_dict`.
//
// Config keys (unknown keys are ostrov::ConfigError naming the key path, e.g. model.depht):
//   name                "resnet18" | "resnet34" | "resnet50" | "resnet101"
//   backbone_channels   width of the stem and layer1 (default 64, torchvision's; the key every
//                       model with a backbone reads)
//   zero_init_residual  bool (default false)
//   weights             optional path: a whole-model state_dict (torchvision's keys; fc must
//                       have num_classes outputs), loaded strictly

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ostrov/models/backbones/resnet.h"

namespace ostrov::models {

/// Builds the classifier named by `model_config["name"]` with `num_classes` outputs and loads
/// `weights` if given. `where` names the config file in errors. Throws ostrov::ConfigError
/// (unknown name or key, wrong type, invalid value — naming the key path) and ostrov::IoError
/// (weights: unreadable, or keys/shapes that do not match, listed).
ResNet build_classifier(const nlohmann::json& model_config, int64_t num_classes,
                        const std::string& where);

/// Validates `model_config` as `build_classifier` does (ConfigError) without allocating it.
void check_classifier(const nlohmann::json& model_config, int64_t num_classes,
                      const std::string& where);

/// The names `build_classifier` accepts.
std::vector<std::string> classifier_names();

}  // namespace ostrov::models
