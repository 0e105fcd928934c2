#include "catch.h"

#include <algorithm>
#include <limits>

#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/ops/generic.h"
#include "ostrov/ops/nms.h"
#include "ostrov/ops/roi_align.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

// Regions over a [2,C,10,12] map, in image coordinates (spatial_scale 0.5 maps them onto the
// map): ordinary boxes, boxes crossing every border, a sub-pixel box, an empty one, an
// inverted one, one entirely outside, and a large one (adaptive grids of several points).
at::Tensor test_rois(at::ScalarType type) {
  return at::tensor({0., 2., 3., 15., 12.,    //
                     1., 0., 0., 24., 20.,    //
                     1., -6., -4., 8., 9.,    //
                     0., 18., 14., 30., 26.,  //
                     1., 5.2, 6.1, 5.9, 6.4,  //
                     0., 7., 7., 7., 7.,      //
                     1., 9., 9., 4., 5.,      //
                     0., 40., 40., 50., 60.,  //
                     0., -10., -10., 40., 36., //
                     1., 3.3, 1.7, 11.9, 17.2},
                    at::kDouble)
      .view({10, 5})
      .to(type);
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("roi_align of a linear ramp averages the sample positions", "[ops][roi_align]") {
  // input(y, x) = x on a 4x4 map: bilinear interpolation reproduces x exactly inside.
  auto input = at::arange(4, at::kFloat).repeat({4, 1}).view({1, 1, 4, 4});
  // Legacy (aligned=false): box [0,0,2,2], 1x1 output, 2x2 samples at x = 0.5, 1.5 -> 1.0.
  auto rois = at::tensor({0.f, 0.f, 0.f, 2.f, 2.f}).view({1, 5});
  auto out = ops::roi_align(input, rois, {1, 1}, 1.0, 2, false);
  REQUIRE(out.sizes() == at::IntArrayRef({1, 1, 1, 1}));
  CHECK(out.item<float>() == Approx(1.0f));
  // aligned=true shifts by -0.5: samples at x = 0, 1 -> 0.5.
  CHECK(ops::roi_align(input, rois, {1, 1}, 1.0, 2, true).item<float>() == Approx(0.5f));
  // 1x2 output: bins [0,1] and [1,2], one sample each at 0.5 and 1.5.
  auto two = ops::roi_align(input, rois, {1, 2}, 1.0, 1, false);
  CHECK(two[0][0][0][0].item<float>() == Approx(0.5f));
  CHECK(two[0][0][0][1].item<float>() == Approx(1.5f));
  // The per-image list form builds the same rois.
  CHECK(at::equal(ops::roi_align(input, std::vector<at::Tensor>{rois.slice(1, 1, 5)}, {1, 2}, 1.0, 1, false), two));
}

TEST_CASE("roi_align forward and backward match torchvision", "[ops][roi_align][parity]") {
  TempDir dir;
  io::StateDict in;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const std::vector<int64_t> ratios = {0, 2, -1};
  struct Run {
    std::string key;
    at::ScalarType type;
    bool aligned;
    int64_t ratio;
  };
  std::vector<Run> runs;
  for (const auto type : {at::kFloat, at::kDouble}) {
    const std::string t = type == at::kFloat ? "f" : "d";
    in.insert("input." + t, at::randn({2, 3, 10, 12}, gen, at::kDouble).to(type));
    in.insert("rois." + t, test_rois(type));
    in.insert("weight." + t, at::randn({10, 3, 3, 4}, gen, at::kDouble).to(type));
    for (const bool aligned : {false, true}) {
      for (const int64_t ratio : ratios) {
        runs.push_back({t + "." + std::to_string(aligned) + "." + std::to_string(ratio), type, aligned, ratio});
      }
    }
  }
  io::save_state_dict(in, dir / "in.pt");
  const auto r = test::run_python(dir, R"(
import torch, torchvision.ops as ops
inp = torch.load(')" + (dir / "in.pt") + R"(')
out = {}
for t in ['f', 'd']:
    for aligned in [False, True]:
        for ratio in [0, 2, -1]:
            x = inp['input.' + t].clone().requires_grad_(True)
            y = ops.roi_align(x, inp['rois.' + t], (3, 4), spatial_scale=0.5, sampling_ratio=ratio, aligned=aligned)
            (y * inp['weight.' + t]).sum().backward()
            k = '%s.%d.%d' % (t, aligned, ratio)
            out['out.' + k] = y.detach()
            out['grad.' + k] = x.grad
torch.save(out, ')" + (dir / "out.pt") + R"(')
)");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto ref = io::load_state_dict(dir / "out.pt");
  double worst = 0.0;
  for (const auto& run : runs) {
    INFO(run.key);
    const std::string t = run.type == at::kFloat ? "f" : "d";
    auto x = in["input." + t].clone().requires_grad_(true);
    auto y = ops::roi_align(x, in["rois." + t], {3, 4}, 0.5, run.ratio, run.aligned);
    REQUIRE(y.sizes() == at::IntArrayRef({10, 3, 3, 4}));
    REQUIRE(y.scalar_type() == run.type);
    (y * in["weight." + t]).sum().backward();
    const double out_diff = max_abs_diff(y.detach(), ref["out." + run.key]);
    const double grad_diff = max_abs_diff(x.grad(), ref["grad." + run.key]);
    CHECK(out_diff <= 1e-5);
    CHECK(grad_diff <= 1e-5);
    worst = std::max({worst, out_diff, grad_diff});
  }
  // Same operation order as torchvision: the results are in fact identical.
  CHECK(worst == 0.0);
}

TEST_CASE("roi_align's backward is the adjoint of its forward", "[ops][roi_align]") {
  // roi_align is linear in the input, so <roi_align(v), w> == <v, grad of <roi_align(x), w>>.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto x = at::randn({2, 4, 10, 12}, gen, at::kDouble).requires_grad_(true);
  auto rois = test_rois(at::kDouble);
  auto w = at::randn({10, 4, 2, 3}, gen, at::kDouble);
  auto v = at::randn({2, 4, 10, 12}, gen, at::kDouble);
  (ops::roi_align(x, rois, {2, 3}, 0.5, 0, true) * w).sum().backward();
  const double lhs = (ops::roi_align(v, rois, {2, 3}, 0.5, 0, true) * w).sum().item<double>();
  const double rhs = (v * x.grad()).sum().item<double>();
  CHECK(lhs == Approx(rhs).epsilon(1e-12));
  CHECK(x.grad().abs().sum().item<double>() > 0.0);
}

TEST_CASE("roi_align gives gradients to input only, and works without autograd", "[ops][roi_align]") {
  auto x = at::rand({1, 2, 6, 6}).requires_grad_(true);
  auto rois = at::tensor({0.f, 1.f, 1.f, 4.f, 5.f}).view({1, 5}).requires_grad_(true);
  auto y = ops::roi_align(x, rois, {2, 2}, 1.0, 2, false);
  CHECK(y.requires_grad());
  y.sum().backward();
  CHECK(x.grad().defined());
  CHECK_FALSE(rois.grad().defined());
  // Inference mode and no-grad give the same values without a graph.
  at::Tensor z;
  {
    c10::InferenceMode guard;
    z = ops::roi_align(x.detach(), rois.detach(), {2, 2}, 1.0, 2, false);
  }
  CHECK(at::equal(z, y.detach()));
  {
    torch::NoGradGuard guard;
    CHECK_FALSE(ops::roi_align(x, rois, {2, 2}, 1.0, 2, false).requires_grad());
  }
}

TEST_CASE("roi_align is the same on one thread and several", "[ops][roi_align]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto x = at::randn({2, 6, 10, 12}, gen).requires_grad_(true);
  auto rois = test_rois(at::kFloat);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  auto y1 = ops::roi_align(x, rois, {3, 3}, 0.5, -1, true);
  y1.sum().backward();
  auto g1 = x.grad().clone();
  x.mutable_grad().zero_();
  at::set_num_threads(4);
  auto y4 = ops::roi_align(x, rois, {3, 3}, 0.5, -1, true);
  y4.sum().backward();
  at::set_num_threads(threads);
  CHECK(at::equal(y1, y4));
  CHECK(at::equal(g1, x.grad()));
}

TEST_CASE("roi_align rejects wrong inputs with the actual values", "[ops][roi_align]") {
  const auto x = at::rand({2, 3, 8, 8});
  const auto rois = at::tensor({0.f, 1.f, 1.f, 4.f, 4.f}).view({1, 5});
  CHECK_THROWS_WITH(ops::roi_align(at::rand({3, 8, 8}), rois, {2, 2}), Catch::Contains("[3, 8, 8]"));
  CHECK_THROWS_WITH(ops::roi_align(x, at::rand({4, 4}), {2, 2}), Catch::Contains("[4, 4]"));
  CHECK_THROWS_WITH(ops::roi_align(x, rois.to(at::kDouble), {2, 2}), Catch::Contains("Double"));
  CHECK_THROWS_WITH(ops::roi_align(x.to(at::kInt), rois.to(at::kInt), {2, 2}), Catch::Contains("Int"));
  CHECK_THROWS_WITH(ops::roi_align(x, rois, {0, 2}), Catch::Contains("[0, 2]"));
  auto far = rois.clone();
  far[0][0] = 2;
  CHECK_THROWS_WITH(ops::roi_align(x, far, {2, 2}), Catch::Contains("batch index 2"));
  far[0][0] = -1;
  CHECK_THROWS_WITH(ops::roi_align(x, far, {2, 2}), Catch::Contains("batch index -1"));
  CHECK_THROWS_WITH(ops::roi_align(x, std::vector<at::Tensor>{at::rand({2, 5})}, {2, 2}),
                    Catch::Contains("[2, 5]"));
}

TEST_CASE("roi_align with no regions gives an empty output and a zero gradient", "[ops][roi_align]") {
  auto x = at::rand({2, 3, 8, 8}).requires_grad_(true);
  auto y = ops::roi_align(x, at::zeros({0, 5}), {7, 7}, 0.25, 0, true);
  CHECK(y.sizes() == at::IntArrayRef({0, 3, 7, 7}));
  y.sum().backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().abs().sum().item<float>() == 0.0f);
  CHECK(ops::roi_align(x.detach(), std::vector<at::Tensor>{at::zeros({0, 4}), at::zeros({0, 4})}, {2, 2})
            .sizes() == at::IntArrayRef({0, 3, 2, 2}));
}

