#pragma once
// U-Net: an encoder of `depth` (double-conv, 2x2 max-pool) levels, a bottleneck, and a decoder
// that up-samples by 2, concatenates the encoder's map of the same level (the skip) and applies
// another double conv, then a 1x1 convolution to class scores.
//
// Paper: Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
// Segmentation", MICCAI 2015, arXiv:1505.04597 (depth 4, width 64, valid 3x3 convolutions,
// 2x2 up-convolutions, overlap-tile input mirroring).

#include <cstdint>
#include <ostream>
#include <string>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "ostrov/models/segmentation/network.h"
#include "ostrov/models/segmentation/padding.h"
#include "ostrov/nn/conv_bn_act.h"

namespace ostrov::models {

/// How the U-Net decoder doubles the resolution.
enum class UNetUpsampling {
  /// 2x2 transposed convolution, stride 2, halving the channels (the paper's "up-conv 2x2").
  kTransposed,
  /// Bilinear interpolation then a 1x1 convolution halving the channels (no checkerboard
  /// artefacts; ostrov::nn::BilinearConvUpsample).
  kBilinear,
};

/// Parses "transposed" (alias "deconv") or "bilinear". Throws c10::Error for anything else.
UNetUpsampling unet_upsampling_from_string(const std::string& name);
/// "transposed" or "bilinear".
std::string to_string(UNetUpsampling mode);

/// Options of `UNet`.
///
/// ```
/// ostrov::models::UNet net(ostrov::models::UNetOptions(11).depth(4).base_width(32)
///                              .padding("mirror").upsampling("bilinear"));
/// ```
struct UNetOptions {
  /// `num_classes` outputs; the other options at their defaults.
  explicit UNetOptions(int64_t num_classes) : num_classes_(num_classes) {}

  /// K, output channels (classes including background).
  TORCH_ARG(int64_t, num_classes);
  /// Channels of the input image (3 for RGB, 1 for grey microscopy).
  TORCH_ARG(int64_t, in_channels) = 3;
  /// Number of poolings (levels of the encoder besides the bottleneck), >= 1. The paper: 4.
  TORCH_ARG(int64_t, depth) = 4;
  /// Channels of the first level; level l has `base_width * 2^l`, the bottleneck
  /// `base_width * 2^depth`. The paper: 64; 32 keeps CPU training affordable.
  TORCH_ARG(int64_t, base_width) = 32;
  /// BatchNorm2d after every 3x3 convolution (not in the 2015 paper; it trains faster).
  TORCH_ARG(bool, batch_norm) = true;
  /// Decoder up-sampling.
  TORCH_ARG(UNetUpsampling, upsampling) = UNetUpsampling::kTransposed;
  /// Padding of the 3x3 convolutions: kSame (zeros), kSameMirror ("mirror"), or kValid (the
  /// paper's unpadded convolutions with the encoder maps centre-cropped before concatenation;
  /// see UNetImpl for how the input is then extended).
  TORCH_ARG(nn::PaddingMode, padding) = nn::PaddingMode::kSame;
  /// How the input is extended to the size the network needs (see UNetImpl).
  TORCH_ARG(InputPadding, input_padding) = InputPadding::kReflect;

 public:
  /// Sets the up-sampling from its name, see unet_upsampling_from_string().
  UNetOptions& upsampling(const std::string& name) {
    upsampling_ = unet_upsampling_from_string(name);
    return *this;
  }
  /// Sets the padding from its name: "same", "mirror" or "valid".
  UNetOptions& padding(const std::string& name) {
    padding_ = nn::padding_mode_from_string(name);
    return *this;
  }
  /// Sets the input padding from its name: "reflect" or "zero".
  UNetOptions& input_padding(const std::string& name) {
    input_padding_ = input_padding_from_string(name);
    return *this;
  }
};

/// U-Net. Children and their state_dict keys (L = depth, levels l = 0..L-1, width
/// w_l = base_width * 2^l):
///   encoder.l.{0,1}   ConvBnAct 3x3 (in_channels or w_{l-1} -> w_l, then w_l -> w_l)
///   bottleneck.{0,1}  ConvBnAct 3x3 (w_{L-1} -> w_L -> w_L)
///   up.l              TransposedUpsample (k2, s2) or BilinearConvUpsample (1x1), w_{l+1} -> w_l
///   decoder.l.{0,1}   ConvBnAct 3x3 (2*w_l -> w_l -> w_l) on cat(up, skip) (up's channels first)
///   head              Conv2d 1x1, w_0 -> num_classes
/// e.g. "encoder.0.0.conv.weight", "encoder.0.0.bn.running_mean", "up.3.deconv.weight".
///
/// Any H x W: with "same"/"mirror" padding the input is padded (InputPadding, image centred)
/// to a multiple of 2^L (at least 2^(L+1) with mirror padding, so the bottleneck map can be
/// mirrored) and the logits cropped back. With "valid" padding every 3x3 convolution trims one
/// pixel per side, so the logits are smaller than the network's input: as the paper's
/// overlap-tile strategy, the input is extended by `6 * 2^L - 4` pixels of context on the
/// top/left (92 for L = 4: 572 -> 388 in the paper) and by that plus what makes the sizes work
/// on the bottom/right (mirrored by default), and the logits covering the image are returned.
class UNetImpl : public torch::nn::Cloneable<UNetImpl>, public SegmentationNetwork {
 public:
  /// Builds the network. c10::Error for num_classes, in_channels or base_width < 1, or a
  /// depth outside [1, 8].
  explicit UNetImpl(UNetOptions options);

  void reset() override;

  /// x: `[N, in_channels, H, W]` float, any H, W >= 1 -> logits `[N, num_classes, H, W]`.
  at::Tensor forward(const at::Tensor& x) override;

  int64_t num_classes() const override { return options.num_classes(); }
  int64_t in_channels() const override { return options.in_channels(); }

  void pretty_print(std::ostream& stream) const override;

  /// The options it was built with; reset() rebuilds from them.
  UNetOptions options;
  /// One double conv per level, each followed by a 2x2 max-pool; their outputs are the skips.
  torch::nn::ModuleList encoder{nullptr};
  /// The double conv at the lowest resolution, w_{L-1} -> w_L.
  torch::nn::Sequential bottleneck{nullptr};
  /// One x2 up-sampling per level, w_{l+1} -> w_l.
  torch::nn::ModuleList up{nullptr};
  /// One double conv per level on cat(up, skip), 2*w_l -> w_l.
  torch::nn::ModuleList decoder{nullptr};
  /// 1x1 conv, w_0 -> num_classes.
  torch::nn::Conv2d head{nullptr};
};

/// `ostrov::models::UNet(UNetOptions(num_classes))`.
TORCH_MODULE(UNet);

}  // namespace ostrov::models
