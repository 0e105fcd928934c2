#include "catch.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "ostrov/io/state_dict.h"
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
