#include "catch.h"

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
                    Catch::Contains("prediction 4") && Catch::Contains("[4,4]"));
  CHECK_THROWS_WITH(cm.update(at::zeros({2}, at::kLong), at::zeros({3}, at::kLong)),
                    Catch::Contains("[2]") && Catch::Contains("[3]"));
  cm.reset();
  CHECK(cm.matrix().sum().item<int64_t>() == 0);
}

TEST_CASE("ConfusionMatrix: class accuracy, frequency-weighted IoU, binary accuracy", "[metrics]") {
  ConfusionMatrix cm(3);
  // target 0 0 1 1 2, prediction 0 1 1 1 0: rows (target) [1 1 0], [0 2 0], [1 0 0].
  cm.update(at::tensor({0, 1, 1, 1, 0}, at::kLong), at::tensor({0, 0, 1, 1, 2}, at::kLong));
  // recall per class: 1/2, 2/2, 0/1 -> mean 1/2
  auto acc = cm.accuracy_per_class();
  CHECK(acc[0] == Approx(0.5));
  CHECK(acc[1] == 1.0);
  CHECK(acc[2] == 0.0);
  CHECK(cm.mean_class_accuracy() == Approx(0.5));
  // fwIoU: frequencies 2/5, 2/5, 1/5 times IoU 1/3, 2/3, 0 = 2/15 + 4/15 = 0.4
  CHECK(cm.frequency_weighted_iou() == Approx(0.4));
  // one-vs-rest: class 1 TP 2, FN 0, FP 1, TN 2 -> 4/5; class 0 TP 1, FN 1, FP 1, TN 2 -> 3/5
  CHECK(cm.binary_accuracy(1) == Approx(0.8));
  CHECK(cm.binary_accuracy(0) == Approx(0.6));
  CHECK_THROWS_WITH(cm.binary_accuracy(3), Catch::Contains("positive_class 3"));
  // Two classes: (TP + TN) / all is the pixel accuracy.
  ConfusionMatrix binary(2);
  binary.update(at::tensor({1, 1, 0, 0, 1}, at::kLong), at::tensor({1, 0, 0, 1, 1}, at::kLong));
  CHECK(binary.binary_accuracy() == Approx(3.0 / 5.0));
  CHECK(binary.binary_accuracy() == binary.pixel_accuracy());
  // A class without target pixels is left out of the mean accuracy (NaN entry).
  ConfusionMatrix sparse(3);
  sparse.update(at::tensor({0, 2}, at::kLong), at::tensor({0, 0}, at::kLong));
  CHECK(std::isnan(sparse.accuracy_per_class()[1]));
  CHECK(sparse.mean_class_accuracy() == Approx(0.5));
  CHECK(std::isnan(ConfusionMatrix(2).frequency_weighted_iou()));
}

TEST_CASE("ConfusionMatrix: scores, merge across ranks, NaN and label errors", "[metrics]") {
  at::manual_seed(3);
  auto scores = at::randn({2, 4, 5, 6});
  auto target = at::randint(0, 4, {2, 5, 6}, at::kLong);
  target[0][0][0] = 255;
  ConfusionMatrix from_scores(4), from_labels(4);
  from_scores.update(scores, target);
  from_labels.update(scores.argmax(1), target);
  CHECK(at::equal(from_scores.matrix(), from_labels.matrix()));
  CHECK(from_scores.matrix().sum().item<int64_t>() == 59);
  // merge = one matrix over both halves (data-parallel evaluation).
  ConfusionMatrix rank0(4), rank1(4);
  rank0.update(scores[0].argmax(0), target[0]);
  rank1.update(scores[1].argmax(0), target[1]);
  rank0.merge(rank1);
  CHECK(at::equal(rank0.matrix(), from_labels.matrix()));
  CHECK_THROWS_WITH(rank0.merge(ConfusionMatrix(3)), Catch::Contains("differ"));
  // Bad input.
  auto nan = scores.clone();
  nan[1][2][3][4] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(from_scores.update(nan, target), Catch::Contains("NaN"));
  CHECK_THROWS_WITH(from_scores.update(scores, target.narrow(1, 0, 4)),
                    Catch::Contains("[2, 4, 5, 6]") && Catch::Contains("[2, 4, 6]"));
  CHECK_THROWS_WITH(from_scores.update(scores.narrow(1, 0, 3), target), Catch::Contains("expected 4"));
  auto bad = target.clone();
  bad[1][1][1] = 9;
  CHECK_THROWS_WITH(from_labels.update(at::zeros_like(bad), bad),
                    Catch::Contains("target label 9") && Catch::Contains("[0,4)"));
  CHECK_THROWS_WITH(from_labels.update(at::zeros({3}), at::zeros({3}, at::kLong)),
                    Catch::Contains("[3]"));
}

TEST_CASE("ConfusionMatrix::set_counts takes summed counts and checks them", "[metrics]") {
  ConfusionMatrix cm(2);
  cm.set_counts(at::tensor({3, 1, 0, 4}, at::kLong).view({2, 2}));
  CHECK(cm.pixel_accuracy() == Approx(7.0 / 8.0));
  CHECK_THROWS_WITH(cm.set_counts(at::zeros({3, 3}, at::kLong)), Catch::Contains("[3, 3]"));
  CHECK_THROWS_WITH(cm.set_counts(at::full({2, 2}, -1, at::kLong)), Catch::Contains("negative"));
}
