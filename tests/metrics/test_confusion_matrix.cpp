#include <catch2/catch.hpp>

#include <cmath>

#include <ATen/ATen.h>

#include "ostrov/metrics/confusion_matrix.h"

using ostrov::metrics::ConfusionMatrix;

TEST_CASE("ConfusionMatrix counts target x prediction and skips ignored pixels", "[metrics]") {
  ConfusionMatrix cm(3);
  auto target = at::tensor({0, 0, 1, 1, 2, 255}, at::kLong);
  auto pred = at::tensor({0, 1, 1, 1, 0, 2}, at::kLong);
  cm.update(pred, target);
  auto expected = at::tensor({1, 1, 0, 0, 2, 0, 1, 0, 0}, at::kLong).view({3, 3});
  CHECK(at::equal(cm.matrix(), expected));
  // IoU: c0 = 1/(2+2-1)=1/3, c1 = 2/(2+3-2)=2/3, c2 = 0/(1+0-0)=0
  auto iou = cm.iou_per_class();
  CHECK(iou[0] == Approx(1.0 / 3.0));
  CHECK(iou[1] == Approx(2.0 / 3.0));
  CHECK(iou[2] == 0.0);
  CHECK(cm.mean_iou() == Approx(1.0 / 3.0));
  CHECK(cm.pixel_accuracy() == Approx(3.0 / 5.0));
}

TEST_CASE("ConfusionMatrix accumulates, ignores absent classes in mIoU, checks ranges", "[metrics]") {
  ConfusionMatrix cm(4);
  CHECK(std::isnan(cm.pixel_accuracy()));
  auto t = at::zeros({2, 3, 3}, at::kLong);
  cm.update(t, t);
  cm.update(t, t);
  CHECK(cm.matrix()[0][0].item<int64_t>() == 36);
  CHECK(cm.mean_iou() == 1.0);  // classes 1..3 absent: NaN, left out
  CHECK(std::isnan(cm.iou_per_class()[3]));
  CHECK_THROWS_WITH(cm.update(at::full({2}, 4, at::kLong), at::zeros({2}, at::kLong)),
                    Catch::Contains("predictions in [4,4]"));
  CHECK_THROWS_WITH(cm.update(at::zeros({2}, at::kLong), at::zeros({3}, at::kLong)),
                    Catch::Contains("[2]") && Catch::Contains("[3]"));
  cm.reset();
  CHECK(cm.matrix().sum().item<int64_t>() == 0);
}
