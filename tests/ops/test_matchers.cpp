#include "catch.h"

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "ostrov/ops/matchers.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

// Boxes given as x-intervals [x1, x2] all spanning y in [0, 10]: IoU is then the interval IoU
// (intersection length / union length), easy to work out by hand.
at::Tensor strips(const std::vector<std::array<double, 2>>& xs) {
  std::vector<double> flat;
  for (const auto& x : xs) flat.insert(flat.end(), {x[0], 0.0, x[1], 10.0});
  return at::tensor(flat, at::kFloat).reshape({static_cast<int64_t>(xs.size()), 4});
}

std::vector<int64_t> to_vector(const at::Tensor& t) {
  const auto c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

at::Tensor read_bin(const std::string& path, at::ScalarType dtype, std::vector<int64_t> shape) {
  const std::string bytes = ostrov::test::read_bytes(path);
  const auto n = static_cast<int64_t>(bytes.size() / at::elementSize(dtype));
  return at::from_blob(const_cast<char*>(bytes.data()), {n}, dtype).clone().reshape(shape);
}

}  // namespace

TEST_CASE("threshold and Hungarian matching differ where two ground truths want one prior",
          "[ops][matchers]") {
  // A = [0,10], B = [1,11]; priors p0 = [0,10], p1 = [8,18], p2 = [0,9].
  // IoU:      p0             p1               p2
  //   A   10/10 = 1      2/18 = .111      9/10 = .9
  //   B    9/11 = .818   3/17 = .176      8/11 = .727
  const auto gt = strips({{0, 10}, {1, 11}});
  const auto priors = strips({{0, 10}, {8, 18}, {0, 9}});

  // SSD threshold matching: p0 -> A (1 >= .5), p1 -> none (.176 < .5), p2 -> A (.9); then
  // A forces its best prior p0, and B forces its best prior p0 too: the later (B) wins, so
  // p0 = B, p2 = A. (A still has p2 here.)
  CHECK(to_vector(ops::threshold_match(gt, priors)) == std::vector<int64_t>{1, -1, 0});

  // Hungarian on 1 - IoU: A->p0 + B->p2 = 0 + .273 = .273 beats A->p2 + B->p0 = .1 + .182 =
  // .282 and A->p0 + B->p1 = .824 (and the rest): p0 = A, p2 = B.
  CHECK(to_vector(ops::hungarian_match(gt, priors)) == std::vector<int64_t>{0, -1, 1});
  const auto cost = ops::hungarian_cost(gt, priors);
  CHECK(cost.scalar_type() == at::kDouble);
  CHECK(cost[0][1].item<double>() == Approx(1 - 2.0 / 18));
  CHECK(cost[1][2].item<double>() == Approx(1 - 8.0 / 11));

  // Without p2, SSD leaves A with no prior at all (p0 -> B, p1 below threshold), while the
  // Hungarian matcher gives each ground truth one: A->p0 + B->p1 = .824 < A->p1 + B->p0 = 1.07.
  const auto two = strips({{0, 10}, {8, 18}});
  CHECK(to_vector(ops::threshold_match(gt, two)) == std::vector<int64_t>{1, -1});
  CHECK(to_vector(ops::hungarian_match(gt, two)) == std::vector<int64_t>{0, 1});
}