// The ATen-operations implementation (ops::generic::roi_align), which the public function runs
// for tensors on other devices (CUDA), against the CPU kernel: on the CPU here, so that machines
// without a GPU check the arithmetic of the GPU path.

namespace {

// The largest difference relative to the reference's largest magnitude (at least 1).
double relative_diff(const at::Tensor& a, const at::Tensor& ref) {
  if (ref.numel() == 0) return 0.0;
  return max_abs_diff(a, ref) / std::max(1.0, ref.abs().max().item<double>());
}

// Random regions in image coordinates across the borders of the 20x24 image that the [10,12]
// maps come from at scale 0.5 (so partly outside, more so at scale 0.25), of sizes 0 to 30.
at::Tensor random_rois(at::Generator gen, int64_t count, at::ScalarType type) {
  const auto batch = at::randint(2, {count, 1}, gen, at::kDouble);
  const auto corner = at::rand({count, 2}, gen, at::kDouble) * 50 - 10;
  const auto size = at::rand({count, 2}, gen, at::kDouble) * 30;
  return at::cat({batch, corner, corner + size}, 1).to(type);
}

}  // namespace

TEST_CASE("generic roi_align equals the CPU kernel forward and backward",
          "[ops][roi_align][generic]") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(21);
  double worst_forward = 0.0;
  int runs = 0;
  for (const auto type : {at::kFloat, at::kDouble}) {
    const double tolerance = type == at::kFloat ? 1e-5 : 1e-12;
    const auto rois = at::cat({test_rois(type), random_rois(gen, 14, type)}, 0);
    for (const double scale : {0.5, 0.25}) {
      for (const bool aligned : {false, true}) {
        for (const int64_t ratio : {2, -1, 0}) {
          INFO(type << ", scale " << scale << ", aligned " << aligned << ", sampling_ratio "
                    << ratio);
          const auto x = at::randn({2, 3, 10, 12}, gen, at::kDouble).to(type);
          const auto grad = at::randn({rois.size(0), 3, 3, 4}, gen, at::kDouble).to(type);
          auto x_cpu = x.clone().requires_grad_(true);
          auto x_aten = x.clone().requires_grad_(true);
          const auto y_cpu = ops::roi_align(x_cpu, rois, {3, 4}, scale, ratio, aligned);
          const auto y_aten =
              ops::generic::roi_align(x_aten, rois, {3, 4}, scale, ratio, aligned);
          REQUIRE(y_aten.sizes() == y_cpu.sizes());
          REQUIRE(y_aten.scalar_type() == type);
          const double forward = relative_diff(y_aten.detach(), y_cpu.detach());
          CHECK(forward <= tolerance);
          y_cpu.backward(grad);
          y_aten.backward(grad);
          REQUIRE(x_aten.grad().defined());
          const double backward = relative_diff(x_aten.grad(), x_cpu.grad());
          CHECK(backward <= tolerance);
          CHECK(x_cpu.grad().abs().sum().item<double>() > 0.0);
          worst_forward = std::max(worst_forward, forward);
          ++runs;
        }
      }
    }
  }
  CHECK(runs == 24);
  // The same operations per sample in the same order as the CPU kernel: in fact equal.
  CHECK(worst_forward == 0.0);
}

