#include "ostrov/nn/upsample.h"

#include <algorithm>
#include <vector>

#include <torch/nn/functional/pixelshuffle.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>
#include <torch/nn/options/conv.h>
#include <torch/nn/options/pixelshuffle.h>
#include <torch/nn/options/upsampling.h>
#include <torch/utils.h>

namespace ostrov::nn {

namespace F = torch::nn::functional;

namespace {

void check_channels_and_factor(const char* who, int64_t in_channels, int64_t out_channels,
                               int64_t factor) {
  TORCH_CHECK(in_channels > 0 && out_channels > 0, who,
              ": channels must be positive, got in_channels=", in_channels,
              " out_channels=", out_channels);
  TORCH_CHECK(factor >= 1, who, ": factor must be >= 1, got ", factor);
}

void check_input(const char* who, const torch::Tensor& x, int64_t in_channels) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == in_channels, who, ": input should be [N,",
              in_channels, ",H,W], got ", x.sizes());
}

// The default transposed-convolution kernel for a factor: 2f for even f, 2f-1 for odd f.
int64_t default_transposed_kernel(int64_t factor) { return 2 * factor - factor % 2; }

}  // namespace

torch::Tensor bilinear_kernel(int64_t in_channels, int64_t out_channels, int64_t kernel_size) {
  TORCH_CHECK(in_channels > 0 && out_channels > 0,
              "bilinear_kernel: channels must be positive, got in_channels=", in_channels,
              " out_channels=", out_channels);
  TORCH_CHECK(kernel_size >= 1, "bilinear_kernel: kernel_size must be >= 1, got ",
              kernel_size);
  const int64_t factor = (kernel_size + 1) / 2;
  const double center = kernel_size % 2 == 1 ? static_cast<double>(factor - 1)
                                             : static_cast<double>(factor) - 0.5;
  // og[i] = 1 - |i - center| / factor, the 1-D profile of the filter.
  const auto og =
      1.0 - (torch::arange(kernel_size, torch::kFloat) - center).abs() / static_cast<double>(factor);
  const auto filter = og.unsqueeze(1) * og.unsqueeze(0);  // [k, k]

  auto weight = torch::zeros({in_channels, out_channels, kernel_size, kernel_size}, torch::kFloat);
  const int64_t diagonal = std::min(in_channels, out_channels);
  for (int64_t c = 0; c < diagonal; ++c) {
    weight[c][c].copy_(filter);
  }
  return weight;
}

// ---------------------------------------------------------------------------------------------
// TransposedUpsample

TransposedUpsampleImpl::TransposedUpsampleImpl(TransposedUpsampleOptions options_)
    : options(std::move(options_)) {
  reset();
}

int64_t TransposedUpsampleImpl::kernel_size() const {
  return options.kernel_size().value_or(default_transposed_kernel(options.factor()));
}

void TransposedUpsampleImpl::reset() {
  const auto& o = options;
  check_channels_and_factor("TransposedUpsample", o.in_channels(), o.out_channels(),
                            o.factor());
  const int64_t k = kernel_size();
  const int64_t f = o.factor();
  TORCH_CHECK(k >= 1, "TransposedUpsample: kernel_size must be >= 1, got ", k);

  // Output size (H-1)*f - 2*padding + k + output_padding == H*f
  //   <=>  2*padding - output_padding == k - f,  with padding >= 0, 0 <= output_padding < f.
  int64_t padding = 0;
  int64_t output_padding = 0;
  if (k >= f) {
    padding = (k - f + 1) / 2;
    output_padding = 2 * padding - (k - f);
  } else {
    output_padding = f - k;
  }
  TORCH_CHECK(output_padding < f,
              "TransposedUpsample: no padding gives an output of exactly input*factor for "
              "kernel_size=", k, " and factor=", f, " (k-f is odd, which needs factor >= 2); "
              "use an odd kernel_size");

  deconv = register_module(
      "deconv", torch::nn::ConvTranspose2d(
                    torch::nn::ConvTranspose2dOptions(o.in_channels(), o.out_channels(), k)
                        .stride(f)
                        .padding(padding)
                        .output_padding(output_padding)
                        .bias(o.bias())));
  if (o.bilinear_init()) {
    torch::NoGradGuard no_grad;
    deconv->weight.copy_(bilinear_kernel(o.in_channels(), o.out_channels(), k));
    if (deconv->bias.defined()) {
      deconv->bias.zero_();
    }
  }
}

