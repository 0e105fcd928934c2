#pragma once
// Feature Pyramid Network (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR
// 2017) over an ImageNet backbone, as torchvision 0.14's FeaturePyramidNetwork,
// LastLevelMaxPool and BackboneWithFPN (resnet_fpn_backbone): the body's stages become levels
// "0", "1", ... of out_channels each, plus "pool" (the top level subsampled by 2), under the
// same state_dict keys, so torchvision's Faster/Mask R-CNN weights load unchanged.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>
#include <torch/ordered_dict.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/backbone.h"

namespace ostrov::models {

/// Options of FeaturePyramidNetwork.
struct FeaturePyramidNetworkOptions {
  /// Channels of each input level (fine to coarse) and of every output level.
  FeaturePyramidNetworkOptions(std::vector<int64_t> in_channels_list, int64_t out_channels)
      : in_channels_list_(std::move(in_channels_list)), out_channels_(out_channels) {}
  /// Channels of the input levels, finest first (ResNet-50 layer1..layer4: 256 ... 2048).
  TORCH_ARG(std::vector<int64_t>, in_channels_list);
  /// Channels of every output level (torchvision's R-CNNs: 256).
  TORCH_ARG(int64_t, out_channels);
  /// Append LastLevelMaxPool's "pool" level: max_pool2d(top, kernel 1, stride 2).
  TORCH_ARG(bool, last_level_max_pool) = true;
};

/// torchvision.ops.FeaturePyramidNetwork. Children and their state_dict keys:
///   inner_blocks.i.0  1x1 conv in_channels_list[i] -> out_channels, with bias (lateral)
///   inner_blocks.i.0  ...
///   layer_blocks.i.0  3x3 conv out_channels -> out_channels, padding 1, with bias (output)
/// (the ".0" is torchvision's Conv2dNormActivation without norm or activation). Initialised as
/// torchvision: kaiming_uniform_(a=1) weights, zero biases.
/// forward: the coarsest lateral is the first "inner"; going down, inner = lateral(x[i]) +
/// nearest-upsample(inner, to x[i]'s size); level i = layer_blocks[i](inner). Outputs finest
/// first, then "pool" when enabled.
class FeaturePyramidNetworkImpl : public torch::nn::Cloneable<FeaturePyramidNetworkImpl> {
 public:
  /// c10::Error for an empty in_channels_list or a channel count < 1.
  explicit FeaturePyramidNetworkImpl(FeaturePyramidNetworkOptions options);
  void reset() override;
  /// x: one [N,in_channels_list[i],h_i,w_i] map per level, finest first -> out_channels maps
  /// of the same sizes, plus the "pool" level when enabled. c10::Error for another count or
  /// channel number.
  std::vector<at::Tensor> forward(const std::vector<at::Tensor>& x);

  /// The options it was built with; reset() rebuilds from them.
  FeaturePyramidNetworkOptions options;
  /// Lateral 1x1 convs, one Sequential("0": Conv2d) per level.
  torch::nn::ModuleList inner_blocks{nullptr};
  /// Output 3x3 convs, one Sequential("0": Conv2d) per level.
  torch::nn::ModuleList layer_blocks{nullptr};
};
TORCH_MODULE(FeaturePyramidNetwork);

/// Options of BackboneWithFPN.
struct BackboneWithFPNOptions {
  /// `backbone`: the body (e.g. "resnet50"); the other options at torchvision's defaults.
  // NOLINTNEXTLINE(google-explicit-constructor): BackboneWithFPNOptions(BackboneOptions("resnet50"))
  /* implicit */ BackboneWithFPNOptions(BackboneOptions backbone = BackboneOptions("resnet50"))
      : backbone_(std::move(backbone)) {}
  /// The body (make_backbone; output stride 32).
  TORCH_ARG(BackboneOptions, backbone);
  /// The body's stages that become pyramid levels "0", "1", ..., finest first (torchvision's
  /// returned_layers [1,2,3,4]).
  TORCH_ARG(std::vector<std::string>, stages) =
      std::vector<std::string>{"layer1", "layer2", "layer3", "layer4"};
  /// Channels of every level (256).
  TORCH_ARG(int64_t, out_channels) = 256;
  /// torchvision's trainable_backbone_layers for a ResNet body: the last k of layer4, layer3,
  /// layer2, layer1, conv1 (5 adds bn1: everything) keep requires_grad; the rest is frozen.
  TORCH_ARG(int64_t, trainable_layers) = 5;
  /// Hold every BatchNorm of the body in eval mode with its affine parameters frozen, whatever
  /// train() says: torchvision's FrozenBatchNorm2d, which its R-CNNs use whenever they start
  /// from trained weights (the same arithmetic up to rounding: x * w / sqrt(var + eps) +
  /// (b - mean * w / sqrt(var + eps))). Files written with FrozenBatchNorm2d have no
  /// num_batches_tracked; FasterRCNNImpl::load_torchvision accepts them.
  TORCH_ARG(bool, frozen_batch_norm) = false;
};

/// torchvision's BackboneWithFPN: `body` (the backbone without its head; keys "body.conv1.weight",
/// "body.layer1.0.bn1.running_mean", ...) and `fpn` (FeaturePyramidNetwork on the chosen
/// stages; "fpn.inner_blocks.0.0.weight", ...). forward returns the levels "0", "1", ...,
/// "pool".
class BackboneWithFPNImpl : public torch::nn::Cloneable<BackboneWithFPNImpl> {
 public:
  /// c10::Error for an unknown backbone or stage, an output stride other than 32, or
  /// trainable_layers outside [0, 5] (ResNet bodies) .
  explicit BackboneWithFPNImpl(BackboneWithFPNOptions options);
  void reset() override;
  /// Keeps the body's BatchNorms in eval mode when frozen_batch_norm is set.
  void train(bool on = true) override;
  /// x: [N,3,H,W] -> "0", "1", ... (strides of the chosen stages), "pool"; out_channels each.
  torch::OrderedDict<std::string, at::Tensor> forward(const at::Tensor& x);
  /// Channels of every level.
  int64_t out_channels() const { return options.out_channels(); }
  /// Stride of each level with respect to the input, in forward's order ("pool" included).
  std::vector<int64_t> strides() const;
  /// Loads a torchvision classification state_dict into the body (Backbone::load_torchvision).
  void load_backbone(const io::StateDict& state, const std::string& source);

  /// The options it was built with; reset() rebuilds from them.
  BackboneWithFPNOptions options;
  /// The backbone (a Module that is a Backbone), registered as "body".
  std::shared_ptr<torch::nn::Module> body;
  /// The pyramid, registered as "fpn".
  FeaturePyramidNetwork fpn{nullptr};
};
TORCH_MODULE(BackboneWithFPN);

}  // namespace ostrov::models
