#include "scored_components.h"

#include <ATen/ATen.h>

namespace ostrov::models::detail {

ScoredComponents::ScoredComponents(int64_t height, int64_t width, int64_t min_size)
    : height_(height), width_(width), min_size_(min_size) {}

void ScoredComponents::add(const at::Tensor& labels, int64_t count,
                           const at::Tensor& probability) {
  if (count <= 0) return;
  // Pixels and probability sums of every region in one pass.
  const auto flat = labels.flatten();
  const auto areas = at::bincount(flat, {}, count + 1);
  const auto sums = at::bincount(flat, probability.flatten().to(at::kDouble), count + 1);
  const auto* area = areas.data_ptr<int64_t>();
  const auto* sum = sums.data_ptr<double>();
  for (int64_t k = 1; k <= count; ++k) {
    if (area[k] < min_size_) continue;
    masks_.push_back((labels == k).to(at::kByte));
    scores_.push_back(static_cast<float>(sum[k] / static_cast<double>(area[k])));
  }
}

InstancePrediction ScoredComponents::finish() && {
  InstancePrediction out;
  out.masks = masks_.empty() ? at::zeros({0, height_, width_}, at::kByte) : at::stack(masks_);
  out.scores = at::tensor(scores_, at::kFloat);
  return out;
}

}  // namespace ostrov::models::detail
