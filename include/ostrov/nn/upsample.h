#pragma once
// Learned up-sampling blocks for decoders: transposed convolution (FCN, Long et al. 2015, with
// the bilinear initialisation of its "upscore" layers), bilinear interpolation followed by a
// convolution (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"), and sub-pixel
// convolution (Shi et al. 2016, ESPCN, with ICNR initialisation from Aitken et al. 2017).
// Each maps `[N, C_in, H, W]` to `[N, C_out, H*factor, W*factor]` for any H, W (odd included).

#include <cstdint>
#include <ostream>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <c10/util/Optional.h>

namespace ostrov::nn {

/// The bilinear interpolation kernel of FCN's `get_upsampling_weight` (the Caffe "bilinear"
/// filler), laid out as a ConvTranspose2d weight: `[in_channels, out_channels, k, k]` float32.
/// With `f = (k+1)/2` and centre `c = f-1` (odd k) or `f-0.5` (even k), the filter is
/// `(1-|y-c|/f) * (1-|x-c|/f)`. It is placed on the diagonal (input channel i -> output channel
/// i, for i < min(in_channels, out_channels)); every other entry is zero, so each channel is
/// up-sampled on its own.
torch::Tensor bilinear_kernel(int64_t in_channels, int64_t out_channels, int64_t kernel_size);

/// Options for TransposedUpsample.
struct TransposedUpsampleOptions {
  /// The required options; the others keep their defaults.
  TransposedUpsampleOptions(int64_t in_channels, int64_t out_channels, int64_t factor)
      : in_channels_(in_channels), out_channels_(out_channels), factor_(factor) {}

  /// Channels of the input, C_in.
  TORCH_ARG(int64_t, in_channels);
  /// Channels of the output, C_out.
  TORCH_ARG(int64_t, out_channels);
  /// Up-sampling factor f, the stride of the transposed convolution (>= 1).
  TORCH_ARG(int64_t, factor);
  /// Square kernel size k. Unset means `2*f` for even f (FCN's setups: k=4 for f=2, 16 for
  /// 8, 64 for 32) and `2*f-1` for odd f (1 for f=1), the sizes for which the bilinear kernel
  /// is exactly bilinear interpolation. The padding is then `f/2` (integer division).
  TORCH_ARG(c10::optional<int64_t>, kernel_size) = c10::nullopt;
  /// Adds a bias (zeroed by bilinear_init).
  TORCH_ARG(bool, bias) = true;
  /// Initialises the weight with bilinear_kernel(C_in, C_out, k) so the untrained layer
  /// up-samples each channel bilinearly (FCN's `get_upsampling_weight`). With the default
  /// kernel the output equals `interpolate(x, bilinear, align_corners=false)` except within f
  /// output pixels of the border, where the transposed convolution sees zeros beyond the
  /// image instead of repeating the edge.
  TORCH_ARG(bool, bilinear_init) = false;
};

/// Up-sampling by a transposed convolution (child "deconv", a torch::nn::ConvTranspose2d with
/// stride f). Padding and output padding are chosen so that the output is exactly H*f x W*f:
/// `2*padding - output_padding = k - f`, i.e. padding `(k-f)/2` when k-f is even,
/// `(k-f+1)/2` with output padding 1 when it is odd (which needs f >= 2; the result is then
/// shifted by half an output pixel against bilinear interpolation), and padding 0 with output
/// padding `f-k` when k < f.
///
/// Input `[N, C_in, H, W]` float -> `[N, C_out, H*f, W*f]`.
class TransposedUpsampleImpl : public torch::nn::Cloneable<TransposedUpsampleImpl> {
 public:
  /// A block with default options besides the channels and factor.
  TransposedUpsampleImpl(int64_t in_channels, int64_t out_channels, int64_t factor)
      : TransposedUpsampleImpl(TransposedUpsampleOptions(in_channels, out_channels, factor)) {}
  /// Builds the layer; c10::Error for non-positive channels, factor < 1, kernel_size < 1, or
  /// an even kernel_size with factor 1 (no padding gives exactly H*f).
  explicit TransposedUpsampleImpl(TransposedUpsampleOptions options);

  void reset() override;
  /// x: `[N, C_in, H, W]` -> `[N, C_out, H*f, W*f]`.
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  /// The kernel size in use (the option, or its default for the factor).
  int64_t kernel_size() const;

  TransposedUpsampleOptions options;  ///< the options; reset() rebuilds the layer from them
  torch::nn::ConvTranspose2d deconv{nullptr};  ///< the transposed convolution, stride f
};

TORCH_MODULE(TransposedUpsample);

/// Options for BilinearConvUpsample.
struct BilinearConvUpsampleOptions {
  /// The required options; the others keep their defaults.
  BilinearConvUpsampleOptions(int64_t in_channels, int64_t out_channels, int64_t factor)
      : in_channels_(in_channels), out_channels_(out_channels), factor_(factor) {}

