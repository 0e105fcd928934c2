#pragma once
// Assigning ground-truth boxes to priors (anchors) for training a detector: threshold
// matching (torchvision's Matcher / SSDMatcher, SSD paper section 2.2 "Matching strategy") and
// optimal one-to-one (Hungarian) matching solved with linear_sum_assignment.
//
// Every matcher returns int64 [P] (P = number of priors): the index in [0, G) of the ground
// truth matched to each prior, kBackground (-1) when none, or kBetweenThresholds (-2) for the
// general Matcher's "ignore" band. Boxes are x1, y1, x2, y2 (any units, the same for both).

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

namespace ostrov::ops {

/// Matched index of a prior with no ground truth (torchvision's BELOW_LOW_THRESHOLD).
constexpr int64_t kBackground = -1;
/// Matched index of a prior whose best quality lies in [low, high) (BETWEEN_THRESHOLDS).
constexpr int64_t kBetweenThresholds = -2;

/// Options of torchvision.models.detection._utils.Matcher(high_threshold, low_threshold,
/// allow_low_quality_matches=False).
struct MatcherOptions {
  /// The two thresholds; allow_low_quality_matches keeps its default (false).
  MatcherOptions(double high_threshold, double low_threshold)
      : high_threshold_(high_threshold), low_threshold_(low_threshold) {}
  /// Quality >= high_threshold: matched to the best ground truth.
  TORCH_ARG(double, high_threshold);
  /// Quality < low_threshold: kBackground; in between: kBetweenThresholds.
  TORCH_ARG(double, low_threshold);
  /// Faster R-CNN's rule: priors tied for a ground truth's highest quality keep their best
  /// ground truth even below the thresholds.
  TORCH_ARG(bool, allow_low_quality_matches) = false;
};

/// torchvision's `Matcher(...)(match_quality_matrix)`: quality [G,P] (e.g. IoU of each ground
/// truth with each prior, G >= 1, P >= 1) -> int64 [P]. Throws c10::Error when G or P is 0
/// (as torchvision) or low_threshold > high_threshold.
at::Tensor match(const at::Tensor& quality, const MatcherOptions& options);

/// torchvision's SSDMatcher(threshold): Matcher(threshold, threshold, no low-quality matches),
/// then every ground truth g takes the prior where its quality is highest (argmax over priors,
/// first index on ties), whatever its quality and even if another ground truth had it; when
/// two ground truths pick the same prior the later one (higher index) wins, so the earlier one
/// may end with no prior at all. quality [G,P] -> int64 [P] in {-1} U [0, G).
at::Tensor ssd_match(const at::Tensor& quality, double threshold = 0.5);

/// ssd_match on the IoU of gt_boxes [G,4] and priors [P,4] (torchvision's box_iou), the
/// assignment torchvision's SSD trains with. No ground truth (G = 0) gives all kBackground (as
/// torchvision's SSD does). Throws c10::Error naming the first degenerate box
/// (x2 <= x1 or y2 <= y1, or not finite).
at::Tensor threshold_match(const at::Tensor& gt_boxes, const at::Tensor& priors,
                           double threshold = 0.5);

/// threshold_match of a batch: gt_boxes[n] [G_n,4] (G_n may be 0) -> int64 [N,P], row n equal
/// to threshold_match(gt_boxes[n], priors, threshold). One IoU matrix and one reduction for
/// the whole batch instead of a dozen small operations per image (SSD training targets).
/// Errors name the image and box.
at::Tensor threshold_match(const std::vector<at::Tensor>& gt_boxes, const at::Tensor& priors,
                           double threshold = 0.5);

/// The location term F_match of the Hungarian cost.
enum class LocationCost {
  /// 1 - IoU(g, p), in [0, 1]: scale-free, 0 for a perfect overlap.
  kOneMinusIou,
  /// L1 distance between the SSD regression target of (g, p) (BoxCoder(coder_weights).encode)
  /// and the predicted codes of p (zeros when none are given): the localisation error the
  /// network would make on that pair (with zero predictions, how far p must move to become g).
  kEncodedL1,
};

/// The four BoxCoder weights (wx, wy, ww, wh).
using BoxCoderWeights = std::array<double, 4>;

/// Options of hungarian_match.
struct HungarianMatcherOptions {
  /// alpha, the weight of the location term.
  TORCH_ARG(double, location_weight) = 1.0;
  /// The location term.
  TORCH_ARG(LocationCost, location_cost) = LocationCost::kOneMinusIou;
  /// Weight of the confidence term (used only when a confidence tensor is given).
  TORCH_ARG(double, confidence_weight) = 1.0;
  /// BoxCoder weights for LocationCost::kEncodedL1 (SSD's (10, 10, 5, 5) = variances 0.1, 0.2).
  TORCH_ARG(BoxCoderWeights, coder_weights) = {10.0, 10.0, 5.0, 5.0};
  /// Also mark as positives the priors whose best IoU is >= threshold (Matcher(threshold,
  /// threshold)), as SSD does; the Hungarian pairs are set afterwards and win.
  TORCH_ARG(bool, add_threshold_positives) = false;
  /// The IoU threshold of add_threshold_positives.
  TORCH_ARG(double, threshold) = 0.5;
};

/// The [G,P] float64 cost matrix of hungarian_match:
///   cost[g, p] = alpha * F_match(g, p) + beta * F_conf(g, p)
/// with alpha = location_weight, beta = confidence_weight, F_match the chosen LocationCost and
///   F_conf(g, p) = -confidence[p]              for confidence [P] (objectness),
///   F_conf(g, p) = -confidence[p, labels[g]]   for confidence [P,C] (class scores, with
///                                               gt_labels int64 [G] in [0, C)),
///   F_conf = 0                                  when confidence is undefined.
/// Higher confidence lowers the cost; pass probabilities for a term bounded like 1 - IoU.
/// pred_codes [P,4] are the predicted offsets for kEncodedL1 (undefined = zeros).
at::Tensor hungarian_cost(const at::Tensor& gt_boxes, const at::Tensor& priors,
                          const HungarianMatcherOptions& options = {},
                          const at::Tensor& confidence = {}, const at::Tensor& gt_labels = {},
                          const at::Tensor& pred_codes = {});

/// Optimal one-to-one matching: each ground truth gets exactly one prior (when G <= P) and each
/// prior at most one ground truth, minimising the summed hungarian_cost (solved with
/// linear_sum_assignment). Unlike ssd_match, no ground truth can lose its prior to another.
/// With add_threshold_positives, the threshold positives are added first and the Hungarian pairs
/// overwrite them. gt_boxes [G,4], priors [P,4] -> int64 [P] in {-1} U [0, G); G = 0 gives all
/// kBackground. Throws c10::Error for degenerate boxes or mismatched shapes.
at::Tensor hungarian_match(const at::Tensor& gt_boxes, const at::Tensor& priors,
                           const HungarianMatcherOptions& options = {},
                           const at::Tensor& confidence = {}, const at::Tensor& gt_labels = {},
                           const at::Tensor& pred_codes = {});

}  // namespace ostrov::ops
