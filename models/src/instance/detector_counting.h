#pragma once
// Internal to ostrov::models: how the detector-based instance networks (SSDMask, FasterRCNN)
// see their detections as one class and count them as objects (InstanceNetwork's
// class_agnostic and counted_masks), in one place for both.

#include <ATen/core/Tensor.h>

#include "ostrov/models/instance/network.h"

namespace ostrov::models::detail {

/// Indices of p's detections scoring >= min_score that survive a class-agnostic NMS at
/// nms_threshold, best first: the detectors' NMS is per class, so one object can come back as
/// a shirt and as a coat.
at::Tensor class_agnostic_detections(const InstancePrediction& p, double min_score,
                                     double nms_threshold);

/// The masks of class_agnostic_detections(p, count_score, nms_threshold), weakest first so that
/// the stronger win where they overlap.
at::Tensor counted_detection_masks(const InstancePrediction& p, double count_score,
                                   double nms_threshold);

}  // namespace ostrov::models::detail
