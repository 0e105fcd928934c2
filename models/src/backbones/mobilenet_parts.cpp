#include "mobilenet_parts.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include "ostrov/io/weights.h"
#include "ostrov/nn/conv_bn_act.h"

namespace ostrov::models::detail {

namespace tnn = torch::nn;

int64_t make_divisible(double v, int64_t divisor) {
  int64_t rounded = std::max<int64_t>(
      divisor, static_cast<int64_t>(v + static_cast<double>(divisor) / 2.0) / divisor * divisor);
  if (static_cast<double>(rounded) < 0.9 * v) rounded += divisor;
  return rounded;
}

ConvNormActImpl::ConvNormActImpl(Spec spec) : spec_(spec) { reset(); }

void ConvNormActImpl::reset() {
  const auto& s = spec_;
  conv = register_module("0", tnn::Conv2d(tnn::Conv2dOptions(s.in, s.out, s.kernel)
                                              .stride(s.stride)
                                              .padding((s.kernel - 1) / 2 * s.dilation)
                                              .dilation(s.dilation)
                                              .groups(s.groups)
                                              .bias(false)));
  bn = register_module(
      "1", tnn::BatchNorm2d(tnn::BatchNorm2dOptions(s.out).eps(s.eps).momentum(s.momentum)));
}

at::Tensor ConvNormActImpl::forward(const at::Tensor& x) {
  auto y = ostrov::nn::conv_bn(conv, bn, x);
  switch (spec_.act) {
    case Act::kNone:
      return y;
    case Act::kReLU:
      return at::relu_(y);  // y is this block's own output
    case Act::kReLU6:
      return at::hardtanh_(y, 0.0, 6.0);
    case Act::kHardswish:
      return at::hardswish(y);
  }
  return y;
}

void init_mobilenet(torch::nn::Module& features) {
  torch::NoGradGuard no_grad;
  for (const auto& module : features.modules(/*include_self=*/false)) {
    if (auto* conv = module->as<tnn::Conv2d>()) {
      tnn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut);
      if (conv->bias.defined()) tnn::init::zeros_(conv->bias);
    } else if (auto* bn = module->as<tnn::BatchNorm2d>()) {
      tnn::init::ones_(bn->weight);
      tnn::init::zeros_(bn->bias);
    }
  }
}

std::vector<std::string> numbered_stage_names(size_t count) {
  std::vector<std::string> names;
  for (size_t i = 0; i < count; ++i) names.push_back(std::to_string(i));
  return names;
}

size_t numbered_stage(const std::string& name, size_t count, const char* who) {
  for (size_t i = 0; i < count; ++i) {
    if (name == std::to_string(i)) return i;
  }
  TORCH_CHECK(false, who, " has no stage \"", name, "\" (stages: \"0\" ... \"", count - 1,
              "\", torchvision's feature indices)");
}

torch::OrderedDict<std::string, at::Tensor> forward_numbered(
    const at::Tensor& x, const std::vector<std::string>& names, size_t count, const char* who,
    const std::function<at::Tensor(size_t, const at::Tensor&)>& run) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3, who, " expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  std::vector<bool> wanted(count, false);
  size_t last = 0;
  for (const auto& name : names) {
    const size_t k = numbered_stage(name, count, who);
    wanted[k] = true;
    last = std::max(last, k);
  }
  torch::OrderedDict<std::string, at::Tensor> out;
  auto y = x;
  for (size_t i = 0; i <= last && !names.empty(); ++i) {
    y = run(i, y);
    if (wanted[i]) out.insert(std::to_string(i), y);
  }
  return out;
}

void load_features(torch::nn::Module& features, const io::StateDict& state,
                   const std::string& source) {
  const std::string prefix = "features.";
  bool classification = false;
  for (const auto& item : state) {
    if (item.key().rfind(prefix, 0) == 0) classification = true;
  }
  if (!classification) {
    io::load_state_dict_into(features, state, /*strict=*/true, source);
    return;
  }
  io::StateDict body;
  for (const auto& item : state) {
    if (item.key().rfind(prefix, 0) == 0) {
      body.insert(item.key().substr(prefix.size()), item.value());
    } else if (item.key().rfind("classifier.", 0) != 0) {
      body.insert(item.key(), item.value());  // reported as unexpected
    }
  }
  io::load_state_dict_into(features, body, /*strict=*/true, source);
}

}  // namespace ostrov::models::detail
