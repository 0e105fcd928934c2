#include "ostrov/ops/priors.h"

#include <cmath>
#include <string>

#include <ATen/ATen.h>

namespace ostrov::ops {

namespace {

void check_aspect_ratios(const std::vector<std::vector<double>>& aspect_ratios, const char* who) {
  for (size_t k = 0; k < aspect_ratios.size(); ++k) {
    for (double a : aspect_ratios[k]) {
      TORCH_CHECK(std::isfinite(a) && a > 0, who, ": aspect ratios must be finite and > 0, got ", a,
                  " for feature map ", k);
    }
  }
}

}  // namespace

DefaultBoxOptions DefaultBoxOptions::ssd300() {
  return DefaultBoxOptions({{2}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}})
      .scales({0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05})
      .steps({8, 16, 32, 64, 100, 300});
}

std::vector<GridSize> ssd300_grid_sizes() {
  return {{38, 38}, {19, 19}, {10, 10}, {5, 5}, {3, 3}, {1, 1}};
}

DefaultBoxGenerator::DefaultBoxGenerator(DefaultBoxOptions options) : options_(std::move(options)) {
  const auto& ars = options_.aspect_ratios();
  const auto num_outputs = static_cast<int64_t>(ars.size());
  TORCH_CHECK(num_outputs > 0, "DefaultBoxGenerator: aspect_ratios must list at least one ",
              "feature map");
  check_aspect_ratios(ars, "DefaultBoxGenerator");
  TORCH_CHECK(options_.steps().empty() || options_.steps().size() == ars.size(),
              "DefaultBoxGenerator: aspect_ratios and steps should have the same length, got ",
              ars.size(), " and ", options_.steps().size());
  for (int64_t s : options_.steps()) {
    TORCH_CHECK(s > 0, "DefaultBoxGenerator: steps must be > 0, got ", options_.steps());
  }

  // Scales, as torchvision: the linear rule in float64 then s_K = 1, or the given list.
  if (options_.scales().empty()) {
    if (num_outputs > 1) {
      const double range_ratio = options_.max_ratio() - options_.min_ratio();
      for (int64_t k = 0; k < num_outputs; ++k) {
        scales_.push_back(options_.min_ratio() +
                          range_ratio * static_cast<double>(k) / (num_outputs - 1.0));
      }
      scales_.push_back(1.0);
    } else {
      scales_ = {options_.min_ratio(), options_.max_ratio()};
    }
  } else {
    scales_ = options_.scales();
    TORCH_CHECK(static_cast<int64_t>(scales_.size()) == num_outputs + 1,
                "DefaultBoxGenerator: scales should have one value more than aspect_ratios (",
                num_outputs + 1, "), got ", scales_.size());
  }
  for (double s : scales_) {
    TORCH_CHECK(std::isfinite(s) && s > 0, "DefaultBoxGenerator: scales must be finite and > 0, ",
                "got ", scales_);
  }

  // (w, h) pairs in float64, stored as float32 (torchvision's _generate_wh_pairs).
  for (int64_t k = 0; k < num_outputs; ++k) {
    const double s_k = scales_[k];
    const double s_prime_k = std::sqrt(scales_[k] * scales_[k + 1]);
    std::vector<double> wh = {s_k, s_k, s_prime_k, s_prime_k};
    for (double ar : ars[k]) {
      const double sq_ar = std::sqrt(ar);
      const double w = scales_[k] * sq_ar;
      const double h = scales_[k] / sq_ar;
      wh.insert(wh.end(), {w, h, h, w});
    }
    const auto n = static_cast<int64_t>(wh.size()) / 2;
    wh_pairs_.push_back(at::tensor(wh, at::kDouble).reshape({n, 2}).to(at::kFloat));
  }
}

std::vector<int64_t> DefaultBoxGenerator::num_anchors_per_location() const {
  std::vector<int64_t> out;
  for (const auto& r : options_.aspect_ratios())
    out.push_back(2 + 2 * static_cast<int64_t>(r.size()));
  return out;
}

const at::Tensor& DefaultBoxGenerator::wh_pairs(int64_t k) const {
  TORCH_CHECK(k >= 0 && k < static_cast<int64_t>(wh_pairs_.size()),
              "DefaultBoxGenerator::wh_pairs: feature map ", k, " out of range [0, ",
              wh_pairs_.size(), ")");
  return wh_pairs_[k];
}