TEST_CASE("generic roi_align reads pixel 0 for samples outside the map as the CPU kernel",
          "[ops][roi_align][generic]") {
  // An outside sample adds 0 * input[b, c, 0, 0] (torchvision's pre-calculation), so an
  // infinite pixel 0 makes NaN bins in a region off the map, on both paths alike.
  auto x = at::rand({1, 2, 6, 6}, at::kDouble);
  x[0][0][0][0] = std::numeric_limits<double>::infinity();
  const auto rois = at::tensor({0., 20., 20., 30., 30., 0., 1., 1., 4., 4., 0., -3., -3., 2., 2.},
                               at::kDouble)
                        .view({3, 5});
  for (const int64_t ratio : {2, -1}) {
    INFO("sampling_ratio " << ratio);
    const auto cpu = ops::roi_align(x, rois, {2, 2}, 1.0, ratio, false);
    const auto via_aten = ops::generic::roi_align(x, rois, {2, 2}, 1.0, ratio, false);
    CHECK(at::isnan(cpu).any().item<bool>());
    CHECK(at::equal(at::isnan(via_aten), at::isnan(cpu)));
    CHECK(at::equal(at::isinf(via_aten), at::isinf(cpu)));
    const auto finite = at::isfinite(cpu);
    CHECK(at::equal(via_aten.masked_select(finite), cpu.masked_select(finite)));
  }
}