TEST_CASE("Hungarian matching: threshold positives, confidence and encoded-L1 terms",
          "[ops][matchers]") {
  // One ground truth A = [0,10]; p0 = [0,10] (IoU 1), p1 = [0,9] (.9), p2 = [5,15] (5/15).
  const auto gt = strips({{0, 10}});
  const auto priors = strips({{0, 10}, {0, 9}, {5, 15}});
  CHECK(to_vector(ops::hungarian_match(gt, priors)) == std::vector<int64_t>{0, -1, -1});
  auto with_positives = ops::HungarianMatcherOptions().add_threshold_positives(true);
  CHECK(to_vector(ops::hungarian_match(gt, priors, with_positives)) ==
        std::vector<int64_t>{0, 0, -1});
  CHECK(to_vector(ops::hungarian_match(gt, priors, with_positives.threshold(0.3))) ==
        std::vector<int64_t>{0, 0, 0});

  // Objectness [P]: p0 = [0,10] (IoU 1), p1 = [1,11] (IoU 9/11 = .818).
  const auto q = strips({{0, 10}, {1, 11}});
  const auto conf = at::tensor({0.1, 0.9}, at::kDouble);
  // cost = 1 - IoU - conf: p0 = 0 - .1 = -.1, p1 = .182 - .9 = -.718 -> p1.
  CHECK(to_vector(ops::hungarian_match(gt, q, {}, conf)) == std::vector<int64_t>{-1, 0});
  CHECK(ops::hungarian_cost(gt, q, {}, conf)[0][1].item<double>() == Approx(2.0 / 11 - 0.9));
  // alpha = 10: p0 = -.1, p1 = 1.82 - .9 = .92 -> p0. Without confidence: p0.
  CHECK(to_vector(ops::hungarian_match(gt, q, ops::HungarianMatcherOptions().location_weight(10),
                                       conf)) == std::vector<int64_t>{0, -1});
  CHECK(to_vector(ops::hungarian_match(gt, q)) == std::vector<int64_t>{0, -1});
  // beta = 0 switches the confidence off.
  CHECK(to_vector(ops::hungarian_match(gt, q, ops::HungarianMatcherOptions().confidence_weight(0),
                                       conf)) == std::vector<int64_t>{0, -1});

  // Class scores [P,C] with the ground truth's label: scores p0 = (.8,.1,.1), p1 = (.05,.05,.9).
  const auto scores = at::tensor({0.8, 0.1, 0.1, 0.05, 0.05, 0.9}, at::kFloat).reshape({2, 3});
  // label 2: p0 = 0 - .1, p1 = .182 - .9 -> p1; label 0: p0 = -.8, p1 = .182 - .05 -> p0.
  CHECK(to_vector(ops::hungarian_match(gt, q, {}, scores, at::tensor({2}, at::kLong))) ==
        std::vector<int64_t>{-1, 0});
  CHECK(to_vector(ops::hungarian_match(gt, q, {}, scores, at::tensor({0}, at::kLong))) ==
        std::vector<int64_t>{0, -1});

  // Encoded L1: p0 = [0,0,10,10] encodes A = [0,0,10,10] as 0; p1 = [0,0,20,20] as
  // dx = dy = 10 (5 - 10) / 20 = -2.5, dw = dh = 5 log(10 / 20) = -3.466: L1 = 11.93.
  const auto sq = at::tensor({0.0, 0.0, 10.0, 10.0}, at::kFloat).reshape({1, 4});
  const auto sq_priors =
      at::tensor({0.0, 0.0, 10.0, 10.0, 0.0, 0.0, 20.0, 20.0}, at::kFloat).reshape({2, 4});
  const auto l1 = ops::HungarianMatcherOptions().location_cost(ops::LocationCost::kEncodedL1);
  const auto l1_cost = ops::hungarian_cost(sq, sq_priors, l1);
  CHECK(l1_cost[0][0].item<double>() == Approx(0.0).margin(1e-12));
  CHECK(l1_cost[0][1].item<double>() == Approx(5.0 + 10 * std::log(2.0)));
  CHECK(to_vector(ops::hungarian_match(sq, sq_priors, l1)) == std::vector<int64_t>{0, -1});
  // Predicted codes: p0 predicts (1,1,1,1) -> cost 4; p1 predicts exactly A's code -> 0: p1.
  const double dw = 5 * std::log(0.5);
  const auto pred =
      at::tensor({1.0, 1.0, 1.0, 1.0, -2.5, -2.5, dw, dw}, at::kDouble).reshape({2, 4});
  CHECK(ops::hungarian_cost(sq, sq_priors, l1, {}, {}, pred)[0][0].item<double>() == Approx(4.0));
  CHECK(to_vector(ops::hungarian_match(sq, sq_priors, l1, {}, {}, pred)) ==
        std::vector<int64_t>{-1, 0});
}

