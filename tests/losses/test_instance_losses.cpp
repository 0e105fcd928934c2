#include "catch.h"

#include <cmath>

#include <ATen/ATen.h>

#include "losses/gradcheck.h"
#include "ostrov/losses/build.h"
#include "ostrov/losses/halo.h"
#include "ostrov/losses/unet_weights.h"
#include "ostrov/losses/watershed.h"

using namespace ostrov::losses;
using ostrov::test::gradcheck;

namespace {

// 5x9 image: object 1 in columns 0-2, background column 3, object 2 in columns 4-6,
// background columns 7-8.
at::Tensor two_objects() {
  auto inst = at::zeros({1, 5, 9}, at::kLong);
  inst.narrow(2, 0, 3).fill_(1);
  inst.narrow(2, 4, 3).fill_(2);
  return inst;
}

// Logits = log of the probabilities over maps {0 (background), 1, 2}:
//   object 1: (.1, .8, .1)   object 2: (.1, .46, .44)   background: (.8, .1, .1)
at::Tensor two_objects_logits() {
  auto probs = at::empty({1, 3, 5, 9}, at::kDouble);
  auto set = [&](int64_t c0, int64_t width, double p0, double p1, double p2) {
    probs.select(1, 0).narrow(2, c0, width).fill_(p0);
    probs.select(1, 1).narrow(2, c0, width).fill_(p1);
    probs.select(1, 2).narrow(2, c0, width).fill_(p2);
  };
  set(0, 3, 0.1, 0.8, 0.1);
  set(3, 1, 0.8, 0.1, 0.1);
  set(4, 3, 0.1, 0.46, 0.44);
  set(7, 2, 0.8, 0.1, 0.1);
  return probs.log();
}

}  // namespace

TEST_CASE("halo loss: the halo term changes the colour chosen for an object", "[losses]") {
  auto inst = two_objects();
  auto logits = two_objects_logits();
  // Object 2 alone prefers map 1 (log .46 > log .44), so without the halo term (mu = 0) both
  // objects take colour 1.
  auto plain = functional::halo_coloring(logits, inst, HaloLossOptions().margin(2).mu(0.0));
  CHECK(plain[0][2][5].item<int64_t>() == 1);
  CHECK(plain[0][2][1].item<int64_t>() == 1);
  // With mu = 1 and a halo of radius 2 reaching into object 1 (column 2, where y[1] = .8 so
  // log(1 - y[1]) = log .2) map 1 is penalised. The 5x5 disk reaches 2 columns sideways on
  // every row of the full-height object, so the halo is columns 2, 3, 7, 8 (20 pixels):
  //   map 1: mean log y = log .46 = -0.777, halo mean (5 log .2 + 15 log .9)/20 = -0.481
  //   map 2: mean log y = log .44 = -0.821, halo mean log .9 = -0.105
  // scores -1.258 < -0.926: object 2 takes colour 2 (object 1 keeps 1: log .8 >> log .1).
  HaloLossOptions options = HaloLossOptions().margin(2).mu(1.0);
  auto coloured = functional::halo_coloring(logits, inst, options);
  CHECK(coloured[0][2][5].item<int64_t>() == 2);
  CHECK(coloured[0][2][1].item<int64_t>() == 1);
  CHECK(coloured[0][2][3].item<int64_t>() == 0);
  // loss = mean over the 45 pixels of -log y[target]: 15 pixels of object 1 at .8, 15 pixels of
  // background at .8, 15 pixels of object 2 at .44.
  const double expected = (30 * -std::log(0.8) + 15 * -std::log(0.44)) / 45.0;
  CHECK(functional::halo_loss(logits, inst, options).item<double>() == Approx(expected).epsilon(1e-9));
  HaloLoss module(options);
  CHECK(module(logits, inst).item<double>() == Approx(expected).epsilon(1e-9));
  // Ignored pixels (-1) leave the loss: ignoring the background column 3 removes 5 of the 30
  // pixels at .8.
  auto partial = inst.clone();
  partial.narrow(2, 3, 1).fill_(-1);
  const double expected_partial = (25 * -std::log(0.8) + 15 * -std::log(0.44)) / 40.0;
  CHECK(functional::halo_loss(logits, partial, options).item<double>() ==
        Approx(expected_partial).epsilon(1e-9));
  // An image without objects: background only, finite.
  auto empty = at::zeros({1, 5, 9}, at::kLong);
  CHECK(std::isfinite(functional::halo_loss(logits, empty, options).item<double>()));
}

