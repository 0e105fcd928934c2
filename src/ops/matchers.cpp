#include "ostrov/ops/matchers.h"

#include <algorithm>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "ostrov/ops/assignment.h"
#include "ostrov/ops/box_coder.h"
#include "ostrov/ops/boxes.h"

namespace ostrov::ops {

namespace {

void check_matcher_boxes(const at::Tensor& boxes, const char* fn, const char* name) {
  TORCH_CHECK(boxes.defined(), fn, ": ", name, " is an undefined tensor");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, fn, ": ", name, " should be [N,4], got ",
              boxes.sizes());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()), fn, ": ", name,
              " should be floating point, got ", boxes.scalar_type());
  if (boxes.numel() == 0) return;
  const auto bad = (boxes.slice(1, 2, 4) <= boxes.slice(1, 0, 2))
                       .any(1)
                       .logical_or(boxes.isfinite().all(1).logical_not());
  if (!bad.any().item<bool>()) return;
  const int64_t i = bad.nonzero()[0][0].item<int64_t>();
  const auto b = boxes[i].to(at::kCPU, at::kDouble);
  const double* p = b.data_ptr<double>();
  TORCH_CHECK(false, fn, ": ", name, " ", i, " is degenerate: [", p[0], ", ", p[1], ", ", p[2],
              ", ", p[3], "] (x1, y1, x2, y2 with x2 <= x1 or y2 <= y1, or not finite)");
}

// IoU [N,M] in a's dtype, b converted to it (ops::box_iou needs one dtype for its kernel).
at::Tensor pairwise_iou(const at::Tensor& a, const at::Tensor& b) {
  return box_iou(a, b.to(a.device(), a.scalar_type()));
}

void check_quality(const at::Tensor& quality, const char* fn) {
  TORCH_CHECK(quality.defined() && quality.dim() == 2, fn,
              ": quality should be [G,P] (ground truths x priors), got ",
              quality.defined() ? quality.sizes() : at::IntArrayRef{});
  TORCH_CHECK(quality.size(0) > 0, fn, ": no ground-truth boxes (quality is ", quality.sizes(),
              ")");
  TORCH_CHECK(quality.size(1) > 0, fn, ": no priors (quality is ", quality.sizes(), ")");
}

}  // namespace

at::Tensor match(const at::Tensor& quality, const MatcherOptions& options) {
  check_quality(quality, "match");
  TORCH_CHECK(options.low_threshold() <= options.high_threshold(),
              "match: low_threshold should be <= high_threshold, got ", options.low_threshold(),
              " > ", options.high_threshold());
  // torchvision's Matcher.__call__.
  auto [matched_vals, matches] = quality.max(0);
  const auto all_matches = matches.clone();
  const auto below = matched_vals < options.low_threshold();
  const auto between = (matched_vals >= options.low_threshold())
                           .logical_and(matched_vals < options.high_threshold());
  matches.masked_fill_(below, kBackground);
  matches.masked_fill_(between, kBetweenThresholds);
  if (options.allow_low_quality_matches()) {
    // set_low_quality_matches_: every prior tied for a ground truth's best quality keeps its
    // own best ground truth.
    const auto highest = std::get<0>(quality.max(1));
    const auto tied = (quality == highest.unsqueeze(1)).any(0);
    matches = at::where(tied, all_matches, matches);
  }
  return matches;
}

at::Tensor ssd_match(const at::Tensor& quality, double threshold) {
  check_quality(quality, "ssd_match");
  auto matches = match(quality, MatcherOptions(threshold, threshold)).contiguous();
  // Each ground truth forces its best prior, in index order, so the later one wins a prior
  // both want (what torchvision's sequential index_put_ does on the CPU).
  const auto best = std::get<1>(quality.max(1)).to(at::kCPU).contiguous();
  auto cpu = matches.to(at::kCPU).contiguous();
  int64_t* m = cpu.data_ptr<int64_t>();
  const int64_t* b = best.data_ptr<int64_t>();
  for (int64_t g = 0; g < best.size(0); ++g) m[b[g]] = g;
  return cpu.to(quality.device());
}

