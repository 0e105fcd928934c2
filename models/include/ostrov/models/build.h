#pragma once
// Building segmentation networks from the `model` object of an ostrov JSON config, for the CLI,
// the trainer and users' own programs.
//
// Design: every segmentation network is a torch::nn::Module (for parameters(), train(), to(),
// checkpoints) that also implements ostrov::models::SegmentationNetwork (forward to logits,
// forward_with_aux for deep supervision). `build` returns both views of the one object in a
// `SegmentationModel`; code that clones the module (data-parallel replicas) recovers the
// interface with `as_segmentation_network`.
//
// Config keys (unknown keys are ostrov::ConfigError naming the key path, e.g. model.depht):
//   name              "unet" | "fcn32s" | "fcn16s" | "fcn8s" | "fc_densenet56" |
//                     "fc_densenet67" | "fc_densenet103" | "pspnet" | "deeplabv3" | "fcn" |
//                     "deeplabv3plus" | "lraspp"
//   weights           optional path: a whole-model state_dict (ostrov or Python with the same
//                     names), loaded strictly after everything else
//   backbone_weights  optional path: a torchvision ImageNet checkpoint for the encoder
//                     (fcn*: AlexNet, converted by FCN::load_torchvision_alexnet; pspnet: the
//                     ResNet of backbone_depth; unet with a ResNet backbone: that ResNet,
//                     e.g. an `ostrov export` of a classification run); an error for the
//                     plain unet and fc_densenet*
//   input_padding     "reflect" | "zero" (every model)
//   backbone, backbone_channels, output_stride
//                     the one spelling of a backbone in every model config
//                     (models/backbones/backbone.h BackboneOptions)
//   unet:          backbone: "none" (default, the paper's encoder) with in_channels, depth,
//                  base_width, batch_norm, upsampling, padding; or "resnet18" | "resnet34" |
//                  "resnet50" | "resnet101" | "resnet152" (ResNetUNet) with
//                  backbone_channels, decoder_channels
//   fcn*:          backbone "alexnet" (the only one), fc_channels, dropout, skip16_stage,
//                  skip8_stage
//   fc_densenet*:  in_channels, growth_rate, layers_per_block, first_channels, dropout
//   pspnet:        backbone ("resnet18" default ... "resnet152"), backbone_channels,
//                  output_stride (8 default, or 16), bins, pooling, reduce_dimension,
//                  head_channels, dropout, aux, aux_channels, aux_weight
//   deeplabv3, fcn: torchvision's (segmentation/deeplab.h): backbone ("mobilenet_v3_large"
//                  default for deeplabv3, "resnet50" for fcn; any ResNet, or
//                  "mobilenet_v3_small"), backbone_channels (ResNets), output_stride (ResNets
//                  8 default or 16, MobileNetV3 16), aux, aux_weight; deeplabv3: atrous_rates
//   deeplabv3plus: backbone (as deeplabv3; ResNets at output_stride 16 by default),
//                  atrous_rates, low_level_channels, decoder_channels
//   lraspp:        backbone ("mobilenet_v3_large" or "mobilenet_v3_small"), inter_channels
//   deeplabv3, fcn, deeplabv3plus and lraspp take any size (no input_padding)
// Defaults are the options structs' (UNetOptions, ResNetUNetOptions, FCNOptions,
// FCDenseNetOptions, PSPNetOptions). Each name is an entry of a registry
// (register_segmentation_model adds one; docs/architecture.md "Models").

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/segmentation/network.h"
#include "ostrov/models/segmentation/padding.h"
#include "ostrov/nn/receptive_field.h"

namespace ostrov::io {
class ConfigReader;
}

namespace ostrov::models {

/// A built segmentation network: one object seen as a Module and as a SegmentationNetwork.
struct SegmentationModel {
  /// The config's `name` ("unet", "fcn8s", ...).
  std::string name;
  /// The network as a module: parameters(), train()/eval(), to(device), state dicts.
  std::shared_ptr<torch::nn::Module> module;
  /// The same object's segmentation interface.
  std::shared_ptr<SegmentationNetwork> network;

