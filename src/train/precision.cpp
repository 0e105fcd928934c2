#include "ostrov/train/precision.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

#include "ostrov/core/compat.h"
#include "ostrov/core/error.h"

namespace ostrov::train {

Precision precision_from_name(const std::string& name, const std::string& key) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  if (name == "fp16") return Precision::fp16;
  throw ConfigError(key + ": unknown precision \"" + name + "\"; expected fp32, bf16 or fp16");
}

Precision parse_precision(const std::string& name, const c10::Device& device,
                          const std::string& key) {
  const Precision precision = precision_from_name(name, key);
  if (precision == Precision::fp32) return precision;
  if (!device.is_cpu() && !device.is_cuda()) {
    throw ConfigError(key + " \"" + name + "\": ostrov has autocast only on CPU and CUDA devices, "
                      "not on " + device.str() + "; use fp32 there");
  }
  if (precision == Precision::fp16 && device.is_cpu()) {
    throw ConfigError(key + " \"fp16\" needs a CUDA device (the device is the CPU): LibTorch's "
                      "CPU autocast computes in bfloat16; use bf16 or fp32 on the CPU");
  }
  return precision;
}

std::string precision_name(Precision precision) {
  switch (precision) {
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
    case Precision::fp32: break;
  }
  return "fp32";
}

c10::ScalarType autocast_dtype(Precision precision) {
  switch (precision) {
    case Precision::bf16: return c10::kBFloat16;
    case Precision::fp16: return c10::kHalf;
    case Precision::fp32: break;
  }
  return c10::kFloat;
}

AutocastGuard::AutocastGuard(const c10::Device& device, Precision precision) {
  if (precision == Precision::fp32) return;
  TORCH_CHECK(device.is_cpu() || device.is_cuda(), "AutocastGuard: no autocast on ",
              device.str());
  active_ = true;
  device_type_ = device.type();
  previous_enabled_ = compat::autocast_enabled(device_type_);
  previous_dtype_ = compat::autocast_dtype(device_type_);
  compat::set_autocast(device_type_, true, autocast_dtype(precision));
  // As torch.autocast's __enter__: the cast cache lives while the outermost region does.
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  compat::set_autocast(device_type_, previous_enabled_, previous_dtype_);
}

GradScaler::GradScaler(GradScalerOptions options)
    : options_(options), scale_(options.init_scale()) {
  TORCH_CHECK(options_.init_scale() > 0.0 && options_.growth_factor() > 1.0 &&
                  options_.backoff_factor() > 0.0 && options_.backoff_factor() < 1.0 &&
                  options_.growth_interval() > 0,
              "GradScaler: init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 and "
              "growth_interval > 0 are required");
}

at::Tensor GradScaler::scale(const at::Tensor& loss) const {
  if (!options_.enabled()) return loss;
  // In float32 whatever the loss's type, as torch's scaler multiplies by a float32 scale.
  return loss.to(at::kFloat) * scale_;
}

bool GradScaler::unscale(const std::vector<at::Tensor>& params) {
  // One flag per device, accumulated with tensor operations and read once at the end, so a
  // GPU step synchronises once rather than once per parameter.
  at::Tensor any_bad;
  const double inverse = 1.0 / scale_;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    at::Tensor grad = p.mutable_grad();
    if (options_.enabled()) grad.mul_(inverse);
    const at::Tensor bad = grad.isfinite().logical_not().any();
    any_bad = any_bad.defined() ? any_bad.logical_or(bad.to(any_bad.device())) : bad;
  }
  found_inf_ = any_bad.defined() && any_bad.item<bool>();
  unscaled_ = true;
  return !found_inf_;
}

void GradScaler::update() {
  if (!unscaled_) return;
  unscaled_ = false;
  if (found_inf_) ++skipped_;
  if (!options_.enabled()) return;
  if (found_inf_) {
    scale_ *= options_.backoff_factor();
    growth_tracker_ = 0;
  } else if (++growth_tracker_ >= options_.growth_interval()) {
    // As torch's _amp_update_scale_: the scale is a float32 there, and grows only while it stays
    // finite in float32.
    if (scale_ * options_.growth_factor() <= std::numeric_limits<float>::max()) {
      scale_ *= options_.growth_factor();
    }
    growth_tracker_ = 0;
  }
}

nlohmann::json GradScaler::state() const {
  return {{"scale", scale_}, {"growth_tracker", growth_tracker_}, {"skipped_steps", skipped_}};
}

void GradScaler::load_state(const nlohmann::json& state) {
  auto number = [&](const char* key) -> const nlohmann::json& {
    if (!state.is_object() || !state.contains(key) || !state[key].is_number()) {
      throw Error(std::string("GradScaler state: \"") + key + "\" is missing or not a number in " +
                  state.dump());
    }
    return state[key];
  };
  const double scale = number("scale").get<double>();
  if (!(scale > 0.0) || !std::isfinite(scale)) {
    throw Error("GradScaler state: \"scale\" must be positive and finite, got " + state.dump());
  }
  const auto tracker = number("growth_tracker").get<int64_t>();
  const auto skipped = number("skipped_steps").get<int64_t>();
  if (tracker < 0 || tracker >= options_.growth_interval() || skipped < 0) {
    throw Error("GradScaler state: \"growth_tracker\" must lie in [0, growth_interval = " +
                std::to_string(options_.growth_interval()) + ") and \"skipped_steps\" be >= 0, got " +
                state.dump());
  }
  scale_ = scale;
  growth_tracker_ = tracker;
  skipped_ = skipped;
}

}  // namespace ostrov::train
