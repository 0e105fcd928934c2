#pragma once
// ResNet-18/34/50/101/152 exactly as torchvision 0.14 builds them (`torchvision.models.resnet50`
// ...; Bottleneck with the stride on the 3x3 conv, "ResNet v1.5"), so parameter and buffer
// names equal torchvision's state_dict keys and ImageNet weights load unchanged. `groups` and
// `width_per_group` also give torchvision's ResNeXt and Wide ResNet variants.
//
// Papers: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
// arXiv:1512.03385; dilation as in Chen et al., DeepLab, arXiv:1606.00915.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/backbone.h"

namespace ostrov::models {

/// Options of `ResNet`. `ResNetOptions(50)` is torchvision's resnet50.
struct ResNetOptions {
  /// `depth`: 18, 34, 50, 101 or 152 (checked when the network is built).
  // NOLINTNEXTLINE(google-explicit-constructor): ResNet(50) reads like torchvision
  /* implicit */ ResNetOptions(int64_t depth) : depth_(depth) {}

  /// 18, 34 (BasicBlock) or 50, 101, 152 (Bottleneck).
  TORCH_ARG(int64_t, depth);
  /// Outputs of `fc`; 0 builds a backbone without `avgpool` and `fc` (forward_features only).
  TORCH_ARG(int64_t, num_classes) = 1000;
  /// Start each residual branch's last BatchNorm at weight 0 (each block is then the
  /// identity), as torchvision's option (Goyal et al., arXiv:1706.02677).
  TORCH_ARG(bool, zero_init_residual) = false;
  /// Groups of the 3x3 convs in Bottleneck (32 for ResNeXt-50 32x4d). BasicBlock needs 1.
  TORCH_ARG(int64_t, groups) = 1;
  /// Width per group of Bottleneck (4 for ResNeXt-50 32x4d, 128 for Wide ResNet-50-2).
  /// BasicBlock needs 64.
  TORCH_ARG(int64_t, width_per_group) = 64;
  /// Channels of the stem and of layer1; layer2..layer4 double it each (torchvision: 64).
  /// Not a torchvision option (its weights need 64): 32 gives a half-width network with
  /// about a quarter of the multiply-adds, for training from scratch on a CPU.
  TORCH_ARG(int64_t, base_channels) = 64;
  /// For layer2, layer3, layer4: replace the stride-2 of the layer with dilation, as
  /// torchvision (and DeepLab/PSPNet). {false,true,true} gives output stride 8,
  /// {false,false,true} output stride 16. Must have 3 entries. BasicBlock networks (18/34;
  /// torchvision refuses them) dilate as PSPNet's and DeepLab's code does: in a dilated
  /// layer's first block the strided conv1 keeps the previous dilation and conv2 takes the
  /// new one.
  TORCH_ARG(std::vector<bool>, replace_stride_with_dilation) =
      std::vector<bool>{false, false, false};
};

/// ResNet (torchvision layout). Children and their state_dict keys:
///   conv1 (7x7, s2, no bias), bn1, relu, maxpool (3x3, s2, p1),
///   layer1..layer4  Sequential of blocks "0", "1", ...; each block has conv1, bn1, conv2, bn2,
///                   (Bottleneck: conv3, bn3,) and, in the first block of a layer that changes
///                   stride or width, downsample = Sequential("0" 1x1 conv, "1" BatchNorm2d),
///   avgpool (AdaptiveAvgPool2d(1,1)), fc (Linear(512*expansion, num_classes)).
/// e.g. "layer1.0.conv1.weight", "layer2.0.downsample.1.running_var", "fc.bias". Every
/// BatchNorm2d has weight, bias, running_mean, running_var, num_batches_tracked.
/// Initialisation as torchvision: convs kaiming_normal_(fan_out, relu), BatchNorm weight 1 and
/// bias 0 (bn2/bn3 of each block 0 with zero_init_residual), fc PyTorch's default.
///
/// Stages of `forward_features` (expansion = 1 for 18/34, 4 for 50/101/152; B = base_channels,
/// 64 as torchvision; strides without dilation; a 224x224 input gives 56, 56, 28, 14, 7):
///   stem    maxpool(relu(bn1(conv1(x))))  B channels,               stride 4
///   layer1                                B*expansion channels,     stride 4
///   layer2                                2*B*expansion channels,   stride 8
///   layer3                                4*B*expansion channels,   stride 16 (8 if dilated)
///   layer4                                8*B*expansion channels,   stride 32 (16 or 8)
class ResNetImpl : public torch::nn::Cloneable<ResNetImpl>, public Backbone {
 public:
  /// Builds and initialises the network (reset()). c10::Error for another depth, a
  /// replace_stride_with_dilation without 3 entries, num_classes < 0, groups, width_per_group
  /// or base_channels <= 0, and groups != 1 or width_per_group != 64 with depth 18/34.
  explicit ResNetImpl(ResNetOptions options);

