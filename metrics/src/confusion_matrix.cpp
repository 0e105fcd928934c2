#include "ostrov/metrics/confusion_matrix.h"

#include <cmath>
#include <limits>

#include <ATen/ATen.h>

namespace ostrov::metrics {

namespace {

double mean_defined(const std::vector<double>& values) {
  double sum = 0.0;
  int64_t count = 0;
  for (double v : values) {
    if (!std::isnan(v)) {
      sum += v;
      ++count;
    }
  }
  return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace

ConfusionMatrix::ConfusionMatrix(int64_t num_classes, int64_t ignore_index)
    : num_classes_(num_classes), ignore_index_(ignore_index) {
  TORCH_CHECK(num_classes > 0, "ConfusionMatrix: num_classes must be positive, got ",
              num_classes);
  reset();
}

void ConfusionMatrix::reset() { matrix_ = at::zeros({num_classes_, num_classes_}, at::kLong); }

void ConfusionMatrix::update(const at::Tensor& prediction, const at::Tensor& target) {
  TORCH_CHECK(!at::isFloatingType(target.scalar_type()) && !at::isComplexType(target.scalar_type()),
              "ConfusionMatrix::update: target should hold integer class indices, got ",
              target.scalar_type());
  at::Tensor pred = prediction;
  at::Tensor nan_flag;
  if (at::isFloatingType(prediction.scalar_type())) {
    // Scores [N,C,...] against target [N,...].
    TORCH_CHECK(prediction.dim() == target.dim() + 1 && prediction.dim() >= 2 &&
                    prediction.size(0) == target.size(0) &&
                    prediction.sizes().slice(2) == target.sizes().slice(1),
                "ConfusionMatrix::update: scores ", prediction.sizes(), " and target ",
                target.sizes(), " differ in shape (expected scores [N,C,...] for target [N,...])");
    TORCH_CHECK(prediction.size(1) == num_classes_, "ConfusionMatrix::update: scores ",
                prediction.sizes(), " have ", prediction.size(1), " classes, expected ",
                num_classes_);
    nan_flag = prediction.isnan().any();
    pred = prediction.argmax(1);
  } else {
    TORCH_CHECK(prediction.sizes() == target.sizes(), "ConfusionMatrix::update: prediction ",
                prediction.sizes(), " and target ", target.sizes(), " differ in shape");
  }
  auto t = target.flatten().to(at::kLong);
  auto p = pred.flatten().to(at::kLong).to(t.device());
  auto valid = t.ne(ignore_index_);
  t = t.masked_select(valid);
  p = p.masked_select(valid);
  auto zero = at::zeros({}, t.options());
  const bool any = t.numel() > 0;
  // One host transfer for every check.
  auto bounds = at::stack({any ? t.min() : zero, any ? t.max() : zero, any ? p.min() : zero,
                           any ? p.max() : zero,
                           nan_flag.defined() ? nan_flag.to(at::kLong).to(t.device()) : zero})
                    .to(at::kCPU);
  const auto* b = bounds.data_ptr<int64_t>();
  TORCH_CHECK(b[4] == 0, "ConfusionMatrix::update: the scores ", prediction.sizes(),
              " contain NaN");
  if (!any) return;
  TORCH_CHECK(b[0] >= 0 && b[1] < num_classes_, "ConfusionMatrix::update: target label ",
              b[0] < 0 ? b[0] : b[1], " is outside [0,", num_classes_,
              ") and not ignore_index ", ignore_index_, " (targets span [", b[0], ",", b[1], "])");
  TORCH_CHECK(b[2] >= 0 && b[3] < num_classes_, "ConfusionMatrix::update: prediction ",
              b[2] < 0 ? b[2] : b[3], " is outside [0,", num_classes_, ") (predictions span [",
              b[2], ",", b[3], "])");
  auto counts = at::bincount(t * num_classes_ + p, {}, num_classes_ * num_classes_);
  matrix_ += counts.view({num_classes_, num_classes_}).to(at::kCPU);
}

void ConfusionMatrix::merge(const ConfusionMatrix& other) {
  TORCH_CHECK(other.num_classes_ == num_classes_ && other.ignore_index_ == ignore_index_,
              "ConfusionMatrix::merge: num_classes/ignore_index ", other.num_classes_, "/",
              other.ignore_index_, " differ from ", num_classes_, "/", ignore_index_);
  matrix_ += other.matrix_;
}

void ConfusionMatrix::set_counts(const at::Tensor& counts) {
  TORCH_CHECK(counts.sizes() == matrix_.sizes(), "ConfusionMatrix::set_counts: expected ",
              matrix_.sizes(), ", got ", counts.sizes());
  TORCH_CHECK(counts.numel() == 0 || counts.min().item<int64_t>() >= 0,
              "ConfusionMatrix::set_counts: negative counts");
  matrix_ = counts.to(at::kCPU, at::kLong).clone();
}

std::vector<double> ConfusionMatrix::iou_per_class() const {
  auto m = matrix_.to(at::kDouble);
  auto tp = m.diagonal();
  auto denom = m.sum(1) + m.sum(0) - tp;
  auto iou = tp / denom;  // 0/0 = NaN for absent classes
  return std::vector<double>(iou.data_ptr<double>(), iou.data_ptr<double>() + num_classes_);
}

double ConfusionMatrix::mean_iou() const { return mean_defined(iou_per_class()); }

double ConfusionMatrix::binary_accuracy(int64_t positive_class) const {
  TORCH_CHECK(positive_class >= 0 && positive_class < num_classes_,
              "ConfusionMatrix::binary_accuracy: positive_class ", positive_class,
              " is outside [0,", num_classes_, ")");
  auto m = matrix_.to(at::kDouble);
  const double total = m.sum().item<double>();
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  const double tp = m[positive_class][positive_class].item<double>();
  const double fn = m[positive_class].sum().item<double>() - tp;
  const double fp = m.select(1, positive_class).sum().item<double>() - tp;
  const double tn = total - tp - fn - fp;
  return (tp + tn) / total;
}

std::vector<double> ConfusionMatrix::accuracy_per_class() const {
  auto m = matrix_.to(at::kDouble);
  auto acc = m.diagonal() / m.sum(1);  // 0/0 = NaN for classes without target pixels
  return std::vector<double>(acc.data_ptr<double>(), acc.data_ptr<double>() + num_classes_);
}

double ConfusionMatrix::mean_class_accuracy() const { return mean_defined(accuracy_per_class()); }

double ConfusionMatrix::frequency_weighted_iou() const {
  auto m = matrix_.to(at::kDouble);
  const double total = m.sum().item<double>();
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  auto freq = m.sum(1) / total;
  const auto iou = iou_per_class();
  double sum = 0.0;
  for (int64_t c = 0; c < num_classes_; ++c) {
    const double f = freq[c].item<double>();
    if (f > 0) sum += f * iou[c];
  }
  return sum;
}

double ConfusionMatrix::pixel_accuracy() const {
  const auto total = matrix_.sum().item<int64_t>();
  if (total == 0) return std::numeric_limits<double>::quiet_NaN();
  return static_cast<double>(matrix_.diagonal().sum().item<int64_t>()) /
         static_cast<double>(total);
}

}  // namespace ostrov::metrics
