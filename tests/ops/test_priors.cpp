#include "catch.h"

#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "ostrov/ops/priors.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

// Reads a little-endian float32 file written by numpy's tofile into [-1, 4].
at::Tensor read_f32(const std::string& path) {
  const std::string bytes = ostrov::test::read_bytes(path);
  const auto n = static_cast<int64_t>(bytes.size() / sizeof(float));
  return at::from_blob(const_cast<char*>(bytes.data()), {n}, at::kFloat).clone().reshape({-1, 4});
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("SSD300 default boxes: counts, order and hand-checked values", "[ops][priors]") {
  ops::DefaultBoxGenerator gen(ops::DefaultBoxOptions::ssd300());
  CHECK(gen.num_anchors_per_location() == std::vector<int64_t>{4, 6, 6, 6, 4, 4});
  CHECK(gen.scales().size() == 7);
  const auto boxes = gen.grid_default_boxes(ops::ssd300_grid_sizes(), {300, 300});
  // 38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4 = 5776 + 2166 + 600 + 150 + 36 + 4 = 8732.
  REQUIRE(boxes.sizes() == at::IntArrayRef({8732, 4}));
  CHECK(boxes.scalar_type() == at::kFloat);
  // Box 0: cell (0, 0) of the 38x38 map, step 8: centre 0.5 / (300 / 8) = 1/75, side 0.07.
  CHECK(boxes[0][0].item<double>() == Approx(1.0 / 75).epsilon(1e-6));
  CHECK(boxes[0][1].item<double>() == Approx(1.0 / 75).epsilon(1e-6));
  CHECK(boxes[0][2].item<double>() == Approx(0.07).epsilon(1e-6));
  // Box 1: sqrt(0.07 * 0.15); boxes 2, 3: 0.07 * sqrt(2) by 0.07 / sqrt(2) and swapped.
  CHECK(boxes[1][2].item<double>() == Approx(std::sqrt(0.07 * 0.15)).epsilon(1e-6));
  CHECK(boxes[2][2].item<double>() == Approx(0.07 * std::sqrt(2.0)).epsilon(1e-6));
  CHECK(boxes[2][3].item<double>() == Approx(0.07 / std::sqrt(2.0)).epsilon(1e-6));
  CHECK(boxes[3][2].item<double>() == Approx(0.07 / std::sqrt(2.0)).epsilon(1e-6));
  // Box 4: cell (0, 1): x moves, y does not (row-major over the grid).
  CHECK(boxes[4][0].item<double>() == Approx(1.5 / 37.5).epsilon(1e-6));
  CHECK(boxes[4][1].item<double>() == Approx(0.5 / 37.5).epsilon(1e-6));
  // The 1x1 map's four boxes (8728..8731), centre 0.5: box 8729 has side sqrt(0.87 * 1.05) =
  // 0.956 (not clipped); the last, ar 2 swapped, is 0.87 / sqrt(2) = 0.6152 wide by
  // 0.87 * sqrt(2) = 1.2304 high, clipped to 1.
  CHECK(boxes[8731][0].item<double>() == Approx(0.5));
  CHECK(boxes[8731][2].item<double>() == Approx(0.87 / std::sqrt(2.0)).epsilon(1e-6));
  CHECK(boxes[8731][3].item<double>() == 1.0);
  CHECK(boxes[8729][2].item<double>() == Approx(std::sqrt(0.87 * 1.05)).epsilon(1e-6));
  // forward: x1,y1,x2,y2 in pixels.
  const auto px = gen.forward(ops::ssd300_grid_sizes(), {300, 300});
  CHECK(px[0][0].item<double>() == Approx((1.0 / 75 - 0.035) * 300).epsilon(1e-5));
  CHECK(px[0][2].item<double>() == Approx((1.0 / 75 + 0.035) * 300).epsilon(1e-5));
}

TEST_CASE("DefaultBoxGenerator equals torchvision 0.14's", "[ops][priors][parity]") {
  TempDir dir;
  // SSD300 as ssd300_vgg16 builds it; a non-square image (300 high, 500 wide) with non-square
  // grids, which tells x from y steps; the default linear scales without steps, clip off.
  const std::string script = "d = \"" + dir.path().string() + "\"\n" + R"PY(
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
def run(gen, grids, hw, name):
    g = gen._grid_default_boxes([list(s) for s in grids], list(hw))
    g.numpy().astype("<f4").tofile(f"{d}/{name}_grid.bin")
    images = ImageList(torch.zeros(1, 3, *hw), [tuple(hw)])
    feats = [torch.zeros(1, 1, *s) for s in grids]
    out = gen(images, feats)[0]
    assert out.dtype == torch.float32
    out.numpy().astype("<f4").tofile(f"{d}/{name}_xyxy.bin")
ssd300 = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                             scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
                             steps=[8, 16, 32, 64, 100, 300])
sq = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
run(ssd300, sq, (300, 300), "ssd300")
run(ssd300, [(38, 63), (19, 32), (10, 16), (5, 8), (3, 6), (1, 4)], (300, 500), "wide")
plain = DefaultBoxGenerator([[2], [2, 3], [3]], clip=False)
run(plain, [(7, 5), (4, 3), (1, 2)], (70, 50), "plain")
print(plain.scales)
)PY";
  const auto result = ostrov::test::run_python(dir, script);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);

  ops::DefaultBoxGenerator ssd300(ops::DefaultBoxOptions::ssd300());
  const auto grid = ssd300.grid_default_boxes(ops::ssd300_grid_sizes(), {300, 300});
  const auto ref_grid = read_f32(dir / "ssd300_grid.bin");
  REQUIRE(ref_grid.sizes() == grid.sizes());
  CHECK(max_abs_diff(grid, ref_grid) <= 1e-6);
  const auto ref_xyxy = read_f32(dir / "ssd300_xyxy.bin");
  const auto xyxy = ssd300.forward(ops::ssd300_grid_sizes(), {300, 300});
  REQUIRE(ref_xyxy.sizes() == xyxy.sizes());
  // Pixels up to ~300: 1e-6 relative to the image side.
  CHECK(max_abs_diff(xyxy, ref_xyxy) <= 1e-6 * 300);
  INFO("SSD300 max |diff| normalised " << max_abs_diff(grid, ref_grid) << ", pixels "
                                       << max_abs_diff(xyxy, ref_xyxy));

  const std::vector<ops::GridSize> wide_grids = {{38, 63}, {19, 32}, {10, 16},
                                                 {5, 8},   {3, 6},   {1, 4}};
  const auto wide = ssd300.grid_default_boxes(wide_grids, {300, 500});
  const auto ref_wide = read_f32(dir / "wide_grid.bin");
  REQUIRE(ref_wide.sizes() == wide.sizes());
  CHECK(max_abs_diff(wide, ref_wide) <= 1e-6);
  CHECK(max_abs_diff(ssd300.forward(wide_grids, {300, 500}), read_f32(dir / "wide_xyxy.bin")) <=
        1e-6 * 500);
  // Cell (0, 1) of the 38x63 map: x centre 1.5 * 8 / 500 (the width), y 0.5 * 8 / 300.
  CHECK(wide[4][0].item<double>() == Approx(1.5 * 8 / 500).epsilon(1e-6));
  CHECK(wide[4][1].item<double>() == Approx(0.5 * 8 / 300).epsilon(1e-6));

  ops::DefaultBoxGenerator plain(ops::DefaultBoxOptions({{2}, {2, 3}, {3}}).clip(false));
  // Linear rule: 0.15, 0.525, 0.9, then 1.
  CHECK(plain.scales() == std::vector<double>{0.15, 0.15 + 0.75 * 1 / 2.0, 0.9, 1.0});
  const std::vector<ops::GridSize> plain_grids = {{7, 5}, {4, 3}, {1, 2}};
  const auto p = plain.grid_default_boxes(plain_grids, {70, 50});
  const auto ref_p = read_f32(dir / "plain_grid.bin");
  REQUIRE(ref_p.sizes() == p.sizes());
  CHECK(max_abs_diff(p, ref_p) <= 1e-6);
  CHECK(p.max().item<double>() > 1.0);  // no clipping: 1.0 * sqrt(3) > 1
  CHECK(max_abs_diff(plain.forward(plain_grids, {70, 50}), read_f32(dir / "plain_xyxy.bin")) <=
        1e-6 * 70);
}

