// Detection op workloads. Inputs come from seeded_rand, which equals
// torch.rand(sizes, generator=torch.Generator().manual_seed(seed)) in Python (the same LibTorch
// and Mersenne Twister), so both sides see identical boxes.
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "ostrov/models/detection/ssd_targets.h"
#include "ostrov/ops/assignment.h"
#include "ostrov/ops/boxes.h"
#include "ostrov/ops/nms.h"
#include "ostrov/ops/priors.h"
#include "ostrov/ops/roi_align.h"
#include "workloads.h"

namespace ostrov::bench {
namespace {

// n boxes x1,y1 in [0,extent), sides in [min_side, min_side + side_range).
at::Tensor random_boxes(int64_t n, double extent, double min_side, double side_range, uint64_t seed) {
  auto u = seeded_rand({n, 4}, seed);
  auto xy = u.slice(1, 0, 2) * extent;
  auto wh = u.slice(1, 2, 4) * side_range + min_side;
  return at::cat({xy, xy + wh}, 1);
}

void nms_10k(benchmark::State& state) {
  auto boxes = random_boxes(10000, 1000.0, 10.0, 100.0, 10);
  auto scores = seeded_rand({10000}, 11);
  int64_t kept = 0;
  for (auto _ : state) kept = ops::nms(boxes, scores, 0.5).size(0);
  state.counters["kept"] = static_cast<double>(kept);
}

void box_iou_1000x8732(benchmark::State& state) {
  auto a = random_boxes(1000, 300.0, 4.0, 120.0, 12);
  auto b = random_boxes(8732, 300.0, 4.0, 120.0, 13);
  for (auto _ : state) {
    auto iou = ops::box_iou(a, b);
    benchmark::DoNotOptimize(iou.data_ptr());
  }
}

// Mask R-CNN-like: features [2,256,50,68] of 400x544 images (stride 8), 512 regions -> 7x7,
// sampling ratio 2, aligned; forward and the backward of sum().
void roi_align_fwd_bwd(benchmark::State& state) {
  auto input = seeded_rand({2, 256, 50, 68}, 14).requires_grad_(true);
  auto u = seeded_rand({512, 4}, 15);
  auto x1 = u.select(1, 0) * 400, y1 = u.select(1, 1) * 300;
  auto x2 = x1 + u.select(1, 2) * 200 + 1, y2 = y1 + u.select(1, 3) * 150 + 1;
  auto batch = at::arange(512, at::kFloat).remainder(2);
  auto rois = at::stack({batch, x1, y1, x2, y2}, 1);
  for (auto _ : state) {
    input.mutable_grad() = at::Tensor();
    auto out = ops::roi_align(input, rois, {7, 7}, 1.0 / 8, 2, true);
    out.sum().backward();
    benchmark::DoNotOptimize(input.grad().data_ptr());
  }
}

// 50 objects x 8732 priors (the Hungarian matcher's problem on SSD300), float64 costs.
void lsa_50x8732(benchmark::State& state) {
  auto cost = seeded_rand({50, 8732}, 16).to(at::kDouble);
  double total = 0;
  for (auto _ : state) {
    auto [rows, cols] = ops::linear_sum_assignment(cost);
    total = cost.index({rows, cols}).sum().item<double>();
  }
  state.counters["cost"] = total;
}

// SSD300 training targets for a batch of 32 images with 1..8 objects each: threshold
// matching (IoU >= 0.5 + best prior per object) on the 8732 default boxes and encoding.
void ssd_targets_b32(benchmark::State& state) {
  ops::DefaultBoxGenerator generator(ops::DefaultBoxOptions::ssd300());
  auto priors = generator.forward(ops::ssd300_grid_sizes(), {300, 300});
  std::vector<at::Tensor> boxes, labels;
  for (int64_t i = 0; i < 32; ++i) {
    const int64_t g = 1 + i % 8;
    boxes.push_back(random_boxes(g, 200.0, 20.0, 80.0, 100 + i));
    labels.push_back(at::arange(g, at::kLong).remainder(20) + 1);
  }
  for (auto _ : state) {
    auto targets = models::ssd_targets(boxes, labels, priors);
    benchmark::DoNotOptimize(targets.labels.data_ptr());
  }
}

const bool registered = [] {
  add("nms_10k", nms_10k);
  add("box_iou_1000x8732", box_iou_1000x8732);
  add("roi_align_fwd_bwd", roi_align_fwd_bwd);
  add("lsa_50x8732", lsa_50x8732);
  add("ssd_targets_b32", ssd_targets_b32);
  return true;
}();

}  // namespace
}  // namespace ostrov::bench
