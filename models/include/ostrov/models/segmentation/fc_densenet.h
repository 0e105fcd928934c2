#pragma once
// FC-DenseNet ("The One Hundred Layers Tiramisu"): DenseNet blocks in a U-shaped
// encoder-decoder. Down path: dense block, its input and output concatenated (the skip),
// transition down. Up path: transition up of only the previous block's new feature maps,
// concatenated with the skip, dense block (whose input is not concatenated to its output,
// except after the last block, which feeds the classifier).
//
// Paper: Jégou, Drozdzal, Vazquez, Romero & Bengio, "The One Hundred Layers Tiramisu: Fully
// Convolutional DenseNets for Semantic Segmentation", CVPRW 2017, arXiv:1611.09326
// (tables 1 and 2; reference code github.com/SimJeg/FC-DenseNet).

#include <cstdint>
#include <memory>
#include <string>
#include <ostream>
#include <vector>

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "ostrov/models/segmentation/network.h"
#include "ostrov/models/segmentation/padding.h"

namespace ostrov::models {

/// Options of `FCDenseNet`. `FCDenseNetOptions(num_classes).depth(103)` is the paper's
/// FC-DenseNet103; depth 56 and 67 its smaller models.
///
/// | depth | growth_rate | layers per block (down..., bottleneck, ...up)    | parameters |
/// |-------|-------------|--------------------------------------------------|------------|
/// | 56    | 12          | 4 in each of the 11 blocks                       | 1.5 M      |
/// | 67    | 16          | 5 in each of the 11 blocks                       | 3.5 M      |
/// | 103   | 16          | 4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4             | 9.4 M      |
struct FCDenseNetOptions {
  /// `num_classes` outputs; the other options at their defaults (FC-DenseNet56).
  explicit FCDenseNetOptions(int64_t num_classes) : num_classes_(num_classes) {}

  /// K, output channels (classes including background).
  TORCH_ARG(int64_t, num_classes);
  /// Paper model: 56, 67 or 103; sets the default growth rate and layers per block.
  TORCH_ARG(int64_t, depth) = 56;
  /// Channels of the input image.
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Overrides the growth rate k (new feature maps per dense layer) of `depth`.
  TORCH_ARG(c10::optional<int64_t>, growth_rate) = c10::nullopt;
  /// Overrides the layers per dense block of `depth`: an odd count 2P+1 (P down blocks, the
  /// bottleneck, P up blocks; P poolings, so the input is padded to a multiple of 2^P).
  TORCH_ARG(c10::optional<std::vector<int64_t>>, layers_per_block) = c10::nullopt;
  /// Output channels of the first 3x3 convolution (48 in the paper).
  TORCH_ARG(int64_t, first_channels) = 48;
  /// Dropout after every dense layer's and transition down's convolution (0.2 in the paper).
  TORCH_ARG(double, dropout) = 0.2;
  /// How the input is extended to a multiple of 2^P.
  TORCH_ARG(InputPadding, input_padding) = InputPadding::kReflect;

 public:
  /// Sets the input padding from its name: "reflect" or "zero".
  FCDenseNetOptions& input_padding(const std::string& name) {
    input_padding_ = input_padding_from_string(name);
    return *this;
  }
  /// The growth rate in use: the override, or 12 for depth 56 and 16 for 67 and 103.
  int64_t effective_growth_rate() const;
  /// The layers per block in use: the override, or the paper's for `depth`. Throws c10::Error
  /// for another depth without an override.
  std::vector<int64_t> effective_layers_per_block() const;
};

/// FC-DenseNet. Children and their state_dict keys (P poolings, blocks b = 0..2P):
///   first_conv          Conv2d 3x3, in_channels -> first_channels (zero "same" padding)
///   down_blocks.b       dense block b < P: layers.i.{norm (BatchNorm2d), conv (Conv2d 3x3,
///                       -> growth_rate)}; each layer BN -> ReLU -> conv -> dropout on the
///                       concatenation of the block input and the earlier layers' outputs
///   transitions_down.b  norm (BatchNorm2d), conv (Conv2d 1x1, m -> m); BN -> ReLU -> conv ->
///                       dropout -> 2x2 max-pool
///   bottleneck          dense block P
///   transitions_up.u    deconv: ConvTranspose2d 3x3, stride 2 (ostrov::nn::TransposedUpsample
///                       with kernel 3), on the previous block's new maps only (n k -> n k)
///   up_blocks.u         dense block P+1+u on cat(transition up, skip P-1-u)
///   head                Conv2d 1x1 -> num_classes on cat(input, new maps) of the last block
/// Convolutions are He-initialised (kaiming uniform, fan-in), biases zero.
///
/// Any H x W: the input is padded (InputPadding, image centred) to a multiple of 2^P (32 for
/// the paper's models) and the logits cropped back.
class FCDenseNetImpl : public torch::nn::Cloneable<FCDenseNetImpl>, public SegmentationNetwork {
 public:
  /// Builds the network. c10::Error for num_classes, in_channels, the growth rate or
  /// first_channels < 1, layers per block that are not 2P+1 entries >= 1 with P in [1, 8],
  /// dropout outside [0, 1), or a depth other than 56/67/103 without overrides.
  explicit FCDenseNetImpl(FCDenseNetOptions options);

  void reset() override;

  /// x: `[N, in_channels, H, W]` float, any H, W >= 1 -> logits `[N, num_classes, H, W]`.
  at::Tensor forward(const at::Tensor& x) override;

  int64_t num_classes() const override { return options.num_classes(); }
  int64_t in_channels() const override { return options.in_channels(); }

  void pretty_print(std::ostream& stream) const override;

  /// The options it was built with; reset() rebuilds from them.
  FCDenseNetOptions options;
  /// 3x3 conv, in_channels -> first_channels.
  torch::nn::Conv2d first_conv{nullptr};
  /// The P dense blocks of the down path; each one's output stack is a skip connection.
  torch::nn::ModuleList down_blocks{nullptr};
  /// The P transitions down (BN, ReLU, 1x1 conv, dropout, 2x2 max-pool): each halves the map.
  torch::nn::ModuleList transitions_down{nullptr};
  /// The bottleneck dense block (its type is internal to the implementation).
  std::shared_ptr<torch::nn::Module> bottleneck;
  /// The P stride-2 transposed convs up-sampling the previous block's new maps.
  torch::nn::ModuleList transitions_up{nullptr};
  /// The P dense blocks of the up path.
  torch::nn::ModuleList up_blocks{nullptr};
  /// 1x1 conv to num_classes on the last block's stack.
  torch::nn::Conv2d head{nullptr};
};

/// `ostrov::models::FCDenseNet(FCDenseNetOptions(num_classes).depth(103))`.
TORCH_MODULE(FCDenseNet);

}  // namespace ostrov::models
