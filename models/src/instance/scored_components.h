#pragma once
// Internal to ostrov::models: the last step DeepColoring and Deep Watershed share — labelled
// regions become one binary mask per region, scored by the mean foreground probability inside
// it, regions smaller than min_size dropped.

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "ostrov/models/instance/deep_coloring.h"

namespace ostrov::models::detail {

/// Collects instances into one prediction (masks [N,H,W] uint8, scores [N] float).
class ScoredComponents {
 public:
  ScoredComponents(int64_t height, int64_t width, int64_t min_size);

  /// Adds regions 1..count of `labels` ([H,W] int64, 0 = none), each scored by the mean of
  /// `probability` ([H,W]) over its pixels.
  void add(const at::Tensor& labels, int64_t count, const at::Tensor& probability);

  /// The masks in the order they were added; [0,H,W] when there are none.
  InstancePrediction finish() &&;

 private:
  int64_t height_, width_, min_size_;
  std::vector<at::Tensor> masks_;
  std::vector<float> scores_;
};

}  // namespace ostrov::models::detail