at::Tensor DefaultBoxGenerator::grid_default_boxes(const std::vector<GridSize>& grid_sizes,
                                                   GridSize image_size,
                                                   at::ScalarType dtype) const {
  TORCH_CHECK(grid_sizes.size() == wh_pairs_.size(), "DefaultBoxGenerator: expected ",
              wh_pairs_.size(), " feature-map sizes (one per aspect_ratios entry), got ",
              grid_sizes.size());
  TORCH_CHECK(at::isFloatingType(dtype), "DefaultBoxGenerator: dtype must be floating, got ",
              dtype);
  const auto& steps = options_.steps();
  if (!steps.empty()) {
    TORCH_CHECK(image_size[0] > 0 && image_size[1] > 0,
                "DefaultBoxGenerator: image_size {H, W} must be positive, got {", image_size[0],
                ", ", image_size[1], "}");
  }
  std::vector<at::Tensor> default_boxes;
  for (size_t k = 0; k < grid_sizes.size(); ++k) {
    const auto& f_k = grid_sizes[k];
    TORCH_CHECK(f_k[0] > 0 && f_k[1] > 0, "DefaultBoxGenerator: grid size of feature map ", k,
                " must be positive, got {", f_k[0], ", ", f_k[1], "}");
    double x_f_k, y_f_k;
    if (!steps.empty()) {
      // The fixed order of torchvision PR #6551 (already in 0.14): x uses the width.
      x_f_k = static_cast<double>(image_size[1]) / static_cast<double>(steps[k]);
      y_f_k = static_cast<double>(image_size[0]) / static_cast<double>(steps[k]);
    } else {
      y_f_k = static_cast<double>(f_k[0]);
      x_f_k = static_cast<double>(f_k[1]);
    }
    // Same operations as torchvision: int64 arange + 0.5 -> float32, / scalar, .to(dtype).
    const auto shifts_x = ((at::arange(0, f_k[1], at::kLong) + 0.5) / x_f_k).to(dtype);
    const auto shifts_y = ((at::arange(0, f_k[0], at::kLong) + 0.5) / y_f_k).to(dtype);
    const auto grids = at::meshgrid({shifts_y, shifts_x}, "ij");
    const auto shift_y = grids[0].reshape(-1);
    const auto shift_x = grids[1].reshape(-1);

    const auto& wh = wh_pairs_[k];
    const int64_t n = wh.size(0);
    std::vector<at::Tensor> xy;
    for (int64_t r = 0; r < n; ++r) {
      xy.push_back(shift_x);
      xy.push_back(shift_y);
    }
    const auto shifts = at::stack(xy, -1).reshape({-1, 2});
    const auto clipped = options_.clip() ? wh.clamp(0, 1) : wh;
    const auto wh_rep = clipped.repeat({f_k[0] * f_k[1], 1});
    default_boxes.push_back(at::cat({shifts, wh_rep}, 1));
  }
  return at::cat(default_boxes, 0);
}

at::Tensor DefaultBoxGenerator::forward(const std::vector<GridSize>& grid_sizes,
                                        GridSize image_size, at::ScalarType dtype) const {
  const auto boxes = grid_default_boxes(grid_sizes, image_size, dtype);
  // int64 [W, H], multiplied as torchvision does (type promotion keeps the float dtype).
  const auto x_y_size = at::tensor({image_size[1], image_size[0]}, at::kLong);
  const auto cxcy = boxes.slice(1, 0, 2);
  const auto wh = boxes.slice(1, 2, 4);
  return at::cat({(cxcy - 0.5 * wh) * x_y_size, (cxcy + 0.5 * wh) * x_y_size}, -1);
}

PriorBoxOptions PriorBoxOptions::voc() {
  return PriorBoxOptions({38, 19, 10, 5, 3, 1}, 300, {8, 16, 32, 64, 100, 300},
                         {30, 60, 111, 162, 213, 264}, {60, 111, 162, 213, 264, 315},
                         {{2}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}});
}

at::Tensor prior_boxes(const PriorBoxOptions& options) {
  const auto& fm = options.feature_maps();
  const size_t k_maps = fm.size();
  TORCH_CHECK(k_maps > 0, "prior_boxes: feature_maps is empty");
  TORCH_CHECK(options.steps().size() == k_maps && options.min_sizes().size() == k_maps &&
                  options.max_sizes().size() == k_maps && options.aspect_ratios().size() == k_maps,
              "prior_boxes: feature_maps, steps, min_sizes, max_sizes and aspect_ratios need one ",
              "entry per feature map, got ", fm.size(), ", ", options.steps().size(), ", ",
              options.min_sizes().size(), ", ", options.max_sizes().size(), ", ",
              options.aspect_ratios().size());
  TORCH_CHECK(options.min_dim() > 0, "prior_boxes: min_dim must be > 0, got ", options.min_dim());
  check_aspect_ratios(options.aspect_ratios(), "prior_boxes");
  const double image_size = static_cast<double>(options.min_dim());
  std::vector<double> mean;
  for (size_t k = 0; k < k_maps; ++k) {
    TORCH_CHECK(fm[k] > 0, "prior_boxes: feature map sizes must be > 0, got ", fm);
    TORCH_CHECK(options.steps()[k] > 0 && options.min_sizes()[k] > 0 && options.max_sizes()[k] > 0,
                "prior_boxes: steps, min_sizes and max_sizes must be > 0 (feature map ", k, ")");
    const double f_k = image_size / options.steps()[k];
    const double s_k = options.min_sizes()[k] / image_size;
    const double s_k_prime = std::sqrt(s_k * (options.max_sizes()[k] / image_size));
    for (int64_t i = 0; i < fm[k]; ++i) {
      for (int64_t j = 0; j < fm[k]; ++j) {
        const double cx = (static_cast<double>(j) + 0.5) / f_k;
        const double cy = (static_cast<double>(i) + 0.5) / f_k;
        mean.insert(mean.end(), {cx, cy, s_k, s_k, cx, cy, s_k_prime, s_k_prime});
        for (double ar : options.aspect_ratios()[k]) {
          const double r = std::sqrt(ar);
          mean.insert(mean.end(), {cx, cy, s_k * r, s_k / r, cx, cy, s_k / r, s_k * r});
        }
      }
    }
  }
  auto out = at::tensor(mean, at::kDouble).to(at::kFloat).reshape({-1, 4});
  if (options.clip()) out.clamp_(0, 1);
  return out;
}

}  // namespace ostrov::ops
