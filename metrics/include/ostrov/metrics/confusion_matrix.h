#pragma once
// Segmentation metrics from an accumulated confusion matrix.

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ostrov::metrics {

/// Accumulates a [C,C] int64 confusion matrix (rows = target, columns = prediction) with one
/// bincount per update, ignoring pixels whose target is `ignore_index`.
///
///   ConfusionMatrix cm(num_classes);
///   for (auto& batch : loader) cm.update(logits.argmax(1), batch.target);
///   double miou = cm.mean_iou();
class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int64_t num_classes, int64_t ignore_index = 255);

  /// prediction and target: integer tensors of the same shape (e.g. [N,H,W]); predictions
  /// must lie in [0,C), targets in [0,C) or ignore_index (an error reports the range).
  void update(const at::Tensor& prediction, const at::Tensor& target);
  void reset();

  const at::Tensor& matrix() const { return matrix_; }  ///< [C,C] int64 on the CPU
  int64_t num_classes() const { return num_classes_; }

  /// IoU per class = TP / (TP + FP + FN); NaN for classes absent from both.
  std::vector<double> iou_per_class() const;
  /// Mean over classes whose IoU is defined (not NaN); NaN when none is.
  double mean_iou() const;
  /// Correct pixels / counted pixels; NaN before any pixel.
  double pixel_accuracy() const;

 private:
  int64_t num_classes_;
  int64_t ignore_index_;
  at::Tensor matrix_;
};

}  // namespace ostrov::metrics
