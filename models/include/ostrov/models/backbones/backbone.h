#pragma once
// The interface of ostrov's ImageNet backbones (ResNet, VGG, AlexNet), what the segmentation,
// detection and instance models build on: named stages with their channels and strides,
// features up to the deepest stage asked for, and loading a torchvision classification
// state_dict without its classifier head. Models keep the backbone as a typed child under
// torchvision's names (e.g. PSPNet's "backbone.layer1.0.conv1.weight"), so their files stay
// compatible; configs name a backbone with one spelling (BackboneOptions, read by
// models::build and its siblings). docs/architecture.md "Models" says how to add one.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/ordered_dict.h>

#include "ostrov/io/state_dict.h"

namespace ostrov::models {

/// A feature extractor with named stages, in network order.
class Backbone {
 public:
  virtual ~Backbone() = default;

  /// The stages `forward_features` can return, in network order.
  virtual std::vector<std::string> stage_names() const = 0;
  /// Channels of a stage's output; c10::Error naming the stages for an unknown name.
  virtual int64_t stage_channels(const std::string& name) const = 0;
  /// Total stride of a stage's output with respect to the input (dilation included).
  virtual int64_t stage_stride(const std::string& name) const = 0;
  /// Channels of the last stage.
  int64_t out_channels() const { return stage_channels(stage_names().back()); }

  /// x: `[N,3,H,W]` -> the stages in `names` (network order), running only as far as the
  /// deepest of them.
  virtual torch::OrderedDict<std::string, at::Tensor> forward_features(
      const at::Tensor& x, const std::vector<std::string>& names) = 0;

  /// Copies a torchvision classification state_dict of the same architecture: every key but
  /// the classifier head's (`fc.*` / `classifier.*`) must match by name and shape (ostrov::IoError
  /// naming `source` and listing the keys otherwise); the head is ignored.
  virtual void load_torchvision(const io::StateDict& state, const std::string& source) = 0;

 protected:
  Backbone() = default;
  /// Copyable so that a derived torch::nn::Cloneable module can clone itself.
  Backbone(const Backbone&) = default;
  Backbone& operator=(const Backbone&) = default;
};

/// The backbone a model config names, in the spelling every model config shares:
///   "backbone"           "resnet18" | "resnet34" | "resnet50" | "resnet101" | "resnet152" |
///                        "vgg16" | "alexnet" | "mobilenet_v3_large" | "mobilenet_v3_small" |
///                        "mobilenet_v2" (each model accepts its own subset)
///   "backbone_channels"  a ResNet's stem and layer1 width (64 = torchvision's; 32 gives a
///                        half-width network for training from scratch on a CPU)
///   "output_stride"      32, or 16 / 8 with the last stages dilated instead of strided
///                        (ResNets; models that take dense features, e.g. PSPNet)
struct BackboneOptions {
  /// `name`: the "backbone" value; implicit, so a string converts.
  // NOLINTNEXTLINE(google-explicit-constructor): BackboneOptions("resnet50")
  /* implicit */ BackboneOptions(std::string name = "resnet18") : name_(std::move(name)) {}
  /// "backbone": one of backbone_names() (c10::Error from make_backbone otherwise).
  TORCH_ARG(std::string, name);
  /// "backbone_channels": ResNetOptions::base_channels; every other backbone needs 64.
  TORCH_ARG(int64_t, channels) = 64;
  /// "output_stride": ResNets take 32, 16 (layer4 dilated) or 8 (layer3 and layer4 dilated),
  /// MobileNetV3 32 or 16 (MobileNetV3Options::dilated), the others 32 only.
  TORCH_ARG(int64_t, output_stride) = 32;

 public:
  /// N of a "resnetN" name, 0 for other backbones.
  int64_t resnet_depth() const;
};

/// Builds the backbone without a classifier head (ResNet with num_classes 0, VGG/AlexNet
/// features, MobileNet `features`): a torch::nn::Module that is a Backbone. c10::Error for an
/// unknown name, a width other than 64 for anything but a ResNet, or an output stride the
/// backbone cannot give.
std::shared_ptr<torch::nn::Module> make_backbone(const BackboneOptions& options);

/// The Backbone interface of a module built by make_backbone (or a ResNet/VGG/AlexNet);
/// c10::Error when it is none.
std::shared_ptr<Backbone> as_backbone(const std::shared_ptr<torch::nn::Module>& module);

/// The names make_backbone accepts.
std::vector<std::string> backbone_names();

}  // namespace ostrov::models