TEST_CASE("Matchers: more ground truths than priors, empty inputs, errors", "[ops][matchers]") {
  // Three ground truths, two priors: every prior gets one, the worst-fitting gt none.
  const auto gt = strips({{0, 10}, {20, 30}, {40, 50}});
  const auto priors = strips({{41, 51}, {1, 11}});
  CHECK(to_vector(ops::hungarian_match(gt, priors)) == std::vector<int64_t>{2, 0});
  // No ground truth: all background.
  CHECK(to_vector(ops::hungarian_match(at::zeros({0, 4}), priors)) == std::vector<int64_t>{-1, -1});
  CHECK(to_vector(ops::threshold_match(at::zeros({0, 4}), priors)) == std::vector<int64_t>{-1, -1});
  // Matcher on a quality matrix, with the band between thresholds.
  const auto quality = at::tensor({0.9, 0.5, 0.2, 0.1, 0.6, 0.35}, at::kFloat).reshape({2, 3});
  // Columns' best: .9 (gt 0) >= .7; .6 (gt 1) in [.3,.7) -> -2; .35 (gt 1) in band -> -2.
  CHECK(to_vector(ops::match(quality, ops::MatcherOptions(0.7, 0.3))) ==
        std::vector<int64_t>{0, -2, -2});
  // Low-quality matches: gt 1's best quality .6 is at prior 1, which keeps its best gt (1).
  CHECK(to_vector(ops::match(quality, ops::MatcherOptions(0.7, 0.3).allow_low_quality_matches(
                                          true))) == std::vector<int64_t>{0, 1, -2});
  // SSD: threshold .5 -> (0, 1, -1), then gt 0 forces prior 0 and gt 1 prior 1.
  CHECK(to_vector(ops::ssd_match(quality)) == std::vector<int64_t>{0, 1, -1});

  CHECK_THROWS_WITH(ops::match(at::zeros({0, 3}), ops::MatcherOptions(0.5, 0.5)),
                    Catch::Contains("no ground-truth boxes"));
  CHECK_THROWS_WITH(ops::match(quality, ops::MatcherOptions(0.3, 0.7)),
                    Catch::Contains("low_threshold should be <= high_threshold"));
  const auto bad = strips({{0, 10}, {5, 5}});
  CHECK_THROWS_WITH(
      ops::threshold_match(bad, priors),
      Catch::Contains("ground-truth box 1 is degenerate") && Catch::Contains("[5, 0, 5, 10]"));
  CHECK_THROWS_WITH(ops::hungarian_match(priors, strips({{3, 1}})),
                    Catch::Contains("prior 0 is degenerate"));
  CHECK_THROWS_WITH(ops::hungarian_match(gt, priors, {}, at::rand({2, 4})),
                    Catch::Contains("gt_labels"));
  CHECK_THROWS_WITH(ops::hungarian_match(gt, priors, {}, at::rand({2, 4}), at::tensor({0, 1, 4})),
                    Catch::Contains("[0, 4)"));
  CHECK_THROWS_WITH(ops::hungarian_match(gt, priors, {}, at::rand({5})), Catch::Contains("[P]"));
}