at::Tensor threshold_match(const at::Tensor& gt_boxes, const at::Tensor& priors, double threshold) {
  check_matcher_boxes(gt_boxes, "threshold_match", "ground-truth box");
  check_matcher_boxes(priors, "threshold_match", "prior");
  TORCH_CHECK(priors.size(0) > 0, "threshold_match: no priors");
  if (gt_boxes.size(0) == 0) {
    return at::full({priors.size(0)}, kBackground, priors.options().dtype(at::kLong));
  }
  return ssd_match(pairwise_iou(gt_boxes, priors), threshold);
}

at::Tensor threshold_match(const std::vector<at::Tensor>& gt_boxes, const at::Tensor& priors,
                           double threshold) {
  check_matcher_boxes(priors, "threshold_match", "prior");
  TORCH_CHECK(priors.size(0) > 0, "threshold_match: no priors");
  TORCH_CHECK(!gt_boxes.empty(), "threshold_match: the batch is empty");
  const auto n = static_cast<int64_t>(gt_boxes.size());
  const int64_t p = priors.size(0);
  std::vector<int64_t> counts(gt_boxes.size());
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < n; ++i) {
    const auto& boxes = gt_boxes[static_cast<size_t>(i)];
    TORCH_CHECK(boxes.defined() && boxes.dim() == 2 && boxes.size(1) == 4,
                "threshold_match: image ", i, "'s ground-truth boxes should be [G,4], got ",
                boxes.defined() ? boxes.sizes() : at::IntArrayRef{});
    counts[static_cast<size_t>(i)] = boxes.size(0);
    parts.push_back(boxes.to(priors.device(), priors.scalar_type()));
  }
  const auto all = at::cat(parts);
  try {
    check_matcher_boxes(all, "threshold_match", "ground-truth box");
  } catch (const c10::Error&) {  // name the image: check it alone
    for (int64_t i = 0; i < n; ++i) {
      const std::string name = "image " + std::to_string(i) + "'s ground-truth box";
      check_matcher_boxes(gt_boxes[static_cast<size_t>(i)], "threshold_match", name.c_str());
    }
    throw;
  }
  const int64_t g_max = *std::max_element(counts.begin(), counts.end());
  auto matches = at::full({n, p}, kBackground, priors.options().dtype(at::kLong));
  if (g_max == 0) return matches;

  // IoU of every ground truth of the batch with every prior, placed in a [N, G_max, P] block
  // whose padding rows (-1) never win a prior's maximum.
  const auto iou = box_iou(all, priors);
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t g = 0; g < counts[static_cast<size_t>(i)]; ++g) rows.push_back(i * g_max + g);
  }
  const auto row_index = at::tensor(rows, at::kLong).to(priors.device());
  auto quality = at::full({n * g_max, p}, -1.0, iou.options()).index_copy_(0, row_index, iou);
  quality = quality.view({n, g_max, p});

  // torchvision's Matcher(threshold, threshold): each prior's best ground truth (first on ties)
  // when its IoU reaches the threshold, background otherwise ...
  auto [best_iou, best_gt] = quality.max(1);
  matches = at::where(best_iou >= threshold, best_gt, matches).to(at::kCPU).contiguous();
  // ... then each ground truth forces its best prior, the later one winning a shared prior.
  const auto best_prior = std::get<1>(iou.max(1)).to(at::kCPU).contiguous();
  int64_t* m = matches.data_ptr<int64_t>();
  const int64_t* b = best_prior.data_ptr<int64_t>();
  int64_t row = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t g = 0; g < counts[static_cast<size_t>(i)]; ++g, ++row) m[i * p + b[row]] = g;
  }
  return matches.to(priors.device());
}