torch::Tensor TransposedUpsampleImpl::forward(const torch::Tensor& x) {
  check_input("TransposedUpsample", x, options.in_channels());
  return deconv->forward(x);
}

void TransposedUpsampleImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::nn::TransposedUpsample(" << options.in_channels() << ", "
         << options.out_channels() << ", factor=" << options.factor()
         << ", kernel_size=" << kernel_size()
         << ", bilinear_init=" << (options.bilinear_init() ? "true" : "false") << ")";
}

// ---------------------------------------------------------------------------------------------
// BilinearConvUpsample

BilinearConvUpsampleImpl::BilinearConvUpsampleImpl(BilinearConvUpsampleOptions options_)
    : options(std::move(options_)) {
  reset();
}

void BilinearConvUpsampleImpl::reset() {
  const auto& o = options;
  check_channels_and_factor("BilinearConvUpsample", o.in_channels(), o.out_channels(),
                            o.factor());
  TORCH_CHECK(o.kernel_size() >= 1 && o.kernel_size() % 2 == 1,
              "BilinearConvUpsample: kernel_size must be odd, got ", o.kernel_size());
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(),
                                                         o.kernel_size())
                                    .padding(o.kernel_size() / 2)
                                    .bias(o.bias())));
}

torch::Tensor BilinearConvUpsampleImpl::forward(const torch::Tensor& x) {
  check_input("BilinearConvUpsample", x, options.in_channels());
  const int64_t f = options.factor();
  torch::Tensor y = x;
  if (f > 1) {
    y = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{x.size(2) * f, x.size(3) * f})
                              .mode(torch::kBilinear)
                              .align_corners(options.align_corners()));
  }
  return conv->forward(y);
}

void BilinearConvUpsampleImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::nn::BilinearConvUpsample(" << options.in_channels() << ", "
         << options.out_channels() << ", factor=" << options.factor()
         << ", kernel_size=" << options.kernel_size()
         << ", align_corners=" << (options.align_corners() ? "true" : "false") << ")";
}

// ---------------------------------------------------------------------------------------------
// PixelShuffleUpsample

PixelShuffleUpsampleImpl::PixelShuffleUpsampleImpl(PixelShuffleUpsampleOptions options_)
    : options(std::move(options_)) {
  reset();
}

void PixelShuffleUpsampleImpl::reset() {
  const auto& o = options;
  check_channels_and_factor("PixelShuffleUpsample", o.in_channels(), o.out_channels(),
                            o.factor());
  TORCH_CHECK(o.kernel_size() >= 1 && o.kernel_size() % 2 == 1,
              "PixelShuffleUpsample: kernel_size must be odd, got ", o.kernel_size());
  const int64_t r2 = o.factor() * o.factor();
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels() * r2,
                                                         o.kernel_size())
                                    .padding(o.kernel_size() / 2)
                                    .bias(o.bias())));
  if (o.icnr_init()) {
    torch::NoGradGuard no_grad;
    auto sub = torch::empty({o.out_channels(), o.in_channels(), o.kernel_size(), o.kernel_size()},
                            conv->weight.options());
    torch::nn::init::kaiming_normal_(sub, /*a=*/0, torch::kFanIn, torch::kReLU);
    // Output channel c*r*r + s (s = sub-pixel) starts as filter c for every s.
    conv->weight.copy_(sub.repeat_interleave(r2, /*dim=*/0));
    if (conv->bias.defined()) {
      conv->bias.zero_();
    }
  }
}

torch::Tensor PixelShuffleUpsampleImpl::forward(const torch::Tensor& x) {
  check_input("PixelShuffleUpsample", x, options.in_channels());
  const auto y = conv->forward(x);
  if (options.factor() == 1) {
    return y;
  }
  return F::pixel_shuffle(y, F::PixelShuffleFuncOptions(options.factor()));
}

void PixelShuffleUpsampleImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::nn::PixelShuffleUpsample(" << options.in_channels() << ", "
         << options.out_channels() << ", factor=" << options.factor()
         << ", kernel_size=" << options.kernel_size()
         << ", icnr_init=" << (options.icnr_init() ? "true" : "false") << ")";
}

}  // namespace ostrov::nn
