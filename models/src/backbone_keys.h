#pragma once
// Internal to ostrov::models: the one spelling of a backbone in every model config — keys
// "backbone", "backbone_channels", "output_stride" (models/backbones/backbone.h) — read and
// checked in one place for models::build, build_detector, build_instance and build_classifier.

#include <cstdint>
#include <string>
#include <vector>

#include "ostrov/io/json.h"
#include "ostrov/models/backbones/backbone.h"
#include "ostrov/nn/receptive_field.h"

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

// Layer tables for `ostrov receptive-field` (nn::receptive_fields), shared by the segmentation
// and detection builders.

/// A convolution / pooling row of a layer table.
nn::LayerSpec conv(std::string name, int64_t k, int64_t stride = 1, int64_t padding = 0,
                   int64_t dilation = 1);
nn::LayerSpec pool(std::string name, int64_t k, int64_t stride, int64_t padding = 0);

/// A ResNet's convolutions and pools at an output stride of 32, 16 (layer4 dilated instead
/// of strided) or 8 (layer3 and layer4, as in PSPNet).
std::vector<nn::LayerSpec> resnet_layers(int64_t depth, int64_t output_stride);

/// MobileNetV3's convolutions with a spatial window (the stem and each block's depthwise
/// conv; the dilated stage with stride 1), named by torchvision's feature indices.
std::vector<nn::LayerSpec> mobilenet_v3_layers(const BackboneOptions& b);

/// resnet_layers or mobilenet_v3_layers for `b`.
std::vector<nn::LayerSpec> backbone_layers(const BackboneOptions& b);

}  // namespace ostrov::models::detail