at::Tensor hungarian_cost(const at::Tensor& gt_boxes, const at::Tensor& priors,
                          const HungarianMatcherOptions& options, const at::Tensor& confidence,
                          const at::Tensor& gt_labels, const at::Tensor& pred_codes) {
  check_matcher_boxes(gt_boxes, "hungarian_cost", "ground-truth box");
  check_matcher_boxes(priors, "hungarian_cost", "prior");
  const int64_t g = gt_boxes.size(0);
  const int64_t p = priors.size(0);
  const auto gt = gt_boxes.to(at::kDouble);
  const auto pr = priors.to(gt.device(), at::kDouble);

  at::Tensor location;
  if (options.location_cost() == LocationCost::kOneMinusIou) {
    TORCH_CHECK(!pred_codes.defined(), "hungarian_cost: pred_codes are only used with ",
                "LocationCost::kEncodedL1");
    location = 1.0 - pairwise_iou(gt, pr);
  } else {
    const auto target = BoxCoder(options.coder_weights())
                            .encode(gt.unsqueeze(1).expand({g, p, 4}).reshape({-1, 4}),
                                    pr.unsqueeze(0).expand({g, p, 4}).reshape({-1, 4}))
                            .reshape({g, p, 4});
    if (pred_codes.defined()) {
      TORCH_CHECK(pred_codes.dim() == 2 && pred_codes.size(0) == p && pred_codes.size(1) == 4,
                  "hungarian_cost: pred_codes should be [P,4] with P = ", p, " priors, got ",
                  pred_codes.sizes());
      location = (target - pred_codes.to(gt.device(), at::kDouble).unsqueeze(0)).abs().sum(2);
    } else {
      location = target.abs().sum(2);
    }
  }
  auto cost = options.location_weight() * location;

  if (confidence.defined()) {
    const auto conf = confidence.to(gt.device(), at::kDouble);
    at::Tensor term;  // [G,P] or [P]
    if (conf.dim() == 1) {
      TORCH_CHECK(conf.size(0) == p,
                  "hungarian_cost: confidence should be [P] or [P,C] with P = ", p, " priors, got ",
                  confidence.sizes());
      TORCH_CHECK(!gt_labels.defined(), "hungarian_cost: gt_labels are only used with class ",
                  "scores confidence [P,C], got confidence ", confidence.sizes());
      term = -conf.unsqueeze(0);
    } else {
      TORCH_CHECK(conf.dim() == 2 && conf.size(0) == p,
                  "hungarian_cost: confidence should be [P] or [P,C] with P = ", p, " priors, got ",
                  confidence.sizes());
      TORCH_CHECK(gt_labels.defined() && gt_labels.dim() == 1 && gt_labels.size(0) == g,
                  "hungarian_cost: class scores [P,C] need gt_labels [G] with G = ", g, ", got ",
                  gt_labels.defined() ? gt_labels.sizes() : at::IntArrayRef{});
      const auto labels = gt_labels.to(gt.device(), at::kLong);
      if (g > 0) {
        const int64_t lo = labels.min().item<int64_t>();
        const int64_t hi = labels.max().item<int64_t>();
        TORCH_CHECK(lo >= 0 && hi < conf.size(1), "hungarian_cost: gt_labels must lie in [0, ",
                    conf.size(1), ") (C of confidence [P,C]), got values in [", lo, ", ", hi, "]");
      }
      term = -conf.index_select(1, labels).t();  // [G,P]
    }
    TORCH_CHECK(conf.isfinite().all().item<bool>(), "hungarian_cost: confidence has NaN or inf");
    cost = cost + options.confidence_weight() * term;
  }
  return cost.contiguous();
}

at::Tensor hungarian_match(const at::Tensor& gt_boxes, const at::Tensor& priors,
                           const HungarianMatcherOptions& options, const at::Tensor& confidence,
                           const at::Tensor& gt_labels, const at::Tensor& pred_codes) {
  const auto cost = hungarian_cost(gt_boxes, priors, options, confidence, gt_labels, pred_codes);
  const int64_t p = priors.size(0);
  TORCH_CHECK(p > 0, "hungarian_match: no priors");
  at::Tensor matches;
  if (options.add_threshold_positives() && gt_boxes.size(0) > 0) {
    const auto q = pairwise_iou(gt_boxes.to(at::kDouble), priors);
    matches = match(q, MatcherOptions(options.threshold(), options.threshold()))
                  .to(at::kCPU)
                  .contiguous();
  } else {
    matches = at::full({p}, kBackground, at::kLong);
  }
  if (gt_boxes.size(0) > 0) {
    const auto [rows, cols] = linear_sum_assignment(cost.to(at::kCPU));
    matches.index_put_({cols.to(at::kCPU)}, rows.to(at::kCPU));
  }
  return matches.to(priors.device());
}

}  // namespace ostrov::ops
