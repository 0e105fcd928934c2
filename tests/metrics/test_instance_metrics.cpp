#include "catch.h"

#include <cmath>

#include <ATen/ATen.h>

#include "ostrov/metrics/instance.h"

using namespace ostrov::metrics;

namespace {

at::Tensor labels(std::vector<int64_t> v) { return at::tensor(v, at::kLong).view({4, 4}); }

// Ground truth: two 2x2 objects.
at::Tensor gt() {
  return labels({1, 1, 0, 0,  //
                 1, 1, 0, 0,  //
                 0, 0, 2, 2,  //
                 0, 0, 2, 2});
}

}  // namespace

TEST_CASE("SBD and DiC as CVPPP defines them, on hand-made label images", "[metrics]") {
  // Object 1 loses a pixel (3 of 4: Dice 2*3/(3+4) = 6/7); object 2 found under another label
  // value (Dice 1). BD both ways = (6/7 + 1)/2 = 13/14; DiC = 2 - 2 = 0.
  auto pred = labels({1, 1, 0, 0,  //
                      1, 0, 0, 0,  //
                      0, 0, 3, 3,  //
                      0, 0, 3, 3});
  CHECK(best_dice(pred, gt()) == Approx(13.0 / 14.0));
  CHECK(symmetric_best_dice(pred, gt()) == Approx(13.0 / 14.0));
  CHECK(difference_in_count(pred, gt()) == 0);
  // A spurious one-pixel object 5: BD(pred, gt) = (6/7 + 1 + 0)/3 = 13/21, BD(gt, pred) stays
  // 13/14: SBD = 13/21 (the symmetric minimum catches over-segmentation); DiC = +1.
  auto extra = pred.clone();
  extra[0][3] = 5;
  CHECK(best_dice(extra, gt()) == Approx(13.0 / 21.0));
  CHECK(best_dice(gt(), extra) == Approx(13.0 / 14.0));
  CHECK(symmetric_best_dice(extra, gt()) == Approx(13.0 / 21.0));
  CHECK(difference_in_count(extra, gt()) == 1);
  // Both objects merged into one of 8 pixels: Dice with each 2*4/(8+4) = 2/3 -> SBD 2/3, DiC -1.
  auto merged = gt().gt(0).to(at::kLong) * 9;
  CHECK(symmetric_best_dice(merged, gt()) == Approx(2.0 / 3.0));
  CHECK(difference_in_count(merged, gt()) == -1);
  // Nothing predicted: SBD 0, DiC -2; both empty: SBD 0 (the challenge code's convention).
  auto empty = at::zeros({4, 4}, at::kLong);
  CHECK(symmetric_best_dice(empty, gt()) == 0.0);
  CHECK(difference_in_count(empty, gt()) == -2);
  CHECK(symmetric_best_dice(empty, empty) == 0.0);
}

TEST_CASE("CvpppMetrics averages over images, merges, and rejects bad input", "[metrics]") {
  auto extra = gt().clone();
  extra[0][3] = 5;  // perfect plus one spurious pixel: BD(pred,gt) = (1 + 1 + 0)/3
  auto merged = gt().gt(0).to(at::kLong);
  CvpppMetrics m;
  CHECK(std::isnan(m.sbd()));
  m.update(at::stack({gt(), merged}), at::stack({gt(), gt()}));  // SBD 1 and 2/3; DiC 0, -1
  CvpppMetrics other;
  other.update(extra, gt());  // SBD 2/3, DiC +1
  m.merge(other);
  CHECK(m.num_images() == 3);
  CHECK(m.sbd() == Approx((1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0));
  CHECK(m.abs_dic() == Approx(2.0 / 3.0));
  CHECK(m.dic() == Approx(0.0).margin(1e-12));
  m.reset();
  CHECK(m.num_images() == 0);
  CHECK_THROWS_WITH(m.update(gt(), gt().narrow(0, 0, 3)),
                    Catch::Contains("[4, 4]") && Catch::Contains("[3, 4]"));
  CHECK_THROWS_WITH(symmetric_best_dice(gt().to(at::kFloat), gt()), Catch::Contains("integer"));
}
