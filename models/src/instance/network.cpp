#include "ostrov/models/instance/network.h"

#include <ATen/ATen.h>

#include "detector_counting.h"
#include "ostrov/ops/nms.h"

namespace ostrov::models {

at::Tensor InstanceNetwork::class_agnostic(const InstancePrediction& p, double) const {
  return at::arange(p.masks.size(0), at::kLong);
}

at::Tensor InstanceNetwork::counted_masks(const InstancePrediction& p) const { return p.masks; }

at::Tensor detail::class_agnostic_detections(const InstancePrediction& p, double min_score,
                                             double nms_threshold) {
  if (p.masks.size(0) == 0) return at::arange(0, at::kLong);
  const auto candidates = (p.scores >= min_score).nonzero().squeeze(1);
  return candidates.index({ops::nms(p.boxes.index({candidates}), p.scores.index({candidates}),
                                    nms_threshold)});
}

at::Tensor detail::counted_detection_masks(const InstancePrediction& p, double count_score,
                                           double nms_threshold) {
  return p.masks.index({class_agnostic_detections(p, count_score, nms_threshold).flip(0)});
}

}  // namespace ostrov::models
