#include "ostrov/nn/conv_bn_act.h"

#include <ATen/ops/conv2d.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/padding.h>
#include <torch/nn/options/activation.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/options/conv.h>
#include <torch/nn/options/padding.h>

#include "ostrov/core/compat.h"

namespace ostrov::nn {

namespace F = torch::nn::functional;

PaddingMode padding_mode_from_string(const std::string& name) {
  if (name == "valid") return PaddingMode::kValid;
  if (name == "same") return PaddingMode::kSame;
  if (name == "mirror" || name == "same_mirror" || name == "reflect") {
    return PaddingMode::kSameMirror;
  }
  TORCH_CHECK(false, "unknown padding mode \"", name,
              "\": expected \"valid\", \"same\" or \"mirror\"");
}

std::string to_string(PaddingMode mode) {
  switch (mode) {
    case PaddingMode::kValid:
      return "valid";
    case PaddingMode::kSame:
      return "same";
    case PaddingMode::kSameMirror:
      return "mirror";
  }
  TORCH_CHECK(false, "invalid PaddingMode value ", static_cast<int>(mode));
}

Activation activation_from_string(const std::string& name) {
  if (name == "none" || name == "identity") return Activation::kNone;
  if (name == "relu") return Activation::kReLU;
  if (name == "leaky_relu") return Activation::kLeakyReLU;
  TORCH_CHECK(false, "unknown activation \"", name,
              "\": expected \"none\", \"relu\" or \"leaky_relu\"");
}

std::string to_string(Activation activation) {
  switch (activation) {
    case Activation::kNone:
      return "none";
    case Activation::kReLU:
      return "relu";
    case Activation::kLeakyReLU:
      return "leaky_relu";
  }
  TORCH_CHECK(false, "invalid Activation value ", static_cast<int>(activation));
}

ConvBnActImpl::ConvBnActImpl(ConvBnActOptions options_) : options(std::move(options_)) {
  reset();
}

void ConvBnActImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.in_channels() > 0 && o.out_channels() > 0,
              "ConvBnAct: channels must be positive, got in_channels=", o.in_channels(),
              " out_channels=", o.out_channels());
  TORCH_CHECK(o.kernel_size() >= 1, "ConvBnAct: kernel_size must be >= 1, got ",
              o.kernel_size());
  TORCH_CHECK(o.stride() >= 1, "ConvBnAct: stride must be >= 1, got ", o.stride());
  TORCH_CHECK(o.dilation() >= 1, "ConvBnAct: dilation must be >= 1, got ", o.dilation());
  TORCH_CHECK(o.groups() >= 1 && o.in_channels() % o.groups() == 0 &&
                  o.out_channels() % o.groups() == 0,
              "ConvBnAct: in_channels=", o.in_channels(), " and out_channels=",
              o.out_channels(), " must both be divisible by groups=", o.groups());

  const int64_t total_pad = o.dilation() * (o.kernel_size() - 1);
  // Zero "same" padding with a symmetric amount is done by the convolution itself; every
  // other case (mirror, or the asymmetric split of an even kernel) pads in forward().
  const bool conv_pads = o.padding() == PaddingMode::kSame && total_pad % 2 == 0;
  const bool use_bias = o.bias().value_or(!o.batch_norm());

  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), o.out_channels(),
                                                         o.kernel_size())
                                    .stride(o.stride())
                                    .dilation(o.dilation())
                                    .groups(o.groups())
                                    .padding(conv_pads ? total_pad / 2 : 0)
                                    .bias(use_bias)));
  if (o.batch_norm()) {
    bn = register_module("bn", torch::nn::BatchNorm2d(
                                   torch::nn::BatchNorm2dOptions(o.out_channels())
                                       .eps(o.bn_eps())
                                       .momentum(o.bn_momentum())));
  } else {
    bn = nullptr;
  }
}

torch::Tensor ConvBnActImpl::forward(const torch::Tensor& x) {
  const auto& o = options;
  TORCH_CHECK(x.dim() == 4 && x.size(1) == o.in_channels(),
              "ConvBnAct: input should be [N,", o.in_channels(), ",H,W], got ", x.sizes());

  torch::Tensor y = x;
  const int64_t total_pad = o.dilation() * (o.kernel_size() - 1);
  const bool mirror = o.padding() == PaddingMode::kSameMirror;
  const bool zero_asymmetric = o.padding() == PaddingMode::kSame && total_pad % 2 != 0;
  if (total_pad > 0 && (mirror || zero_asymmetric)) {
    const int64_t before = total_pad / 2;
    const int64_t after = total_pad - before;
    if (mirror) {
      TORCH_CHECK(after < x.size(2) && after < x.size(3),
                  "ConvBnAct: mirror padding of ", after, " (kernel ", o.kernel_size(),
                  ", dilation ", o.dilation(), ") needs H and W larger than it, got input ",
                  x.sizes());
    }
    // F::pad takes (left, right, top, bottom) for the last two dimensions.
    auto pad_options = F::PadFuncOptions({before, after, before, after});
    if (mirror) {
      pad_options.mode(torch::kReflect);
    } else {
      pad_options.mode(torch::kConstant);
    }
    y = F::pad(y, pad_options);
  }

  y = conv_bn(conv, bn, y);
  switch (o.activation()) {
    case Activation::kNone:
      break;
    case Activation::kReLU:
      y = torch::relu_(y);  // y is this block's own output: conv and bn backward never read it
      break;
    case Activation::kLeakyReLU:
      y = F::leaky_relu(y, F::LeakyReLUFuncOptions().negative_slope(o.negative_slope()));
      break;
  }
  return y;
}

void ConvBnActImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "ostrov::nn::ConvBnAct(" << o.in_channels() << ", " << o.out_channels()
         << ", kernel_size=" << o.kernel_size() << ", stride=" << o.stride()
         << ", dilation=" << o.dilation() << ", groups=" << o.groups()
         << ", padding=" << to_string(o.padding())
         << ", batch_norm=" << (o.batch_norm() ? "true" : "false")
         << ", activation=" << to_string(o.activation());
  if (o.activation() == Activation::kLeakyReLU) {
    stream << ", negative_slope=" << o.negative_slope();
  }
  stream << ")";
}

torch::Tensor conv_bn(torch::nn::Conv2d& conv, torch::nn::BatchNorm2d& bn, const torch::Tensor& x) {
  const auto& c = conv->options;
  const bool foldable = !bn.is_empty() && !bn->is_training() && bn->options.track_running_stats() &&
                        bn->options.affine() && compat::get_if<torch::ExpandingArray<2>>(&c.padding()) &&
                        compat::get_if<torch::enumtype::kZeros>(&c.padding_mode());
  if (!foldable) return bn.is_empty() ? conv->forward(x) : bn->forward(conv->forward(x));
  const auto scale = bn->weight / (bn->running_var + bn->options.eps()).sqrt();
  const auto weight = conv->weight * scale.view({-1, 1, 1, 1});
  auto bias = bn->bias - bn->running_mean * scale;
  if (conv->bias.defined()) bias = bias + conv->bias * scale;
  const auto& padding = compat::get<torch::ExpandingArray<2>>(c.padding());
  return at::conv2d(x, weight, bias, *c.stride(), *padding, *c.dilation(), c.groups());
}

}  // namespace ostrov::nn