TEST_CASE("generic roi_align gives gradients to input only, also with nothing to sample",
          "[ops][roi_align][generic]") {
  auto x = at::rand({1, 2, 6, 6}).requires_grad_(true);
  auto rois = at::tensor({0.f, 1.f, 1.f, 4.f, 5.f}).view({1, 5}).requires_grad_(true);
  auto y = ops::generic::roi_align(x, rois, {2, 2}, 1.0, 2, false);
  CHECK(y.requires_grad());
  y.sum().backward();
  CHECK(x.grad().defined());
  CHECK_FALSE(rois.grad().defined());
  // No regions: an empty output, and a zero gradient.
  auto x2 = at::rand({2, 3, 8, 8}).requires_grad_(true);
  auto empty = ops::generic::roi_align(x2, at::zeros({0, 5}), {7, 7}, 0.25, 0, true);
  CHECK(empty.sizes() == at::IntArrayRef({0, 3, 7, 7}));
  empty.sum().backward();
  REQUIRE(x2.grad().defined());
  CHECK(x2.grad().abs().sum().item<float>() == 0.0f);
  // An empty aligned region with the adaptive ratio has no sample point (a 0x0 grid): zeros.
  auto x3 = at::rand({1, 2, 6, 6}).requires_grad_(true);
  const auto point = at::tensor({0.f, 3.f, 3.f, 3.f, 3.f}).view({1, 5});
  auto none = ops::generic::roi_align(x3, point, {2, 2}, 1.0, 0, true);
  CHECK(at::equal(none.detach(), ops::roi_align(x3.detach(), point, {2, 2}, 1.0, 0, true)));
  CHECK(none.abs().sum().item<float>() == 0.0f);
  none.sum().backward();
  REQUIRE(x3.grad().defined());
  CHECK(x3.grad().abs().sum().item<float>() == 0.0f);
  // Without autograd: the same values, no graph.
  {
    torch::NoGradGuard guard;
    CHECK_FALSE(ops::generic::roi_align(x, rois, {2, 2}, 1.0, 2, false).requires_grad());
  }
}

TEST_CASE("generic roi_align rejects wrong inputs as the CPU kernel", "[ops][roi_align][generic]") {
  const auto x = at::rand({2, 3, 8, 8});
  const auto rois = at::tensor({0.f, 1.f, 1.f, 4.f, 4.f}).view({1, 5});
  CHECK_THROWS_WITH(ops::generic::roi_align(at::rand({3, 8, 8}), rois, {2, 2}),
                    Catch::Contains("[3, 8, 8]"));
  CHECK_THROWS_WITH(ops::generic::roi_align(x, rois.to(at::kDouble), {2, 2}),
                    Catch::Contains("Double"));
  CHECK_THROWS_WITH(ops::generic::roi_align(x, rois, {0, 2}), Catch::Contains("[0, 2]"));
  auto far = rois.clone();
  far[0][0] = 2;
  CHECK_THROWS_WITH(ops::generic::roi_align(x, far, {2, 2}), Catch::Contains("batch index 2"));
  far[0][0] = -1;
  CHECK_THROWS_WITH(ops::generic::roi_align(x, far, {2, 2}), Catch::Contains("batch index -1"));
}

