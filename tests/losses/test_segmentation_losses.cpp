#include "catch.h"

#include <ATen/ATen.h>

#include "losses/gradcheck.h"
#include "ostrov/losses/segmentation.h"

using namespace ostrov::losses::functional;
using ostrov::test::gradcheck;

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
  CHECK_THROWS_WITH(cross_entropy(logits, at::full({1, 1, 2}, 7, at::kLong)),
                    Catch::Contains("target label 7") && Catch::Contains("[7,7]"));
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

namespace {

// The 2x3x3 example: C = 2 classes on a 3x3 image. The class-1 logit minus the class-0 logit
// is ln 3, 0 or -ln 3, so p1 = softmax(...)[1] = sigmoid(diff) is .75, .5 or .25:
//   p1 = .75 .75 .50      target (class) = 1 1 1
//        .75 .50 .25                       1 0 0
//        .50 .25 .25                       0 0 0
at::Tensor dice_example_diff() {
  const double l3 = std::log(3.0);
  return at::tensor({l3, l3, 0.0, l3, 0.0, -l3, 0.0, -l3, -l3}, at::kDouble).view({1, 1, 3, 3});
}
at::Tensor dice_example_target() {
  return at::tensor({1, 1, 1, 1, 0, 0, 0, 0, 0}, at::kLong).view({1, 3, 3});
}

}  // namespace

TEST_CASE("soft_dice on the 2x3x3 example against hand-computed values", "[losses]") {
  auto diff = dice_example_diff();
  auto logits = at::cat({at::zeros_like(diff), diff}, 1);  // [1,2,3,3]
  auto target = dice_example_target();
  // class 1: sum y*p = .75+.75+.5+.75 = 2.75, sum y^2 = 4,
  //          sum p^2 = 3*.5625 + 3*.25 + 3*.0625 = 2.625 -> 1 - 5.5/6.625 = 1.125/6.625 = 9/53
  // class 0: p0 = 1 - p1, y0 on the 5 other pixels: sum y*p = .5+.75+.5+.75+.75 = 3.25,
  //          sum y^2 = 5, sum p^2 = 2.625 -> 1 - 6.5/7.625 = 1.125/7.625 = 9/61
  const double expected = (9.0 / 53.0 + 9.0 / 61.0) / 2.0;
  CHECK(soft_dice(logits, target, 0.0).item<double>() == Approx(expected).epsilon(1e-12));
  // Binary: one channel with the same difference, sigmoid -> the class-1 term alone.
  CHECK(soft_dice(diff, target, 0.0).item<double>() == Approx(9.0 / 53.0).epsilon(1e-12));
  // Ignoring pixel (2,2) (p1 = .25, class 0): class 0 loses y=1,p0=.75: 1 - 2*2.5/(4 + 2.0625);
  // class 1 loses p1=.25: 1 - 2*2.75/(4 + 2.5625).
  auto ignored = target.clone();
  ignored[0][2][2] = 255;
  const double c0 = 1.0 - 5.0 / 6.0625, c1 = 1.0 - 5.5 / 6.5625;
  CHECK(soft_dice(logits, ignored, 0.0).item<double>() == Approx((c0 + c1) / 2).epsilon(1e-12));
  // The module gives the same, eps included.
  ostrov::losses::SoftDice module(ostrov::losses::SoftDiceOptions().eps(0.0));
  CHECK(module(logits, target).item<double>() == Approx(expected).epsilon(1e-12));
  ostrov::losses::SoftDice with_eps(ostrov::losses::SoftDiceOptions().eps(1.0));
  // eps adds 1 to each denominator: class 1 1 - 5.5/7.625, class 0 1 - 6.5/8.625.
  CHECK(with_eps(logits, target).item<double>() ==
        Approx((1 - 5.5 / 7.625 + 1 - 6.5 / 8.625) / 2).epsilon(1e-12));
}

