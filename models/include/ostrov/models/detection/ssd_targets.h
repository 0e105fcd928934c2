#pragma once
// SSD training targets: match ground-truth boxes to the default boxes (threshold matching as
// torchvision's SSD, or optimal one-to-one Hungarian matching, ostrov::ops::matchers.h) and
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
  /// prior) or "hungarian" (ops::hungarian_match with `hungarian`: one prior per object).
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

/// Targets of one image (P priors) or of a batch ([N,P,...]).
struct SSDTargets {
  at::Tensor locations;  ///< [P,4] / [N,P,4] float: encoded matched boxes (zeros off positives)
  at::Tensor labels;     ///< [P] / [N,P] int64: 0 background, 1..C-1 matched class
};

/// gt_boxes [G,4] float x1,y1,x2,y2 (the priors' units, e.g. input pixels), gt_labels [G]
/// integer in 1..C-1, priors [P,4] x1,y1,x2,y2 -> targets of the image. G = 0 gives all
/// background. Throws c10::Error for an unknown matcher, mismatched shapes, a label < 1 (or
/// >= num_classes) naming its index, and degenerate boxes (from the matchers).
SSDTargets ssd_targets(const at::Tensor& gt_boxes, const at::Tensor& gt_labels,
                       const at::Tensor& priors, const SSDTargetOptions& options = {});

/// Batch form: one [G_n,4] / [G_n] pair per image -> [N,P,4] and [N,P].
SSDTargets ssd_targets(const std::vector<at::Tensor>& gt_boxes,
                       const std::vector<at::Tensor>& gt_labels, const at::Tensor& priors,
                       const SSDTargetOptions& options = {});

}  // namespace ostrov::models
