#include <catch2/catch.hpp>

#include <ATen/ATen.h>

#include "ostrov/losses/segmentation.h"

using namespace ostrov::losses::functional;

TEST_CASE("cross_entropy equals torch's weighted cross entropy with ignore_index", "[losses]") {
  at::manual_seed(0);
  auto logits = at::randn({2, 3, 4, 5}).requires_grad_();
  auto target = at::randint(0, 3, {2, 4, 5}, at::kLong);
  target[0][0][0] = 255;
  target[1][2][3] = 255;
  const std::vector<double> w = {0.2, 1.0, 3.0};
  auto ours = cross_entropy(logits, target, w, {}, 255);
  auto ref = at::nll_loss2d(at::log_softmax(logits, 1), target, at::tensor({0.2f, 1.0f, 3.0f}),
                            at::Reduction::Mean, 255);
  CHECK(ours.item<double>() == Approx(ref.item<double>()).epsilon(1e-6));
  ours.backward();
  CHECK(logits.grad().defined());
  CHECK(logits.grad().abs().sum().item<double>() > 0.0);
}

TEST_CASE("cross_entropy with a pixel weight map and all-ignored input", "[losses]") {
  auto logits = at::zeros({1, 2, 1, 2});
  logits[0][0][0][0] = 2.0;  // pixel 0 confident in class 0
  auto target = at::tensor({1, 0}, at::kLong).view({1, 1, 2});
  auto weights = at::tensor({3.0f, 1.0f}).view({1, 1, 2});
  // pixel0: -log softmax([2,0])[1] = log(1+e^2); pixel1: log 2
  const double expected = (3.0 * std::log(1.0 + std::exp(2.0)) + 1.0 * std::log(2.0)) / 4.0;
  CHECK(cross_entropy(logits, target, {}, weights).item<double>() == Approx(expected));
  auto ignored = at::full({1, 1, 2}, 255, at::kLong);
  CHECK(cross_entropy(logits, ignored).item<double>() == 0.0);
  CHECK_THROWS_WITH(cross_entropy(logits, at::full({1, 1, 2}, 7, at::kLong)), Catch::Contains("[7,7]"));
  CHECK_THROWS_WITH(cross_entropy(logits, target.view({1, 2})), Catch::Contains("[N,H,W]"));
}

TEST_CASE("soft_dice follows the lecture formula", "[losses]") {
  // Two classes, 2 pixels, logits chosen so softmax is known.
  auto logits = at::zeros({1, 2, 1, 2});
  logits[0][0][0][0] = std::log(3.0);  // pixel 0: p = [0.75, 0.25]
  auto target = at::tensor({0, 1}, at::kLong).view({1, 1, 2});  // pixel 1: p = [0.5, 0.5]
  // class 0: y=[1,0], p=[.75,.5]: 1 - 2*.75/(1 + .5625+.25) ; class 1: y=[0,1], p=[.25,.5]
  const double c0 = 1.0 - 2.0 * 0.75 / (1.0 + 0.8125);
  const double c1 = 1.0 - 2.0 * 0.5 / (1.0 + 0.0625 + 0.25);
  CHECK(soft_dice(logits, target, 0.0).item<double>() == Approx((c0 + c1) / 2.0));
  // A perfect confident prediction has loss near 0.
  auto perfect = at::zeros({1, 2, 1, 2});
  perfect[0][0][0][0] = 50.0;
  perfect[0][1][0][1] = 50.0;
  CHECK(soft_dice(perfect, target).item<double>() == Approx(0.0).margin(1e-6));
}

TEST_CASE("soft_dice skip_absent drops classes absent from target and prediction", "[losses]") {
  auto logits = at::zeros({1, 3, 1, 2});
  logits[0][0][0][0] = 20.0;
  logits[0][1][0][1] = 20.0;
  auto target = at::tensor({0, 1}, at::kLong).view({1, 1, 2});
  auto all = soft_dice(logits, target, 1e-6, 255, false).item<double>();
  auto present = soft_dice(logits, target, 1e-6, 255, true).item<double>();
  CHECK(all == Approx(1.0 / 3.0).margin(1e-4));  // class 2 contributes 1 - 0 = 1
  CHECK(present == Approx(0.0).margin(1e-4));
  auto g = at::zeros({1, 3, 1, 2}).requires_grad_();
  soft_dice(g, target, 1e-6, 255, true).backward();
  CHECK(g.grad().abs().sum().item<double>() > 0.0);
}