TEST_CASE("threshold matching equals torchvision's SSDMatcher and Matcher, Hungarian is optimal",
          "[ops][matchers][parity]") {
  TempDir dir;
  // 12 images against torchvision's SSD300 priors (x1,y1,x2,y2 normalised): random ground
  // truths, some of them duplicated (two ground truths with the same best prior: the later
  // wins). torchvision's box_iou, SSDMatcher(0.5), Matcher(0.7, 0.3, True); scipy's optimum of
  // 1 - IoU (float64) for the Hungarian total.
  const std::string script = "d = \"" + dir.path().string() + "\"\n" + R"PY(
import json, numpy as np, torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou
from torchvision.models.detection._utils import SSDMatcher, Matcher
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
gen = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                          scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])
g = gen._grid_default_boxes([[38, 38], [19, 19], [10, 10], [5, 5], [3, 3], [1, 1]], [300, 300])
priors = torch.cat([g[:, :2] - 0.5 * g[:, 2:], g[:, :2] + 0.5 * g[:, 2:]], 1)
priors.numpy().astype("<f4").tofile(f"{d}/priors.bin")
rng = np.random.default_rng(5)
totals = []
for k in range(12):
    n = int(rng.integers(1, 16))
    xy = rng.random((n, 2)) * 0.8
    wh = 0.02 + rng.random((n, 2)) * 0.5
    gt = np.concatenate([xy, np.minimum(xy + wh, 1.0)], 1)
    if k % 3 == 0:
        gt = np.concatenate([gt, gt[:2]], 0)
    gt = torch.from_numpy(gt.astype(np.float32))
    gt.numpy().astype("<f4").tofile(f"{d}/gt{k}.bin")
    iou = box_iou(gt, priors)
    iou.numpy().astype("<f4").tofile(f"{d}/iou{k}.bin")
    SSDMatcher(0.5)(iou).numpy().astype("<i8").tofile(f"{d}/ssd{k}.bin")
    Matcher(0.7, 0.3, True)(iou).numpy().astype("<i8").tofile(f"{d}/mat{k}.bin")
    c = 1.0 - box_iou(gt.double(), priors.double()).numpy()
    r, cc = linear_sum_assignment(c)
    totals.append(float(c[r, cc].sum()))
json.dump(totals, open(f"{d}/totals.json", "w"))
)PY";
  const auto result = ostrov::test::run_python(dir, script);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const auto totals = nlohmann::json::parse(ostrov::test::read_bytes(dir / "totals.json"));
  const auto priors = read_bin(dir / "priors.bin", at::kFloat, {-1, 4});
  REQUIRE(priors.size(0) == 8732);
  int gts_without_prior = 0;
  for (int k = 0; k < 12; ++k) {
    INFO("image " << k);
    const auto gt = read_bin(dir / ("gt" + std::to_string(k) + ".bin"), at::kFloat, {-1, 4});
    const auto iou =
        read_bin(dir / ("iou" + std::to_string(k) + ".bin"), at::kFloat, {gt.size(0), -1});
    const auto ssd_ref = read_bin(dir / ("ssd" + std::to_string(k) + ".bin"), at::kLong, {-1});
    const auto mat_ref = read_bin(dir / ("mat" + std::to_string(k) + ".bin"), at::kLong, {-1});
    const auto ssd = ops::threshold_match(gt, priors);
    CHECK(ssd.scalar_type() == at::kLong);
    CHECK(at::equal(ssd, ssd_ref));
    CHECK(at::equal(ops::ssd_match(iou), ssd_ref));
    CHECK(at::equal(ops::match(iou, ops::MatcherOptions(0.7, 0.3).allow_low_quality_matches(true)),
                    mat_ref));

    // Hungarian: every ground truth exactly one prior, total = scipy's optimum.
    const auto hung = ops::hungarian_match(gt, priors);
    const auto h = to_vector(hung);
    std::vector<int64_t> matched;
    double total = 0;
    const auto cost = ops::hungarian_cost(gt, priors);
    for (int64_t p = 0; p < static_cast<int64_t>(h.size()); ++p) {
      if (h[p] < 0) continue;
      matched.push_back(h[p]);
      total += cost[h[p]][p].item<double>();
    }
    CHECK(static_cast<int64_t>(matched.size()) == gt.size(0));
    CHECK(static_cast<int64_t>(std::set<int64_t>(matched.begin(), matched.end()).size()) ==
          gt.size(0));
    CHECK(std::abs(total - totals[k].get<double>()) <= 1e-9);
    const auto ssd_v = to_vector(ssd);
    const std::set<int64_t> ssd_gts(ssd_v.begin(), ssd_v.end());
    for (int64_t i = 0; i < gt.size(0); ++i) gts_without_prior += ssd_gts.count(i) == 0;
  }
  // The duplicated ground truths lose their prior under SSD matching (not under Hungarian).
  CHECK(gts_without_prior >= 4);
}