TEST_CASE("DefaultBoxGenerator rejects inconsistent options", "[ops][priors]") {
  CHECK_THROWS_WITH(ops::DefaultBoxGenerator(ops::DefaultBoxOptions({{2}, {2}}).steps({8})),
                    Catch::Contains("same length"));
  CHECK_THROWS_WITH(
      ops::DefaultBoxGenerator(
          ops::DefaultBoxOptions(std::vector<std::vector<double>>{{2}}).scales({0.1, 0.2, 0.3})),
      Catch::Contains("scales"));
  CHECK_THROWS_WITH(
      ops::DefaultBoxGenerator(ops::DefaultBoxOptions(std::vector<std::vector<double>>{{-2}})),
      Catch::Contains("-2"));
  ops::DefaultBoxGenerator gen(ops::DefaultBoxOptions::ssd300());
  CHECK_THROWS_WITH(gen.grid_default_boxes({{38, 38}}, {300, 300}), Catch::Contains("got 1"));
}

TEST_CASE("PriorBox (ssd.pytorch voc) equals the formula re-derived in numpy",
          "[ops][priors][parity]") {
  const auto priors = ops::prior_boxes(ops::PriorBoxOptions::voc());
  REQUIRE(priors.sizes() == at::IntArrayRef({8732, 4}));
  CHECK(priors.min().item<double>() >= 0.0);
  CHECK(priors.max().item<double>() <= 1.0);
  // Hand-checked: box 0 = (0.5/37.5, 0.5/37.5, 30/300, 30/300); box 1 side sqrt(0.1 * 0.2);
  // the last box (1x1 map, ar 2 swapped): 0.88 / sqrt(2) = 0.6223 wide, 0.88 * sqrt(2) -> 1.
  CHECK(priors[0][0].item<double>() == Approx(1.0 / 75).epsilon(1e-6));
  CHECK(priors[0][2].item<double>() == Approx(0.1).epsilon(1e-6));
  CHECK(priors[1][2].item<double>() == Approx(std::sqrt(0.02)).epsilon(1e-6));
  CHECK(priors[8731][2].item<double>() == Approx(0.88 / std::sqrt(2.0)).epsilon(1e-6));
  CHECK(priors[8731][3].item<double>() == 1.0);

  TempDir dir;
  // ssd.pytorch's PriorBox.forward(), vectorised: for each map k (f x f cells, row i, col j,
  // row-major), f_k = min_dim / step_k, cx = (j + .5) / f_k, cy = (i + .5) / f_k,
  // s = min_size_k / min_dim, s' = sqrt(s * max_size_k / min_dim); per cell the (w, h) list
  // (s, s), (s', s'), then for each ar a: (s sqrt a, s / sqrt a), (s / sqrt a, s sqrt a);
  // float32, then clip to [0, 1].
  const std::string script = "d = \"" + dir.path().string() + "\"\n" + R"PY(
import numpy as np
def prior_box(fm, min_dim, steps, min_sizes, max_sizes, ars, clip=True):
    out = []
    for k, f in enumerate(fm):
        f_k = min_dim / steps[k]
        i, j = np.meshgrid(np.arange(f), np.arange(f), indexing="ij")
        centres = np.stack([(j.ravel() + 0.5) / f_k, (i.ravel() + 0.5) / f_k], 1)
        s = min_sizes[k] / min_dim
        sp = np.sqrt(s * (max_sizes[k] / min_dim))
        wh = [(s, s), (sp, sp)]
        for a in ars[k]:
            wh += [(s * np.sqrt(a), s / np.sqrt(a)), (s / np.sqrt(a), s * np.sqrt(a))]
        wh = np.array(wh)
        out.append(np.concatenate([np.repeat(centres, len(wh), 0), np.tile(wh, (f * f, 1))], 1))
    out = np.concatenate(out).astype(np.float32)
    return np.clip(out, 0, 1) if clip else out
prior_box([38, 19, 10, 5, 3, 1], 300, [8, 16, 32, 64, 100, 300], [30, 60, 111, 162, 213, 264],
          [60, 111, 162, 213, 264, 315], [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
          ).astype("<f4").tofile(f"{d}/voc.bin")
prior_box([6, 3], 96, [16, 32], [20, 50], [50, 90], [[3], []], clip=False).astype("<f4").tofile(f"{d}/small.bin")
)PY";
  const auto result = ostrov::test::run_python(dir, script);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const auto ref = read_f32(dir / "voc.bin");
  REQUIRE(ref.sizes() == priors.sizes());
  CHECK(max_abs_diff(priors, ref) <= 1e-6);

  const auto small = ops::prior_boxes(
      ops::PriorBoxOptions({6, 3}, 96, {16, 32}, {20, 50}, {50, 90}, {{3}, {}}).clip(false));
  const auto ref_small = read_f32(dir / "small.bin");
  REQUIRE(ref_small.sizes() == small.sizes());
  CHECK(max_abs_diff(small, ref_small) <= 1e-6);

  CHECK_THROWS_WITH(ops::prior_boxes(ops::PriorBoxOptions({38}, 300, {8, 16}, {30}, {60}, {{2}})),
                    Catch::Contains("one entry per feature map"));
}
