#include "ostrov/losses/segmentation.h"

#include <ATen/ATen.h>

namespace ostrov::losses::functional {

namespace {

void check_inputs(const at::Tensor& logits, const at::Tensor& target, const char* fn) {
  TORCH_CHECK(logits.dim() == 4, fn, ": logits should be [N,C,H,W], got ", logits.sizes());
  TORCH_CHECK(target.dim() == 3, fn, ": target should be [N,H,W], got ", target.sizes());
  TORCH_CHECK(logits.size(0) == target.size(0) && logits.size(2) == target.size(1) &&
                  logits.size(3) == target.size(2),
              fn, ": logits ", logits.sizes(), " and target ", target.sizes(),
              " disagree on N, H or W");
  TORCH_CHECK(target.scalar_type() == at::kLong, fn, ": target should be int64, got ",
              target.scalar_type());
}

// Valid-pixel mask and the target with ignored pixels replaced by class 0.
std::pair<at::Tensor, at::Tensor> valid_target(const at::Tensor& target, int64_t classes,
                                               int64_t ignore_index, const char* fn) {
  auto valid = target.ne(ignore_index);
  auto safe = target.masked_fill(~valid, 0);
  if (safe.numel() > 0) {
    const auto lo = safe.min().item<int64_t>();
    const auto hi = safe.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < classes, fn, ": target labels must be in [0,", classes,
                ") or ignore_index ", ignore_index, ", got range [", lo, ",", hi, "]");
  }
  return {valid, safe};
}

}  // namespace

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& target,
                         const std::vector<double>& class_weights,
                         const at::Tensor& pixel_weights, int64_t ignore_index) {
  check_inputs(logits, target, "cross_entropy");
  const int64_t classes = logits.size(1);
  auto [valid, safe] = valid_target(target, classes, ignore_index, "cross_entropy");
  auto nll = -at::log_softmax(logits, 1).gather(1, safe.unsqueeze(1)).squeeze(1);  // [N,H,W]
  auto w = valid.to(logits.scalar_type());
  if (!class_weights.empty()) {
    TORCH_CHECK(static_cast<int64_t>(class_weights.size()) == classes,
                "cross_entropy: expected ", classes, " class weights, got ",
                class_weights.size());
    auto cw = at::tensor(class_weights, logits.options().dtype(at::kDouble))
                  .to(logits.scalar_type());
    w = w * cw.index_select(0, safe.flatten()).view_as(safe);
  }
  if (pixel_weights.defined()) {
    TORCH_CHECK(pixel_weights.sizes() == target.sizes(), "cross_entropy: pixel_weights ",
                pixel_weights.sizes(), " should match target ", target.sizes());
    w = w * pixel_weights.to(logits.scalar_type());
  }
  auto total = w.sum();
  // All pixels ignored: 0 with a graph, instead of torch's NaN.
  return (nll * w).sum() / total.clamp_min(1e-12);
}

at::Tensor soft_dice(const at::Tensor& logits, const at::Tensor& target, double eps,
                     int64_t ignore_index, bool skip_absent) {
  check_inputs(logits, target, "soft_dice");
  const int64_t classes = logits.size(1);
  auto [valid, safe] = valid_target(target, classes, ignore_index, "soft_dice");
  auto p = at::softmax(logits, 1);
  auto validf = valid.unsqueeze(1).to(p.scalar_type());
  auto y = at::one_hot(safe, classes).permute({0, 3, 1, 2}).to(p.scalar_type()) * validf;
  p = p * validf;
  auto intersection = (y * p).sum({0, 2, 3});
  auto denominator = (y * y).sum({0, 2, 3}) + (p * p).sum({0, 2, 3});
  auto per_class = 1.0 - 2.0 * intersection / (denominator + eps);  // [C]
  if (!skip_absent) return per_class.mean();
  auto predicted = at::one_hot(p.argmax(1), classes).permute({0, 3, 1, 2}) * valid.unsqueeze(1);
  auto present = y.sum({0, 2, 3}).gt(0) | predicted.sum({0, 2, 3}).gt(0);
  auto count = present.sum();
  if (count.item<int64_t>() == 0) return (per_class * 0.0).sum();
  return (per_class * present.to(per_class.scalar_type())).sum() / count;
}

}  // namespace ostrov::losses::functional