TEST_CASE("halo loss: gradcheck and bad input", "[losses][gradcheck]") {
  at::manual_seed(4);
  auto logits = at::randn({2, 3, 6, 6}, at::kDouble);
  auto inst = at::zeros({2, 6, 6}, at::kLong);
  inst[0].narrow(0, 0, 2).narrow(1, 0, 3).fill_(4);
  inst[0].narrow(0, 3, 3).narrow(1, 2, 3).fill_(9);
  inst[1].narrow(0, 1, 4).narrow(1, 1, 2).fill_(1);
  inst[1][5][5] = -1;
  HaloLossOptions options = HaloLossOptions().margin(1);
  auto r = gradcheck([&](const at::Tensor& v) { return functional::halo_loss(v, inst, options); }, logits);
  CHECK(r.report == "");
  CHECK_THROWS_WITH(functional::halo_loss(logits, inst.narrow(1, 0, 5)),
                    Catch::Contains("[2, 5, 6]") && Catch::Contains("[2, 3, 6, 6]"));
  auto nan = logits.clone();
  nan[0][1][0][0] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(functional::halo_loss(nan, inst), Catch::Contains("NaN"));
}

TEST_CASE("U-Net weight map: w_c plus the border term between two objects", "[losses]") {
  auto inst = two_objects()[0];
  // The one-pixel gap at column 3 is 1 pixel from each object: d1 + d2 = 2. Columns 7-8:
  // d1 = 1 or 2 (object 2, column 6), d2 = 5 or 6 (object 1, column 2): d1 + d2 = 6 or 8.
  // w_c: 45 pixels, 30 foreground, 15 background -> bg 45/30 = 1.5, fg 45/60 = 0.75.
  auto w = unet_weight_map(inst);
  REQUIRE(w.sizes() == at::IntArrayRef({5, 9}));
  auto term = [](double s) { return 10.0 * std::exp(-s * s / 50.0); };
  CHECK(w[2][3].item<double>() == Approx(1.5 + term(2)).epsilon(1e-5));
  CHECK(w[0][7].item<double>() == Approx(1.5 + term(6)).epsilon(1e-5));
  CHECK(w[4][8].item<double>() == Approx(1.5 + term(8)).epsilon(1e-5));
  CHECK(w[2][5].item<double>() == Approx(0.75));
  // Fixed class weights, other w0/sigma.
  auto w2 = unet_weight_map(inst, UNetWeightMapOptions().class_weights({1.0, 2.0}).w0(5).sigma(2));
  CHECK(w2[2][3].item<double>() == Approx(1.0 + 5.0 * std::exp(-4.0 / 8.0)).epsilon(1e-5));
  CHECK(w2[2][0].item<double>() == 2.0);
  // A single object has no border term; batches keep their shape.
  auto one = inst.clone().masked_fill_(inst.eq(2), 0).unsqueeze(0);
  auto w3 = unet_weight_map(one, UNetWeightMapOptions().balance_classes(false));
  CHECK(w3.sizes() == at::IntArrayRef({1, 5, 9}));
  CHECK(at::equal(w3, at::ones({1, 5, 9})));
  CHECK_THROWS_WITH(unet_weight_map(at::zeros({5, 9})), Catch::Contains("integer"));
}

TEST_CASE("U-Net 3-class target and class-balance map", "[losses]") {
  // Two touching objects filling a 5x6 image (columns 0-2 and 3-5): the contact columns 2 and 3
  // are border, the image edge is not.
  auto inst = at::zeros({5, 6}, at::kLong);
  inst.narrow(1, 0, 3).fill_(1);
  inst.narrow(1, 3, 3).fill_(2);
  auto t = unet_three_class_target(inst);
  auto row = at::tensor({1, 1, 2, 2, 1, 1}, at::kLong);
  for (int64_t y = 0; y < 5; ++y) CHECK(at::equal(t[y], row));
  // A 3x3 object in a 5x5 background: its outer ring is border, the centre cell.
  auto square = at::zeros({1, 5, 5}, at::kInt);
  square[0].narrow(0, 1, 3).narrow(1, 1, 3).fill_(7);
  auto s = unet_three_class_target(square);
  CHECK(s[0][2][2].item<int64_t>() == kUNetCell);
  CHECK(s[0][1][1].item<int64_t>() == kUNetBorder);
  CHECK(s[0][0][0].item<int64_t>() == kUNetBackground);
  CHECK(s.eq(kUNetBorder).sum().item<int64_t>() == 8);
  // class_balance_map on it: 16 background, 8 border, 1 cell of 25 pixels, 3 classes:
  // weights 25/(3*16), 25/(3*8), 25/(3*1).
  auto b = class_balance_map(s);
  CHECK(b[0][0][0].item<double>() == Approx(25.0 / 48.0));
  CHECK(b[0][1][1].item<double>() == Approx(25.0 / 24.0));
  CHECK(b[0][2][2].item<double>() == Approx(25.0 / 3.0));
}

