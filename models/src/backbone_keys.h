#pragma once
// Internal to ostrov::models: the one spelling of a backbone in every model config — keys
// "backbone", "backbone_channels", "output_stride" (models/backbones/backbone.h) — read and
// checked in one place for models::build, build_detector, build_instance and build_classifier.

#include <cstdint>
#include <string>
#include <vector>

#include "ostrov/io/json.h"
#include "ostrov/models/backbones/backbone.h"

namespace ostrov::models::detail {

/// What a model accepts besides its default.
struct BackboneChoices {
  /// Names allowed for "backbone".
  std::vector<std::string> names;
  /// Whether "backbone_channels" is read (ResNets; otherwise it stays an unknown key).
  bool channels = true;
  /// Values allowed for "output_stride"; empty: the key is not read.
  std::vector<int64_t> output_strides;
};

/// `defaults` with the keys present in `r` applied; ConfigError naming the key path, the
/// model (`model`) and what it accepts for a name, width or stride it cannot take.
BackboneOptions read_backbone(io::ConfigReader& r, const std::string& model,
                              BackboneOptions defaults, const BackboneChoices& choices);

/// The five torchvision ResNet names, resnet18 ... resnet152.
std::vector<std::string> resnet_names();

}  // namespace ostrov::models::detail
