#include "ostrov/metrics/confusion_matrix.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

namespace ostrov::metrics {

ConfusionMatrix::ConfusionMatrix(int64_t num_classes, int64_t ignore_index)
    : num_classes_(num_classes), ignore_index_(ignore_index) {
  TORCH_CHECK(num_classes > 0, "ConfusionMatrix: num_classes must be positive, got ",
              num_classes);
  reset();
}

void ConfusionMatrix::reset() { matrix_ = at::zeros({num_classes_, num_classes_}, at::kLong); }

void ConfusionMatrix::update(const at::Tensor& prediction, const at::Tensor& target) {
  TORCH_CHECK(prediction.sizes() == target.sizes(), "ConfusionMatrix::update: prediction ",
              prediction.sizes(), " and target ", target.sizes(), " differ in shape");
  TORCH_CHECK(!at::isFloatingType(prediction.scalar_type()) &&
                  !at::isFloatingType(target.scalar_type()),
              "ConfusionMatrix::update: expected integer class indices, got ",
              prediction.scalar_type(), " and ", target.scalar_type());
  auto t = target.flatten().to(at::kLong);
  auto p = prediction.flatten().to(at::kLong);
  auto valid = t.ne(ignore_index_);
  t = t.masked_select(valid);
  p = p.masked_select(valid);
  if (t.numel() == 0) return;
  auto bounds = at::stack({t.min(), t.max(), p.min(), p.max()}).to(at::kCPU);
  const auto* b = bounds.data_ptr<int64_t>();
  TORCH_CHECK(b[0] >= 0 && b[1] < num_classes_, "ConfusionMatrix::update: target labels in [",
              b[0], ",", b[1], "] outside [0,", num_classes_, ") and not ignore_index ",
              ignore_index_);
  TORCH_CHECK(b[2] >= 0 && b[3] < num_classes_, "ConfusionMatrix::update: predictions in [", b[2],
              ",", b[3], "] outside [0,", num_classes_, ")");
  auto counts = at::bincount(t * num_classes_ + p, {}, num_classes_ * num_classes_);
  matrix_ += counts.view({num_classes_, num_classes_}).to(at::kCPU);
}

std::vector<double> ConfusionMatrix::iou_per_class() const {
  auto m = matrix_.to(at::kDouble);
  auto tp = m.diagonal();
  auto denom = m.sum(1) + m.sum(0) - tp;
  auto iou = tp / denom;  // 0/0 = NaN for absent classes
  return std::vector<double>(iou.data_ptr<double>(), iou.data_ptr<double>() + num_classes_);
}

double ConfusionMatrix::mean_iou() const {
  double sum = 0.0;
  int64_t count = 0;
  for (double v : iou_per_class()) {
    if (!std::isnan(v)) {
      sum += v;
      ++count;
    }
  }
  return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
}

double ConfusionMatrix::pixel_accuracy() const {
  const auto total = matrix_.sum().item<int64_t>();
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(matrix_.diagonal().sum().item<int64_t>()) /
         static_cast<double>(total);
}

}  // namespace ostrov::metrics
