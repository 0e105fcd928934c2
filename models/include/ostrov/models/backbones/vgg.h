#pragma once
// VGG-11/13/16/19, with or without batch normalisation, exactly as torchvision 0.14 builds them
// (`torchvision.models.vgg16`, `vgg16_bn`, ...), so parameter and buffer names equal
// torchvision's state_dict keys and ImageNet weights load unchanged.
//
// Paper: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
// Recognition", ICLR 2015, arXiv:1409.1556.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/backbone.h"

namespace ostrov::models {

namespace detail {
/// Marks a max-pool in vgg_layer_config ("M" in torchvision's cfgs).
inline constexpr int64_t kPool = 0;
/// torchvision's cfgs A, B, D, E for depth 11, 13, 16, 19: the output channels of each 3x3
/// conv, kPool for a 2x2 max-pool. Shared by VGG and the style-transfer VGGFeatures.
std::vector<int64_t> vgg_layer_config(int64_t depth);
}  // namespace detail

/// Options of `VGG`. `VGGOptions(16)` is torchvision's vgg16, `VGGOptions(16).batch_norm(true)`
/// its vgg16_bn.
struct VGGOptions {
  /// `depth`: 11, 13, 16 or 19 (checked when the network is built).
  // NOLINTNEXTLINE(google-explicit-constructor): VGG(16) reads like torchvision
  /* implicit */ VGGOptions(int64_t depth) : depth_(depth) {}

  /// Number of weight layers: 11 (config A), 13 (B), 16 (D) or 19 (E).
  TORCH_ARG(int64_t, depth);
  /// Conv -> BatchNorm2d -> ReLU instead of Conv -> ReLU (torchvision's `vggN_bn`).
  TORCH_ARG(bool, batch_norm) = false;
  /// Outputs of the last Linear layer.
  TORCH_ARG(int64_t, num_classes) = 1000;
  /// Drop probability of the two Dropout layers in `classifier`.
  TORCH_ARG(double, dropout) = 0.5;
  /// torchvision's initialisation: convs kaiming_normal_(fan_out, relu) with zero bias,
  /// BatchNorm weight 1 and bias 0, Linear normal_(0, 0.01) with zero bias. When false the
  /// layers keep PyTorch's default initialisation.
  TORCH_ARG(bool, init_weights) = true;
};

/// VGG (torchvision layout). Children and their state_dict keys:
///   features    Sequential, indices as torchvision's `make_layers`: for each conv
///               `Conv(k3,p1), [BatchNorm2d], ReLU`, and `MaxPool(2,2)` after each block;
///               e.g. vgg16: features.{0,2,5,7,10,...,28}.{weight,bias},
///               vgg16_bn: features.{0,3,7,...,40}.{weight,bias} and features.{1,4,...,41}.
///               {weight,bias,running_mean,running_var,num_batches_tracked}
///   avgpool     AdaptiveAvgPool2d(7,7)
///   classifier  0 Linear(25088,4096) 1 ReLU 2 Dropout 3 Linear(4096,4096) 4 ReLU 5 Dropout
///               6 Linear(4096,num_classes)
///
/// Stages of `forward_features`, in network order (caffe naming; B = block 1..5 with
/// 64, 128, 256, 512, 512 channels; I = conv within the block, from 1):
///   reluB_I  output of the I-th conv of block B after its [BN and] ReLU, stride 2^(B-1)
///   poolB    output of block B's max-pool, stride 2^B (pool5 = features(x): [N,512,7,7]
///            for 224x224 input)
/// e.g. vgg16: relu1_1 relu1_2 pool1 relu2_1 relu2_2 pool2 relu3_1 relu3_2 relu3_3 pool3
/// relu4_1 relu4_2 relu4_3 pool4 relu5_1 relu5_2 relu5_3 pool5.
/// (SSD taps relu4_3; FCN taps pool3, pool4, pool5; Gatys style transfer reluB_1 and relu4_2.)
class VGGImpl : public torch::nn::Cloneable<VGGImpl>, public Backbone {
 public:
  /// Builds the layers (reset()); num_classes 0 leaves out avgpool and classifier (a
  /// backbone). c10::Error for another depth, num_classes < 0 or dropout outside [0,1].
  explicit VGGImpl(VGGOptions options);

  void reset() override;

  /// x: [N,3,H,W] float (ImageNet-normalised RGB for pretrained weights), H,W >= 32
  /// -> logits [N,num_classes] (no softmax), as torchvision's forward.
  torch::Tensor forward(const torch::Tensor& x);

  /// x: [N,3,H,W] -> every stage listed in the class comment, in network order,
  /// each [N,C,h,w].
  torch::OrderedDict<std::string, torch::Tensor> forward_features(const torch::Tensor& x);

  /// As above but only the stages in `names` (returned in network order); the network runs
  /// only as far as the deepest requested stage. Throws c10::Error for an unknown name.
  torch::OrderedDict<std::string, torch::Tensor> forward_features(
      const torch::Tensor& x, const std::vector<std::string>& names) override;

  /// Stage names of `forward_features`, in network order.
  std::vector<std::string> stage_names() const override;

  /// Channels of a stage's output. Throws c10::Error for an unknown name.
  int64_t stage_channels(const std::string& name) const override;

  /// Nominal stride of a stage's output (see the class comment). c10::Error for an unknown name.
  int64_t stage_stride(const std::string& name) const override;

  /// A torchvision state_dict of the same network: every `features.*` key must match (IoError
  /// listing the keys otherwise); `classifier.*` is ignored and this network's own keeps its
  /// values.
  void load_torchvision(const io::StateDict& state, const std::string& source) override;

  /// Index in `features` whose output is the stage (e.g. vgg16 relu4_3 -> 22, pool4 -> 23),
  /// for code that truncates or splits `features`. Throws c10::Error for an unknown name.
  int64_t stage_index(const std::string& name) const;

  void pretty_print(std::ostream& stream) const override;

  VGGOptions options;  ///< what reset() builds from
  /// Convs, [BatchNorms,] ReLUs and max-pools: [N,3,H,W] -> pool5 [N,512,H/32,W/32].
  torch::nn::Sequential features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};  ///< to 7x7; null when num_classes is 0
  torch::nn::Sequential classifier{nullptr};  ///< Linear/Dropout head; null when num_classes is 0

 private:
  struct Stage {
    std::string name;
    size_t index;  ///< output of features[index]
    int64_t channels;
    int64_t stride;
  };
  const Stage& stage(const std::string& name) const;
  std::vector<Stage> stages_;
};

/// `ostrov::models::VGG(VGGOptions(16).batch_norm(true))` is torchvision's
/// `vgg16_bn(weights=None)`.
TORCH_MODULE(VGG);

}  // namespace ostrov::models