TEST_CASE("Deep Watershed: targets, direction and energy losses", "[losses]") {
  // A 5x5 square object in a 7x7 image: distance to the outside is 1 on its ring, 2 inside,
  // 3 at the centre; the direction on the middle of the left edge points right (+x).
  auto inst = at::zeros({7, 7}, at::kLong);
  inst.narrow(0, 1, 5).narrow(1, 1, 5).fill_(3);
  auto t = watershed_targets(inst);
  REQUIRE(t.energy.sizes() == at::IntArrayRef({1, 7, 7}));
  CHECK(t.energy[0][3][3].item<int64_t>() == 3);
  CHECK(t.energy[0][1][3].item<int64_t>() == 1);
  CHECK(t.energy[0][2][3].item<int64_t>() == 2);
  CHECK(t.energy[0][0][0].item<int64_t>() == 0);
  CHECK(t.direction[0][0][3][1].item<float>() == Approx(1.0f));
  CHECK(t.direction[0][1][3][1].item<float>() == Approx(0.0f).margin(1e-6));
  CHECK(t.direction[0][1][1][3].item<float>() == Approx(1.0f));  // top edge points down (+y)
  CHECK(t.weights[0][3][3].item<float>() == Approx(1.0f / 5.0f));
  auto coarse = watershed_targets(inst, WatershedTargetOptions().num_levels(3).step(1.0));
  CHECK(coarse.energy[0][3][3].item<int64_t>() == 2);

  // Direction loss by hand: prediction (2, 0) (length ignored) against target (0, 1) on one
  // pixel and (1, 0) against (1, 0) on another: angular errors (pi/2)^2 and 0, mean over the
  // mask of the two.
  auto pred = at::zeros({1, 2, 1, 2}, at::kDouble);
  pred[0][0][0][0] = 2.0;
  pred[0][0][0][1] = 1.0;
  auto target = at::zeros({1, 2, 1, 2}, at::kDouble);
  target[0][1][0][0] = 1.0;
  target[0][0][0][1] = 1.0;
  const double half_pi2 = (M_PI / 2) * (M_PI / 2);
  CHECK(functional::direction_loss(pred, target).item<double>() == Approx(half_pi2 / 2).epsilon(1e-5));
  DirectionLoss cosine(DirectionLossOptions().angular(false));
  CHECK(cosine(pred, target).item<double>() == Approx(0.5));
  auto weights = at::tensor({3.0, 1.0}, at::kDouble).view({1, 1, 2});
  CHECK(functional::direction_loss(pred, target, {}, weights).item<double>() ==
        Approx(3 * half_pi2 / 4).epsilon(1e-5));
  // Energy loss is weighted cross-entropy.
  auto logits = at::zeros({1, 3, 1, 2}, at::kDouble);
  logits[0][2][0][0] = std::log(2.0);  // pixel 0: p = (1/4, 1/4, 1/2), level 2
  auto levels = at::tensor({2, 0}, at::kLong).view({1, 1, 2});  // pixel 1: p = 1/3 each, level 0
  EnergyLoss energy(EnergyLossOptions().class_weights({1.0, 1.0, 3.0}));
  CHECK(energy(logits, levels).item<double>() == Approx((3 * std::log(2.0) + std::log(3.0)) / 4));

  // gradcheck of both on the targets of a random field.
  at::manual_seed(5);
  auto field = at::randn({1, 2, 7, 7}, at::kDouble);
  auto w = t.weights.to(at::kDouble);
  auto r = gradcheck([&](const at::Tensor& v) {
    return functional::direction_loss(v, t.direction, {}, w);
  }, field);
  CHECK(r.report == "");
  r = gradcheck([&](const at::Tensor& v) {
    return functional::direction_loss(v, t.direction, {}, {}, DirectionLossOptions().angular(false));
  }, field);
  CHECK(r.report == "");
  auto energy_logits = at::randn({1, 4, 7, 7}, at::kDouble);
  r = gradcheck([&](const at::Tensor& v) {
    return functional::energy_loss(v, t.energy, EnergyLossOptions().class_weights({0.5, 1, 2, 3}), w);
  }, energy_logits);
  CHECK(r.report == "");
  CHECK_THROWS_WITH(functional::direction_loss(field, field.narrow(2, 0, 6)),
                    Catch::Contains("[1, 2, 6, 7]") && Catch::Contains("[1, 2, 7, 7]"));
}

