#pragma once
// SSD training targets: match ground-truth boxes to the default boxes (threshold matching as
// torchvision's SSD, or optimal one-to-one Hungarian matching, ostrov::ops::matchers.h, with a
// cost from the default boxes or from the network's own predictions) and
// encode the matched boxes with BoxCoder(10,10,5,5), giving what
// ostrov::losses::functional::multibox_loss takes as target_locations and target_labels.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ostrov/ops/matchers.h"

namespace ostrov::models {

/// Options of ssd_targets.
struct SSDTargetOptions {
  /// "threshold" (torchvision's SSDMatcher: IoU >= iou_threshold, plus each object's best
  /// prior), "hungarian" (ops::hungarian_match with `hungarian`: one prior per object, the
  /// cost from the priors) or "hungarian_predicted" (set prediction, Stewart et al. 2016 and
  /// DETR: one prediction per object, the cost from the network's current outputs, see
  /// SSDPredictions).
  TORCH_ARG(std::string, matcher) = "threshold";
  /// IoU threshold of the threshold matcher.
  TORCH_ARG(double, iou_threshold) = 0.5;
  /// Options of the Hungarian matcher.
  TORCH_ARG(ops::HungarianMatcherOptions, hungarian) = {};
  /// BoxCoder weights (SSD: 10, 10, 5, 5).
  TORCH_ARG(ops::BoxCoderWeights, coder_weights) = ops::BoxCoderWeights{10.0, 10.0, 5.0, 5.0};
  /// When > 0, labels must be < num_classes.
  TORCH_ARG(int64_t, num_classes) = 0;
};

/// The network's outputs that matcher "hungarian_predicted" matches, for one image ([P,...]) or
/// a batch ([N,P,...]); no gradient flows through the matching, so pass them detached.
/// The cost of object g and prediction p is, with alpha = hungarian.location_weight and
/// beta = hungarian.confidence_weight,
///   alpha * |BoxCoder.encode(g, prior p) - codes[p]|_1  -  beta * probabilities[p, label g]:
/// the L1 distance of the predicted box to the object in SSD's offset units, and the
/// predicted probability of the object's class.
struct SSDPredictions {
  at::Tensor codes;          ///< [P,4] / [N,P,4] predicted offsets (the SSD's locations)
  at::Tensor probabilities;  ///< [P,C] / [N,P,C] class probabilities (softmax of the scores)
};

/// Targets of one image (P priors) or of a batch ([N,P,...]).
struct SSDTargets {
  at::Tensor locations;  ///< [P,4] / [N,P,4] float: encoded matched boxes (zeros off positives)
  at::Tensor labels;     ///< [P] / [N,P] int64: 0 background, 1..C-1 matched class
};

/// gt_boxes [G,4] float x1,y1,x2,y2 (the priors' units, e.g. input pixels), gt_labels [G]
/// integer in 1..C-1, priors [P,4] x1,y1,x2,y2 -> targets of the image. G = 0 gives all
/// background. `predictions` are read by matcher "hungarian_predicted" only (and required
/// there). Throws c10::Error for an unknown matcher, mismatched shapes, a label < 1 (or
/// >= num_classes) naming its index, and degenerate boxes (from the matchers).
SSDTargets ssd_targets(const at::Tensor& gt_boxes, const at::Tensor& gt_labels,
                       const at::Tensor& priors, const SSDTargetOptions& options = {},
                       const SSDPredictions& predictions = {});

/// Batch form: one [G_n,4] / [G_n] pair per image -> [N,P,4] and [N,P]; `predictions` as
/// [N,P,4] and [N,P,C].
SSDTargets ssd_targets(const std::vector<at::Tensor>& gt_boxes,
                       const std::vector<at::Tensor>& gt_labels, const at::Tensor& priors,
                       const SSDTargetOptions& options = {},
                       const SSDPredictions& predictions = {});

}  // namespace ostrov::models
