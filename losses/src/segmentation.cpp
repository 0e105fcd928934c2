#include "ostrov/losses/segmentation.h"

#include <ATen/ATen.h>

#include "checks.h"

namespace ostrov::losses {

namespace functional {

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
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), fn, ": logits should be floating point, got ",
              logits.scalar_type());
}

}  // namespace

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& target,
                         const std::vector<double>& class_weights,
                         const at::Tensor& pixel_weights, int64_t ignore_index) {
  check_inputs(logits, target, "cross_entropy");
  const int64_t classes = logits.size(1);
  TORCH_CHECK(classes >= 2, "cross_entropy: logits need at least 2 classes, got ",
              logits.sizes());
  auto [valid, safe] = detail::check_labels(logits, target, classes, ignore_index, "cross_entropy");
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
    w = w * detail::check_pixel_weights(pixel_weights, target, logits, "cross_entropy");
  }
  auto total = w.sum();
  // All pixels ignored: 0 with a graph, instead of torch's NaN.
  return (nll * w).sum() / total.clamp_min(1e-12);
}

at::Tensor soft_dice(const at::Tensor& logits, const at::Tensor& target, double eps,
                     int64_t ignore_index, bool skip_absent) {
  check_inputs(logits, target, "soft_dice");
  const bool binary = logits.size(1) == 1;
  const int64_t classes = binary ? 2 : logits.size(1);
  auto [valid, safe] = detail::check_labels(logits, target, classes, ignore_index, "soft_dice");
  auto validf = valid.unsqueeze(1).to(logits.scalar_type());
  at::Tensor p;
  at::Tensor y;
  at::Tensor predicted;  // [N,Nc,H,W] hard prediction, for skip_absent
  if (binary) {
    p = at::sigmoid(logits) * validf;
    y = safe.unsqueeze(1).to(p.scalar_type()) * validf;
    if (skip_absent) predicted = p.gt(0.5);
  } else {
    p = at::softmax(logits, 1) * validf;
    y = at::one_hot(safe, classes).permute({0, 3, 1, 2}).to(p.scalar_type()) * validf;
    if (skip_absent) {
      predicted = at::one_hot(logits.argmax(1), classes).permute({0, 3, 1, 2}) * valid.unsqueeze(1);
    }
  }
  auto intersection = (y * p).sum({0, 2, 3});
  auto denominator = (y * y).sum({0, 2, 3}) + (p * p).sum({0, 2, 3});
  auto per_class = 1.0 - 2.0 * intersection / (denominator + eps);  // [Nc]
  if (!skip_absent) return per_class.mean();
  auto present = (y.sum({0, 2, 3}).gt(0) | predicted.sum({0, 2, 3}).gt(0)).to(per_class.scalar_type());
  // No class present: 0 with a graph (no host sync needed).
  return (per_class * present).sum() / present.sum().clamp_min(1.0);
}

at::Tensor ce_dice(const at::Tensor& logits, const at::Tensor& target, const CEDiceOptions& o,
                   const at::Tensor& pixel_weights) {
  auto ce = cross_entropy(logits, target, o.class_weights(), pixel_weights, o.ignore_index());
  auto dice = soft_dice(logits, target, o.eps(), o.ignore_index(), o.skip_absent());
  return o.ce_weight() * ce + o.dice_weight() * dice;
}

}  // namespace functional

namespace {

void print_weights(std::ostream& stream, const std::vector<double>& w) {
  stream << "[";
  for (size_t i = 0; i < w.size(); ++i) stream << (i ? ", " : "") << w[i];
  stream << "]";
}

}  // namespace

CrossEntropyImpl::CrossEntropyImpl(CrossEntropyOptions options_) : options(std::move(options_)) {}

at::Tensor CrossEntropyImpl::forward(const at::Tensor& logits, const at::Tensor& target,
                                     const at::Tensor& pixel_weights) {
  return functional::cross_entropy(logits, target, options.class_weights(), pixel_weights,
                                   options.ignore_index());
}

void CrossEntropyImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::CrossEntropy(class_weights=";
  print_weights(stream, options.class_weights());
  stream << ", ignore_index=" << options.ignore_index() << ")";
}

SoftDiceImpl::SoftDiceImpl(SoftDiceOptions options_) : options(std::move(options_)) {}

at::Tensor SoftDiceImpl::forward(const at::Tensor& logits, const at::Tensor& target) {
  return functional::soft_dice(logits, target, options.eps(), options.ignore_index(),
                               options.skip_absent());
}

void SoftDiceImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::SoftDice(eps=" << options.eps()
         << ", ignore_index=" << options.ignore_index()
         << ", skip_absent=" << (options.skip_absent() ? "true" : "false") << ")";
}

CEDiceImpl::CEDiceImpl(CEDiceOptions options_) : options(std::move(options_)) {}

at::Tensor CEDiceImpl::forward(const at::Tensor& logits, const at::Tensor& target,
                               const at::Tensor& pixel_weights) {
  return functional::ce_dice(logits, target, options, pixel_weights);
}

void CEDiceImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::CEDice(ce_weight=" << options.ce_weight()
         << ", dice_weight=" << options.dice_weight() << ", class_weights=";
  print_weights(stream, options.class_weights());
  stream << ", ignore_index=" << options.ignore_index() << ", eps=" << options.eps()
         << ", skip_absent=" << (options.skip_absent() ? "true" : "false") << ")";
}

at::Tensor CrossEntropyImpl::compute(const LossInputs& in) {
  return forward(need(in.logits, "cross_entropy", "logits"), need(in.target, "cross_entropy", "target"),
                 in.pixel_weights);
}

at::Tensor SoftDiceImpl::compute(const LossInputs& in) {
  return forward(need(in.logits, "soft_dice", "logits"), need(in.target, "soft_dice", "target"));
}

at::Tensor CEDiceImpl::compute(const LossInputs& in) {
  return forward(need(in.logits, "ce_dice", "logits"), need(in.target, "ce_dice", "target"),
                 in.pixel_weights);
}

}  // namespace ostrov::losses