TEST_CASE("roi_align on CUDA tensors equals the CPU results forward and backward",
          "[ops][roi_align][cuda]") {
  if (!torch::cuda::is_available()) return;  // the generic tests above cover this path's arithmetic
  auto gen = at::make_generator<at::CPUGeneratorImpl>(23);
  for (const auto type : {at::kFloat, at::kDouble}) {
    const double tolerance = type == at::kFloat ? 1e-5 : 1e-12;
    const auto rois = at::cat({test_rois(type), random_rois(gen, 14, type)}, 0);
    for (const bool aligned : {false, true}) {
      for (const int64_t ratio : {2, -1}) {
        INFO(type << ", aligned " << aligned << ", sampling_ratio " << ratio);
        const auto x = at::randn({2, 3, 10, 12}, gen, at::kDouble).to(type);
        const auto grad = at::randn({rois.size(0), 3, 3, 4}, gen, at::kDouble).to(type);
        auto x_cpu = x.clone().requires_grad_(true);
        auto x_cuda = x.cuda().requires_grad_(true);
        const auto y_cpu = ops::roi_align(x_cpu, rois, {3, 4}, 0.5, ratio, aligned);
        const auto y_cuda = ops::roi_align(x_cuda, rois.cuda(), {3, 4}, 0.5, ratio, aligned);
        CHECK(y_cuda.is_cuda());
        CHECK(relative_diff(y_cuda.detach().cpu(), y_cpu.detach()) <= tolerance);
        y_cpu.backward(grad);
        y_cuda.backward(grad.cuda());
        REQUIRE(x_cuda.grad().defined());
        CHECK(x_cuda.grad().is_cuda());
        CHECK(relative_diff(x_cuda.grad().cpu(), x_cpu.grad()) <= tolerance);
      }
    }
  }
  const auto x = at::rand({2, 3, 8, 8});
  const auto rois = at::tensor({0.f, 1.f, 1.f, 4.f, 4.f}).view({1, 5});
  CHECK_THROWS_WITH(ops::roi_align(x.cuda(), rois, {2, 2}), Catch::Contains("same device"));
}

TEST_CASE("roi_align and nms take autocast's bfloat16 and compute in float32", "[ops][roi_align][nms]") {
  // The float32 result on the bfloat16-rounded values, in the input's type, with a gradient.
  const auto input = at::rand({1, 3, 16, 16}).to(at::kBFloat16).requires_grad_(true);
  const auto rois = at::tensor({0.0f, 1.3f, 2.1f, 11.7f, 9.4f, 0.0f, 4.0f, 4.5f, 15.0f, 14.2f})
                        .view({2, 5});
  const auto pooled = ops::roi_align(input, rois, {5, 5}, 1.0, 2, true);
  CHECK(pooled.scalar_type() == at::kBFloat16);
  const auto expected = ops::roi_align(input.detach().to(at::kFloat), rois, {5, 5}, 1.0, 2, true);
  CHECK(at::equal(pooled.detach(), expected.to(at::kBFloat16)));
  pooled.to(at::kFloat).sum().backward();
  REQUIRE(input.grad().defined());
  CHECK(input.grad().scalar_type() == at::kBFloat16);
  CHECK(input.grad().to(at::kFloat).sum().item<double>() > 0.0);

  const auto boxes = at::tensor({0.f, 0.f, 10.f, 10.f, 1.f, 1.f, 11.f, 11.f, 20.f, 20.f, 30.f, 30.f})
                         .view({3, 4});
  const auto scores = at::tensor({0.9f, 0.8f, 0.7f});
  CHECK(at::equal(ops::nms(boxes.to(at::kBFloat16), scores.to(at::kBFloat16), 0.5),
                  at::tensor({0, 2}, at::kLong)));
  CHECK(at::equal(ops::batched_nms(boxes.to(at::kHalf), scores, at::tensor({0, 1, 0}, at::kLong), 0.5),
                  at::tensor({0, 1, 2}, at::kLong)));
}