TEST_CASE("binary soft_dice with skip_absent, and the CrossEntropy/CEDice modules", "[losses]") {
  // No foreground in the target, none predicted (p1 < .5): the only class is absent -> 0.
  auto logits = at::full({1, 1, 2, 2}, -3.0);
  auto target = at::zeros({1, 2, 2}, at::kLong);
  CHECK(soft_dice(logits, target, 1e-6, 255, true).item<double>() == 0.0);
  CHECK(soft_dice(logits, target, 1e-6, 255, false).item<double>() == Approx(1.0).margin(1e-4));
  CHECK_THROWS_WITH(soft_dice(logits, at::full({1, 2, 2}, 2, at::kLong)),
                    Catch::Contains("target label 2") && Catch::Contains("[0,2)"));

  at::manual_seed(1);
  auto x = at::randn({2, 3, 4, 4});
  auto t = at::randint(0, 3, {2, 4, 4}, at::kLong);
  t[1][0][0] = 7;  // ignored below
  ostrov::losses::CrossEntropy ce(ostrov::losses::CrossEntropyOptions().class_weights({1, 2, 0.5}).ignore_index(7));
  auto ref = at::cross_entropy_loss(x, t, at::tensor({1.0f, 2.0f, 0.5f}), at::Reduction::Mean, 7);
  CHECK(ce(x, t).item<double>() == Approx(ref.item<double>()).epsilon(1e-6));
  ostrov::losses::CEDice both(ostrov::losses::CEDiceOptions().ce_weight(2).dice_weight(0.5).ignore_index(7));
  const double expected = 2 * cross_entropy(x, t, {}, {}, 7).item<double>() +
                          0.5 * soft_dice(x, t, 1e-6, 7).item<double>();
  CHECK(both(x, t).item<double>() == Approx(expected).epsilon(1e-6));
  auto cloned = std::dynamic_pointer_cast<ostrov::losses::CEDiceImpl>(both->clone());
  REQUIRE(cloned);
  CHECK(cloned->options.ce_weight() == 2.0);
}

TEST_CASE("segmentation losses reject bad input with the values", "[losses]") {
  auto logits = at::zeros({1, 3, 2, 2});
  auto target = at::zeros({1, 2, 3}, at::kLong);
  CHECK_THROWS_WITH(cross_entropy(logits, target),
                    Catch::Contains("[1, 3, 2, 2]") && Catch::Contains("[1, 2, 3]"));
  CHECK_THROWS_WITH(soft_dice(logits, target),
                    Catch::Contains("[1, 3, 2, 2]") && Catch::Contains("[1, 2, 3]"));
  auto nan = logits.clone();
  nan[0][1][1][1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(cross_entropy(nan, at::zeros({1, 2, 2}, at::kLong)), Catch::Contains("NaN"));
  CHECK_THROWS_WITH(soft_dice(nan, at::zeros({1, 2, 2}, at::kLong)), Catch::Contains("NaN"));
  CHECK_THROWS_WITH(cross_entropy(logits, at::full({1, 2, 2}, -3, at::kLong)),
                    Catch::Contains("target label -3"));
  CHECK_THROWS_WITH(cross_entropy(logits, at::zeros({1, 2, 2}, at::kLong), {1.0, 2.0}),
                    Catch::Contains("expected 3 class weights, got 2"));
  CHECK_THROWS_WITH(cross_entropy(logits, at::zeros({1, 2, 2}, at::kLong), {}, at::ones({1, 2})),
                    Catch::Contains("pixel_weights [1, 2]"));
}

TEST_CASE("gradcheck: cross_entropy, soft_dice and ce_dice in double precision", "[losses][gradcheck]") {
  at::manual_seed(2);
  auto x = at::randn({2, 3, 3, 3}, at::kDouble);
  auto t = at::randint(0, 3, {2, 3, 3}, at::kLong);
  t[0][1][1] = 255;
  auto w = at::rand({2, 3, 3}, at::kDouble) + 0.5;
  auto r = gradcheck([&](const at::Tensor& v) { return cross_entropy(v, t, {0.5, 1.0, 2.0}, w); }, x);
  CHECK(r.report == "");
  r = gradcheck([&](const at::Tensor& v) { return soft_dice(v, t, 1e-6, 255, false); }, x);
  CHECK(r.report == "");
  r = gradcheck([&](const at::Tensor& v) { return soft_dice(v, t, 1e-6, 255, true); }, x);
  CHECK(r.report == "");
  auto binary_t = at::randint(0, 2, {2, 3, 3}, at::kLong);
  r = gradcheck([&](const at::Tensor& v) { return soft_dice(v, binary_t); }, x.narrow(1, 0, 1));
  CHECK(r.report == "");
  ostrov::losses::CEDiceOptions o;
  o.class_weights({1.0, 3.0, 1.0});
  r = gradcheck([&](const at::Tensor& v) { return ce_dice(v, t, o, w); }, x);
  CHECK(r.report == "");
}

TEST_CASE("the test gradcheck catches a wrong gradient", "[losses][gradcheck]") {
  // d/dx sum(x.detach() * x) is x for autograd but 2x numerically: must be reported.
  auto x = at::tensor({0.5, -1.0, 2.0}, at::kDouble);
  auto r = gradcheck([](const at::Tensor& v) { return (v.detach() * v).sum(); }, x);
  CHECK_FALSE(r.ok);
  CHECK(r.report != "");
  CHECK(gradcheck([](const at::Tensor& v) { return (v * v).sum(); }, x).ok);
}
