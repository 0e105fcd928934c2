#pragma once
// Mixed precision (`train.precision`): autocast for the forward passes, and loss scaling for
// float16 so that small gradients do not underflow (docs/architecture.md "Devices").
//
//   const auto precision = train::parse_precision("bf16", device);   // fp32 | bf16 | fp16
//   train::GradScaler scaler(train::GradScalerOptions().enabled(precision == train::Precision::fp16));
//   at::Tensor loss;
//   {
//     train::AutocastGuard autocast(device, precision);
//     loss = criterion(model->forward(images), targets);
//   }
//   scaler.scale(loss).backward();
//   if (scaler.unscale(params)) optimizer.step();     // false: a gradient overflowed, skip
//   scaler.update();

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>
#include <torch/arg.h>

namespace ostrov::train {

/// The arithmetic of the forward passes.
enum class Precision {
  fp32,  ///< float32 everywhere (the default)
  bf16,  ///< autocast to bfloat16 (CPU and CUDA); float32's range, so no loss scaling
  fp16,  ///< autocast to float16 with a GradScaler (CUDA only)
};

/// "fp32" | "bf16" | "fp16" by name alone (a config's value before its device is known).
/// ostrov::ConfigError naming `key` for another name.
Precision precision_from_name(const std::string& name,
                              const std::string& key = "train.precision");

/// precision_from_name, checked against `device`: ostrov::ConfigError naming `key` also for
/// fp16 on a CPU (LibTorch's CPU autocast computes in bfloat16; use bf16 there), and for a
/// precision other than fp32 on a device type without autocast here (neither CPU nor CUDA).
Precision parse_precision(const std::string& name, const c10::Device& device,
                          const std::string& key = "train.precision");

/// The config name of `precision` ("fp32", "bf16", "fp16").
std::string precision_name(Precision precision);

/// The dtype autocast casts to: kBFloat16, kHalf, or kFloat for fp32.
c10::ScalarType autocast_dtype(Precision precision);

/// While alive, LibTorch's autocast is on for `device`'s type with `precision`'s dtype: matrix
/// products and convolutions run in the lower precision, reductions and losses in float32
/// (LibTorch's autocast op lists). fp32 changes nothing. The previous state is restored on
/// destruction, so guards nest. Thread-local, as autocast is.
class AutocastGuard {
 public:
  /// Turns autocast on for `device`'s type (CPU or CUDA) with `precision`'s dtype; fp32 does
  /// nothing. c10::Error for bf16/fp16 on another device type (parse_precision rejects those).
  AutocastGuard(const c10::Device& device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_type_ = c10::kCPU;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::kBFloat16;
};

/// Options of GradScaler: torch.amp.GradScaler's defaults.
struct GradScalerOptions {
  /// Off: scale() returns the loss, unscale() only reports whether the gradients are finite.
  TORCH_ARG(bool, enabled) = true;
  /// The first scale.
  TORCH_ARG(double, init_scale) = 65536.0;
  /// Scale multiplier after growth_interval steps in a row with finite gradients.
  TORCH_ARG(double, growth_factor) = 2.0;
  /// Scale multiplier after a step whose gradients overflowed.
  TORCH_ARG(double, backoff_factor) = 0.5;
  /// Finite steps in a row before the scale grows.
  TORCH_ARG(int64_t, growth_interval) = 2000;
};

/// Dynamic loss scaling, with torch.amp.GradScaler's rules: the loss is multiplied by the scale
/// before backward; the gradients are divided by it before the optimizer step (and before
/// clipping); a step whose gradients hold an inf or NaN is skipped and the scale multiplied by
/// backoff_factor; after growth_interval finite steps in a row it is multiplied by growth_factor.
/// Device-generic: the checks are tensor operations on the gradients' device, read back once
/// per step (one synchronisation).
class GradScaler {
 public:
  /// A scaler at options.init_scale(). c10::Error unless init_scale > 0, growth_factor > 1,
  /// 0 < backoff_factor < 1 and growth_interval > 0.
  explicit GradScaler(GradScalerOptions options = {});
  /// `loss` × scale (the loss itself when disabled).
  at::Tensor scale(const at::Tensor& loss) const;
  /// Divides the gradients of `params` by the scale in place (when enabled) and returns whether
  /// all of them are finite. Call it once per step, after backward (and after averaging the
  /// gradients over ranks) and before clipping and the optimizer step.
  bool unscale(const std::vector<at::Tensor>& params);
  /// Adjusts the scale by the last unscale()'s finding (no-op when disabled).
  void update();
  /// The current scale (1 when disabled).
  double scale_value() const { return options_.enabled() ? scale_ : 1.0; }
  /// Steps skipped so far because a gradient overflowed.
  int64_t skipped_steps() const { return skipped_; }
  /// Whether loss scaling is on.
  bool enabled() const { return options_.enabled(); }
  /// {"scale", "growth_tracker", "skipped_steps"}, for checkpoints.
  nlohmann::json state() const;
  /// Restores state(); ostrov::Error naming the key for a malformed object.
  void load_state(const nlohmann::json& state);

 private:
  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  int64_t skipped_ = 0;
  bool found_inf_ = false;
  bool unscaled_ = false;
};

}  // namespace ostrov::train
