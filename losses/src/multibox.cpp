#include "ostrov/losses/multibox.h"

#include <limits>

#include <ATen/ATen.h>

#include "checks.h"

namespace ostrov::losses {

namespace functional {

namespace {

void check_options(const MultiboxLossOptions& o) {
  TORCH_CHECK(o.alpha() >= 0, "multibox_loss: alpha must be >= 0, got ", o.alpha());
  TORCH_CHECK(o.neg_pos_ratio() >= 0, "multibox_loss: neg_pos_ratio must be >= 0, got ",
              o.neg_pos_ratio());
  TORCH_CHECK(o.min_negatives() >= 0, "multibox_loss: min_negatives must be >= 0, got ",
              o.min_negatives());
  TORCH_CHECK(o.beta() > 0, "multibox_loss: beta must be > 0, got ", o.beta());
}

}  // namespace

MultiboxLossOutput multibox_loss(const at::Tensor& locations, const at::Tensor& logits,
                                 const at::Tensor& target_locations,
                                 const at::Tensor& target_labels,
                                 const MultiboxLossOptions& options) {
  check_options(options);
  TORCH_CHECK(logits.dim() == 3, "multibox_loss: logits should be [N,P,C], got ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()),
              "multibox_loss: logits should be floating point, got ", logits.scalar_type());
  const int64_t n = logits.size(0);
  const int64_t p = logits.size(1);
  const int64_t c = logits.size(2);
  TORCH_CHECK(c >= 2, "multibox_loss: logits need at least 2 classes (background + 1), got ",
              logits.sizes());
  TORCH_CHECK(locations.dim() == 3 && locations.size(0) == n && locations.size(1) == p &&
                  locations.size(2) == 4,
              "multibox_loss: locations should be [N,P,4] = [", n, ",", p, ",4], got ",
              locations.sizes(), " (logits ", logits.sizes(), ")");
  TORCH_CHECK(target_locations.sizes() == locations.sizes(), "multibox_loss: target_locations ",
              target_locations.sizes(), " should match locations ", locations.sizes());
  TORCH_CHECK(target_labels.dim() == 2 && target_labels.size(0) == n && target_labels.size(1) == p,
              "multibox_loss: target_labels should be [N,P] = [", n, ",", p, "], got ",
              target_labels.sizes());
  TORCH_CHECK(target_labels.scalar_type() == at::kLong,
              "multibox_loss: target_labels should be int64, got ", target_labels.scalar_type());

  // Negative labels are ignored priors: checked as an ignore value of -1 after clamping.
  auto ignored = target_labels.lt(0);
  auto labels = target_labels.masked_fill(ignored, -1);
  auto [valid, safe] = detail::check_labels(logits, labels, c, -1, "multibox_loss");
  auto positive = safe.gt(0);                  // [N,P]
  auto negative = valid & safe.eq(0);          // [N,P]

  const auto pos_per_image = positive.sum(1);  // [N] int64
  const auto num_pos = pos_per_image.sum().clamp_min(1).to(logits.scalar_type());

  // Localisation: smooth-L1 summed over the 4 offsets of every positive prior.
  auto diff = (locations - target_locations.to(locations.scalar_type())).abs();
  const double beta = options.beta();
  auto smooth = at::where(diff.lt(beta), 0.5 * diff * diff / beta, diff - 0.5 * beta);
  auto location = (smooth.sum(2) * positive.to(smooth.scalar_type())).sum() / num_pos;

  // Classification: per-prior cross-entropy.
  auto ce = -at::log_softmax(logits, 2).gather(2, safe.unsqueeze(2)).squeeze(2);  // [N,P]
  at::Tensor selected;
  {
    at::NoGradGuard no_grad;
    const double inf = std::numeric_limits<double>::infinity();
    auto ranking = ce.detach().masked_fill(~negative, -inf);
    auto order = std::get<1>(ranking.sort(1, /*descending=*/true));
    auto rank = order.argsort(/*dim=*/1, /*descending=*/false);  // rank[i] = position of prior i in descending order
    auto available = negative.sum(1);
    auto wanted = (pos_per_image * options.neg_pos_ratio()).clamp_min(options.min_negatives());
    auto num_neg = at::minimum(wanted, available);  // [N]
    selected = positive | (rank.lt(num_neg.unsqueeze(1)) & negative);
  }
  auto classification = (ce * selected.to(ce.scalar_type())).sum() / num_pos;
  return {options.alpha() * location + classification, location, classification};
}

}  // namespace functional

MultiboxLossImpl::MultiboxLossImpl(MultiboxLossOptions options_) : options(options_) { reset(); }

void MultiboxLossImpl::reset() { functional::check_options(options); }

MultiboxLossOutput MultiboxLossImpl::forward(const at::Tensor& locations, const at::Tensor& logits,
                                             const at::Tensor& target_locations,
                                             const at::Tensor& target_labels) {
  return functional::multibox_loss(locations, logits, target_locations, target_labels, options);
}

void MultiboxLossImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::MultiboxLoss(alpha=" << options.alpha()
         << ", neg_pos_ratio=" << options.neg_pos_ratio()
         << ", min_negatives=" << options.min_negatives() << ", beta=" << options.beta() << ")";
}

at::Tensor MultiboxLossImpl::compute(const LossInputs& in) {
  return forward(need(in.locations, "multibox", "locations"), need(in.logits, "multibox", "logits"),
                 need(in.target_locations, "multibox", "target_locations"),
                 need(in.target, "multibox", "target"))
      .loss;
}

}  // namespace ostrov::losses
