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
  /// A zero [C,C] matrix for C = `num_classes` (c10::Error unless positive); targets equal to
  /// `ignore_index` are not counted.
  explicit ConfusionMatrix(int64_t num_classes, int64_t ignore_index = 255);

  /// target: integer class indices (e.g. [N,H,W]) in [0,C) or ignore_index.
  /// prediction: either integer class indices of the target's shape, in [0,C), or floating
  /// scores [N,C,...] (logits or probabilities, target [N,...]) whose argmax over dim 1 is the
  /// prediction. Errors (c10::Error) name both shapes on a mismatch, the offending label
  /// outside [0,C), and NaN scores.
  void update(const at::Tensor& prediction, const at::Tensor& target);
  void reset();
  /// Adds another matrix's counts (data-parallel evaluation: sum over ranks). Both must have
  /// the same num_classes and ignore_index.
  void merge(const ConfusionMatrix& other);
  /// Replaces the counts with `counts` [C,C] int64 (e.g. the matrix summed over ranks by an
  /// all-reduce); error on a wrong shape or negative counts.
  void set_counts(const at::Tensor& counts);

  const at::Tensor& matrix() const { return matrix_; }  ///< [C,C] int64 on the CPU
  int64_t num_classes() const { return num_classes_; }    ///< C
  int64_t ignore_index() const { return ignore_index_; }  ///< target value that is not counted

  /// IoU per class = TP / (TP + FP + FN); NaN for classes absent from both.
  std::vector<double> iou_per_class() const;
  /// Mean over classes whose IoU is defined (not NaN); NaN when none is.
  double mean_iou() const;
  /// Correct pixels / counted pixels = trace / sum; NaN before any pixel. For two classes this
  /// is the lecture's (TP + TN) / all.
  double pixel_accuracy() const;
  /// One-vs-rest (TP + TN) / all with `positive_class` as the positive class and every other
  /// class as negative (equal to pixel_accuracy() for C = 2); NaN before any pixel.
  double binary_accuracy(int64_t positive_class = 1) const;
  /// Recall per class TP / (TP + FN); NaN for classes without target pixels.
  std::vector<double> accuracy_per_class() const;
  /// Mean of accuracy_per_class() over classes with target pixels; NaN when none.
  double mean_class_accuracy() const;
  /// Frequency-weighted IoU (Long et al., FCN): sum_c (target pixels of c / all) * IoU_c over
  /// classes with target pixels; NaN before any pixel.
  double frequency_weighted_iou() const;

 private:
  int64_t num_classes_;
  int64_t ignore_index_;
  at::Tensor matrix_;
};

}  // namespace ostrov::metrics