  /// Channels of the input, C_in.
  TORCH_ARG(int64_t, in_channels);
  /// Channels of the output, C_out.
  TORCH_ARG(int64_t, out_channels);
  /// Up-sampling factor f (>= 1).
  TORCH_ARG(int64_t, factor);
  /// Odd kernel size of the convolution after the interpolation, zero "same" padding.
  TORCH_ARG(int64_t, kernel_size) = 3;
  /// Convolution bias.
  TORCH_ARG(bool, bias) = true;
  /// `align_corners` of the bilinear interpolation.
  TORCH_ARG(bool, align_corners) = false;
};

/// Bilinear interpolation to exactly H*f x W*f (align_corners=false by default), then a
/// k x k convolution (child "conv") with zero "same" padding: the resize-convolution that
/// avoids the checkerboard artefacts of transposed convolutions.
///
/// Input `[N, C_in, H, W]` float -> `[N, C_out, H*f, W*f]`.
class BilinearConvUpsampleImpl : public torch::nn::Cloneable<BilinearConvUpsampleImpl> {
 public:
  /// A block with default options besides the channels and factor.
  BilinearConvUpsampleImpl(int64_t in_channels, int64_t out_channels, int64_t factor)
      : BilinearConvUpsampleImpl(
            BilinearConvUpsampleOptions(in_channels, out_channels, factor)) {}
  /// Builds the layer; c10::Error for non-positive channels, factor < 1 or an even kernel_size.
  explicit BilinearConvUpsampleImpl(BilinearConvUpsampleOptions options);

  void reset() override;
  /// x: `[N, C_in, H, W]` -> `[N, C_out, H*f, W*f]`.
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  BilinearConvUpsampleOptions options;  ///< the options; reset() rebuilds the layer from them
  torch::nn::Conv2d conv{nullptr};       ///< the k x k convolution after the interpolation
};

TORCH_MODULE(BilinearConvUpsample);

/// Options for PixelShuffleUpsample.
struct PixelShuffleUpsampleOptions {
  /// The required options; the others keep their defaults.
  PixelShuffleUpsampleOptions(int64_t in_channels, int64_t out_channels, int64_t factor)
      : in_channels_(in_channels), out_channels_(out_channels), factor_(factor) {}

  /// Channels of the input, C_in.
  TORCH_ARG(int64_t, in_channels);
  /// Channels of the output, C_out.
  TORCH_ARG(int64_t, out_channels);
  /// Up-sampling factor r (>= 1).
  TORCH_ARG(int64_t, factor);
  /// Odd kernel size of the convolution before the shuffle, zero "same" padding.
  TORCH_ARG(int64_t, kernel_size) = 3;
  /// Convolution bias (zeroed by icnr_init).
  TORCH_ARG(bool, bias) = true;
  /// ICNR initialisation (Aitken et al. 2017): the r*r sub-pixel filters of each output
  /// channel start equal (Kaiming-normal), so the untrained block is a convolution followed by
  /// nearest-neighbour up-sampling and has no checkerboard pattern.
  TORCH_ARG(bool, icnr_init) = true;
};

/// Sub-pixel convolution: a k x k convolution (child "conv") to C_out*r*r channels, then
/// pixel_shuffle(r), which moves channel `c*r*r + i*r + j` to output channel c at offset (i, j)
/// of each r x r block.
///
/// Input `[N, C_in, H, W]` float -> `[N, C_out, H*r, W*r]`.
class PixelShuffleUpsampleImpl : public torch::nn::Cloneable<PixelShuffleUpsampleImpl> {
 public:
  /// A block with default options besides the channels and factor.
  PixelShuffleUpsampleImpl(int64_t in_channels, int64_t out_channels, int64_t factor)
      : PixelShuffleUpsampleImpl(
            PixelShuffleUpsampleOptions(in_channels, out_channels, factor)) {}
  /// Builds the layer; c10::Error for non-positive channels, factor < 1 or an even kernel_size.
  explicit PixelShuffleUpsampleImpl(PixelShuffleUpsampleOptions options);

  void reset() override;
  /// x: `[N, C_in, H, W]` -> `[N, C_out, H*r, W*r]`.
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  PixelShuffleUpsampleOptions options;  ///< the options; reset() rebuilds the layer from them
  torch::nn::Conv2d conv{nullptr};       ///< the k x k convolution to C_out*r*r channels
};

TORCH_MODULE(PixelShuffleUpsample);

}  // namespace ostrov::nn