  /// x: `[N, C_in, H, W]` float -> logits `[N, K, H, W]`.
  at::Tensor forward(const at::Tensor& x) const { return network->forward(x); }
  /// Main logits, auxiliary logits (PSPNet; undefined otherwise) and the auxiliary weight.
  SegmentationOutput forward_with_aux(const at::Tensor& x) const {
    return network->forward_with_aux(x);
  }
};

/// What reading one model's config gives: how to build it and what else its kind knows.
struct SegmentationRecipe {
  /// Allocates the network (a torch::nn::Module that is a SegmentationNetwork).
  std::function<std::shared_ptr<torch::nn::Module>()> build;
  /// The layers of its encoder path (receptive_field_layers).
  std::function<std::vector<nn::LayerSpec>()> layers;
  /// Loads a torchvision classification state_dict (`model.backbone_weights`, read from
  /// `file`) into the built network's encoder; empty when the model has no such backbone.
  std::function<void(torch::nn::Module&, const io::StateDict&, const std::string& file)>
      load_backbone;
};

/// A segmentation model kind in the registry `build` reads: `parse` reads the model's own keys
/// from the `model` section (name, weights, backbone_weights and input_padding are read
/// before; unknown keys are rejected after) and returns its recipe.
struct SegmentationModelEntry {
  /// Reads the kind's keys through `model` and returns its recipe; `name` is the config's name,
  /// `padding` its input_padding.
  using Parse = std::function<SegmentationRecipe(io::ConfigReader& model, const std::string& name,
                                                 int64_t num_classes, InputPadding padding)>;
  /// The config's `name` that selects this kind (non-empty and unique in the registry).
  std::string name;
  /// Reads the kind's keys; required (register_segmentation_model throws ostrov::Error when
  /// empty).
  Parse parse;
};

/// Adds a model kind (`"name"` in configs); ostrov::Error when the name is taken.
void register_segmentation_model(SegmentationModelEntry entry);

/// Builds the network named by `model_config["name"]` with `num_classes` outputs, then loads
/// `backbone_weights` and `weights` if given. `where` names the config file in errors.
/// Throws ostrov::ConfigError (unknown name or key, wrong type, invalid value — naming the key
/// path `model.x`) and ostrov::IoError (weights files: unreadable, or keys/shapes that do not
/// match, listed).
SegmentationModel build(const nlohmann::json& model_config, int64_t num_classes,
                        const std::string& where);

/// The SegmentationNetwork interface of a module built here (or of its clone()); throws
/// c10::Error when the module is not a segmentation network.
std::shared_ptr<SegmentationNetwork> as_segmentation_network(
    const std::shared_ptr<torch::nn::Module>& module);

/// The names `build` accepts (the registry's, in registration order).
std::vector<std::string> segmentation_model_names();

/// The layers of the model's encoder path, for `ostrov receptive-field CONFIG` (apply
/// ostrov::nn::receptive_fields): unet: its 3x3 convs and 2x2 poolings down to the
/// bottleneck (with a ResNet backbone: that ResNet's stem and 3x3 convs); fcn*: AlexNet's features, fc6 (6x6) and fc7; fc_densenet*: the first conv,
/// each dense layer's 3x3 conv and each transition down's 1x1 conv and pooling, the
/// bottleneck's convs; pspnet: the ResNet stem and every 3x3 conv of the main path (with
/// their dilation) and the 3x3 bottleneck (the pyramid's global pooling is not a window).
/// Validates the config like `build` (ConfigError) without building the network.
std::vector<nn::LayerSpec> receptive_field_layers(const nlohmann::json& model_config,
                                                  const std::string& where);

}  // namespace ostrov::models