TEST_CASE("weighted_cross_entropy: U-Net's w(x) from the instances, by hand and from a config",
          "[losses]") {
  // two_objects(): background columns 3 (d1 = d2 = 1), 7 (d1 = 1, d2 = 5) and 8 (d1 = 2,
  // d2 = 6) over all 5 rows; w_c = 1.5 on background and 0.75 on objects (as above).
  const auto inst = two_objects();
  const auto target = inst.ne(0).to(at::kLong);
  const auto logits = at::randn({1, 2, 5, 9}, at::kDouble).requires_grad_(true);
  auto term = [](double s) { return 10.0 * std::exp(-s * s / 50.0); };
  auto w = at::full({5, 9}, 0.75, at::kDouble);
  w.select(1, 3).fill_(1.5 + term(2));
  w.select(1, 7).fill_(1.5 + term(6));
  w.select(1, 8).fill_(1.5 + term(8));
  const auto nll = -logits.detach()[0].log_softmax(0).gather(0, target).squeeze(0);
  const double expected = ((w * nll).sum() / w.sum()).item<double>();

  WeightedCrossEntropy loss;
  const auto value = loss->forward(logits, target, inst);
  CHECK(value.item<double>() == Approx(expected).epsilon(1e-6));
  CHECK(std::abs(value.item<double>() - nll.mean().item<double>()) > 1e-3);  // w(x) matters
  value.backward();
  REQUIRE(logits.grad().defined());
  CHECK(logits.grad().abs().sum().item<double>() > 0.0);

  // class_weights multiply w(x): objects twice as heavy.
  WeightedCrossEntropy heavier(WeightedCrossEntropyOptions().class_weights({1.0, 2.0}));
  const auto w2 = w * (1.0 + target[0].to(at::kDouble));
  CHECK(heavier->forward(logits.detach(), target, inst).item<double>() ==
        Approx(((w2 * nll).sum() / w2.sum()).item<double>()).epsilon(1e-6));

  // From a config, through CompositeLoss: the term reads LossInputs::instances.
  auto built = build({{"name", "weighted_cross_entropy"},
                      {"weight_map", {{"w0", 10}, {"sigma", 5}, {"balance_classes", true}}}},
                     "run.json");
  LossInputs in;
  in.logits = logits.detach();
  in.target = target;
  CHECK_THROWS_WITH(built->forward(in), Catch::Contains("LossInputs::instances"));
  in.instances = inst;
  CHECK(built->forward(in).total.item<double>() == Approx(expected).epsilon(1e-6));
  // Other w0 and sigma reach the map: w0 = 0 leaves only w_c.
  auto flat = build({{"name", "weighted_cross_entropy"}, {"weight_map", {{"w0", 0}}}}, "run.json");
  auto wc = at::where(target[0].eq(1), at::full({5, 9}, 0.75, at::kDouble),
                      at::full({5, 9}, 1.5, at::kDouble));
  CHECK(flat->forward(in).total.item<double>() ==
        Approx(((wc * nll).sum() / wc.sum()).item<double>()).epsilon(1e-6));
  CHECK_THROWS_WITH(build({{"name", "weighted_cross_entropy"}, {"weight_map", {{"w00", 1}}}},
                          "run.json"),
                    Catch::Contains("loss.weight_map.w00"));
  CHECK_THROWS_WITH(build({{"name", "weighted_cross_entropy"}, {"weight_map", {{"sigma", 0}}}},
                          "run.json"),
                    Catch::Contains("sigma must be > 0"));
  CHECK_THROWS_WITH(loss->forward(logits, target, inst[0]), Catch::Contains("instances"));
}
