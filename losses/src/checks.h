// Input checks shared by the losses (internal).
#pragma once

#include <cstdint>
#include <utility>

#include <ATen/ATen.h>

namespace ostrov::losses::detail {

/// Checks that `target` holds labels in [0,classes) or ignore_index and that `scores` has no
/// NaN, with one host transfer. Returns (valid mask, target with ignored pixels set to 0).
/// The error names the offending label (the smallest below 0 or the largest >= classes).
inline std::pair<at::Tensor, at::Tensor> check_labels(const at::Tensor& scores,
                                                      const at::Tensor& target, int64_t classes,
                                                      int64_t ignore_index, const char* fn) {
  auto valid = target.ne(ignore_index);
  auto safe = target.masked_fill(~valid, 0);
  if (safe.numel() == 0 && scores.numel() == 0) return {valid, safe};
  auto zero = at::zeros({}, target.options());
  auto stats = at::stack({safe.numel() ? safe.min() : zero, safe.numel() ? safe.max() : zero,
                          scores.numel() ? scores.isnan().any().to(at::kLong) : zero})
                   .to(at::kCPU);
  const auto* s = stats.data_ptr<int64_t>();
  TORCH_CHECK(s[2] == 0, fn, ": the predictions ", scores.sizes(), " contain NaN");
  TORCH_CHECK(s[0] >= 0 && s[1] < classes, fn, ": target label ", s[0] < 0 ? s[0] : s[1],
              " is outside [0,", classes, ") and not ignore_index ", ignore_index,
              " (labels span [", s[0], ",", s[1], "])");
  return {valid, safe};
}

/// Brings a [N,...] pixel weight map to `like`'s dtype after checking its shape.
inline at::Tensor check_pixel_weights(const at::Tensor& weights, const at::Tensor& target,
                                      const at::Tensor& like, const char* fn) {
  TORCH_CHECK(weights.sizes() == target.sizes(), fn, ": pixel_weights ", weights.sizes(),
              " should match target ", target.sizes());
  return weights.to(like.scalar_type());
}

}  // namespace ostrov::losses::detail