  void reset() override;

  /// x: [N,3,H,W] float (ImageNet-normalised RGB for pretrained weights)
  /// -> logits [N,num_classes] (no softmax), as torchvision's forward.
  torch::Tensor forward(const torch::Tensor& x);

  /// x: [N,3,H,W] -> "stem", "layer1", ..., "layer4", each [N,C,h,w] (see the class comment).
  torch::OrderedDict<std::string, torch::Tensor> forward_features(const torch::Tensor& x);

  /// As above but only the stages in `names` (returned in network order); the network runs
  /// only as far as the deepest requested stage. Throws c10::Error for an unknown name.
  torch::OrderedDict<std::string, torch::Tensor> forward_features(
      const torch::Tensor& x, const std::vector<std::string>& names) override;

  /// {"stem", "layer1", "layer2", "layer3", "layer4"}.
  std::vector<std::string> stage_names() const override;

  /// Channels of a stage's output. Throws c10::Error for an unknown name.
  int64_t stage_channels(const std::string& name) const override;

  /// Total stride of a stage's output with respect to the input, accounting for
  /// replace_stride_with_dilation (e.g. layer4 of a {false,true,true} ResNet-50 -> 8).
  /// Throws c10::Error for an unknown name.
  int64_t stage_stride(const std::string& name) const override;

  /// A torchvision ResNet state_dict of the same depth and width: everything but `fc.*` must
  /// match (IoError listing the keys otherwise); this network's own fc keeps its values.
  void load_torchvision(const io::StateDict& state, const std::string& source) override;

  /// 1 for BasicBlock networks (18, 34), 4 for Bottleneck networks (50, 101, 152).
  int64_t expansion() const;

  void pretty_print(std::ostream& stream) const override;

  ResNetOptions options;  ///< what reset() builds from
  torch::nn::Conv2d conv1{nullptr};       ///< stem conv 7x7, stride 2, 3 -> B channels, no bias
  torch::nn::BatchNorm2d bn1{nullptr};    ///< BatchNorm of conv1
  torch::nn::ReLU relu{nullptr};          ///< the stem's ReLU (in place)
  torch::nn::MaxPool2d maxpool{nullptr};  ///< 3x3, stride 2, padding 1: the end of "stem"
  torch::nn::Sequential layer1{nullptr};  ///< blocks of stage "layer1" (stride 1)
  torch::nn::Sequential layer2{nullptr};  ///< blocks of "layer2" (first block strided or dilated)
  torch::nn::Sequential layer3{nullptr};  ///< blocks of "layer3" (first block strided or dilated)
  torch::nn::Sequential layer4{nullptr};  ///< blocks of "layer4" (first block strided or dilated)
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};  ///< to 1x1; null when num_classes is 0
  torch::nn::Linear fc{nullptr};  ///< Linear(8*B*expansion, num_classes); null when num_classes 0

 private:
  size_t stage_position(const std::string& name) const;
  torch::Tensor run_stage(size_t position, const torch::Tensor& x);
  std::vector<int64_t> stage_strides_;  ///< per stage, filled by reset()
};

/// `ostrov::models::ResNet(ResNetOptions(50))` is torchvision's `resnet50(weights=None)`.
TORCH_MODULE(ResNet);

}  // namespace ostrov::models
