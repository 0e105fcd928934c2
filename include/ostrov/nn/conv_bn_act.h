#pragma once
// Conv2d -> BatchNorm2d -> activation, the block every segmentation and detection model here is
// built from (VGG/U-Net "conv-bn-relu", SSD extras, PSPNet pyramid branches).

#include <cstdint>
#include <ostream>
#include <string>

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace ostrov::nn {

/// How a ConvBnAct pads its input.
enum class PaddingMode {
  /// No padding: the output shrinks by `dilation*(kernel-1)` (U-Net's "valid" convolutions).
  kValid,
  /// Zero padding so that a stride-1 convolution keeps the spatial size ("same").
  kSame,
  /// Mirror (reflect, edge pixel not repeated) padding to the same size as kSame;
  /// avoids the dark borders zero padding produces (U-Net's overlap-tile strategy, style
  /// transfer networks).
  kSameMirror,
};

/// Parses "valid", "same" or "mirror" (aliases "same_mirror", "reflect").
/// Throws c10::Error naming the string for anything else.
PaddingMode padding_mode_from_string(const std::string& name);
/// "valid", "same" or "mirror".
std::string to_string(PaddingMode mode);

/// The non-linearity after the (optional) batch norm.
enum class Activation {
  kNone,
  kReLU,
  kLeakyReLU,
};

/// Parses "none" (alias "identity"), "relu" or "leaky_relu".
/// Throws c10::Error naming the string for anything else.
Activation activation_from_string(const std::string& name);
/// "none", "relu" or "leaky_relu".
std::string to_string(Activation activation);

/// Options for ConvBnAct.
///
/// Example:
/// ```
/// ostrov::nn::ConvBnAct block(ostrov::nn::ConvBnActOptions(64, 128, 3)
///                                 .padding("mirror")
///                                 .activation(ostrov::nn::Activation::kLeakyReLU));
/// ```
struct ConvBnActOptions {
  /// The required options; the others keep their defaults.
  ConvBnActOptions(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}

  /// Channels of the input, C_in.
  TORCH_ARG(int64_t, in_channels);
  /// Channels of the output, C_out.
  TORCH_ARG(int64_t, out_channels);
  /// Square kernel size k (>= 1).
  TORCH_ARG(int64_t, kernel_size);
  /// Convolution stride.
  TORCH_ARG(int64_t, stride) = 1;
  /// Kernel dilation; the effective kernel is `dilation*(k-1)+1`.
  TORCH_ARG(int64_t, dilation) = 1;
  /// Convolution groups; both channel counts must be divisible by it.
  TORCH_ARG(int64_t, groups) = 1;
  /// Padding: kValid adds none; kSame and kSameMirror add `dilation*(k-1)/2` on every side for
  /// odd k, so that a stride-1 block keeps H and W. For even k the total `dilation*(k-1)` is
  /// split with the extra pixel on the bottom/right (as PyTorch's and TensorFlow's "same").
  TORCH_ARG(PaddingMode, padding) = PaddingMode::kSame;
  /// Adds a BatchNorm2d (child "bn") after the convolution.
  TORCH_ARG(bool, batch_norm) = true;
  /// Activation after the batch norm.
  TORCH_ARG(Activation, activation) = Activation::kReLU;
  /// Negative slope of kLeakyReLU.
  TORCH_ARG(double, negative_slope) = 0.01;
  /// Convolution bias; unset means `!batch_norm()` (a bias before batch norm is redundant).
  TORCH_ARG(c10::optional<bool>, bias) = c10::nullopt;
  /// BatchNorm2d epsilon.
  TORCH_ARG(double, bn_eps) = 1e-5;
  /// BatchNorm2d running-statistics momentum.
  TORCH_ARG(double, bn_momentum) = 0.1;

 public:
  /// Sets the padding from its name, see padding_mode_from_string().
  ConvBnActOptions& padding(const std::string& name) {
    padding_ = padding_mode_from_string(name);
    return *this;
  }
  /// Sets the activation from its name, see activation_from_string().
  ConvBnActOptions& activation(const std::string& name) {
    activation_ = activation_from_string(name);
    return *this;
  }
};

/// Conv2d (child "conv") -> optional BatchNorm2d (child "bn") -> activation.
///
/// Input `[N, C_in, H, W]` float; output `[N, C_out, H_out, W_out]` with
/// `H_out = floor((H + P - dilation*(k-1) - 1) / stride) + 1`, where P is 0 for kValid and
/// `dilation*(k-1)` for the "same" modes (so H_out = H for stride 1, ceil(H/stride) otherwise
/// for odd k). Mirror padding needs every side's padding smaller than H and W.
class ConvBnActImpl : public torch::nn::Cloneable<ConvBnActImpl> {
 public:
  /// A block with default options besides the channels and kernel size.
  ConvBnActImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : ConvBnActImpl(ConvBnActOptions(in_channels, out_channels, kernel_size)) {}
  /// Builds the layers; c10::Error for non-positive channels, kernel_size, stride or dilation,
  /// or channel counts not divisible by groups.
  explicit ConvBnActImpl(ConvBnActOptions options);

  void reset() override;
  /// x: `[N, C_in, H, W]` -> `[N, C_out, H_out, W_out]`. In eval mode the batch norm is
  /// folded into the convolution (one pass over the activations; same result up to float
  /// rounding).
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  ConvBnActOptions options;  ///< the options; reset() rebuilds the layers from them
  /// The convolution; it pads itself only for zero "same" padding split evenly, forward() pads
  /// the input for mirror and uneven "same" padding.
  torch::nn::Conv2d conv{nullptr};
  /// Null when `batch_norm(false)`.
  torch::nn::BatchNorm2d bn{nullptr};
};

TORCH_MODULE(ConvBnAct);

/// `bn(conv(x))`, with the batch norm folded into the convolution when `bn` is in eval mode
/// with running statistics: w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps),
/// so the activations are written once instead of twice. Equal to the two-pass result up to
/// float rounding, and differentiable (gradients reach the conv and bn parameters). In
/// training mode, with a null `bn`, or with padding the convolution cannot fold (non-zero
/// padding modes, "same"/"valid" strings) it is the plain two-pass computation.
torch::Tensor conv_bn(torch::nn::Conv2d& conv, torch::nn::BatchNorm2d& bn, const torch::Tensor& x);

}  // namespace ostrov::nn
