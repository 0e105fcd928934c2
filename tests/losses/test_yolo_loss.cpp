// YOLO v1's loss (losses/yolo.h) on a case small enough to derive by hand.
#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "catch.h"
#include <cmath>

#include "ostrov/losses/yolo.h"

using namespace ostrov::losses;
using Catch::Contains;

namespace {

/// N = 2 images, S = 2, B = 2 predictors, K = 2 classes, double predictions.
///
/// Image 0 has one object, in the cell (row 0, col 1): x = y = 0.5, sqrt w = sqrt h = 0.5, i.e.
/// in input fractions the box [0.625, 0.125, 0.875, 0.375] (area 1/16), class 1. That cell's
/// predictors:
///   A = (0.75, 0.5, 0.5, 0.5): the same box moved right by a quarter cell = 1/8 of the input:
///       intersection 1/8 x 1/4 = 1/32, union 1/16 + 1/16 - 1/32 = 3/32, IoU 1/3;
///   B = (0.5, 0.5, 0.25, 0.25): a 1/16 x 1/16 box inside the object: IoU (1/256)/(1/16) = 1/16.
/// A is responsible: coord = 5 x (0.75 - 0.5)^2 = 0.3125 (B would give 5 x 2 x 0.25^2 = 0.625).
/// Every other predictor has box 0.5 everywhere. Confidences: image 0 [[0.1, 0.3], [A 0.6, B
/// 0.2]; [0.5, 0.05], [0.2, 0.4]], image 1 all 0.1. Class logits of the object cell (0, ln 3):
/// softmax (1/4, 3/4), class term (1/4)^2 + (1/4)^2 = 0.125; other cells' logits do not count.
///
/// Divided by N = 2 (rescore, A at index 0):
///   coord     0.3125 / 2                                                 = 0.15625
///   object    (0.6 - 1/3)^2 / 2                                          = 0.0355555556
///   no_object 0.5 x (0.01 + 0.09 + 0.04 + 0.25 + 0.0025 + 0.04 + 0.16 + 8 x 0.01) / 2 = 0.168125
///   classes   0.125 / 2                                                  = 0.0625
/// The same numbers came from a plain Python loop over cells and predictors (float64, no
/// vectorisation, no ostrov): /usr/bin/python3 with the case written out as nested lists.
struct Case {
  at::Tensor boxes, confidence, logits, has_object, target_boxes, target_classes;
};

Case hand_case(const at::Tensor& first, const at::Tensor& second) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  Case c;
  c.boxes = at::full({2, 2, 2, 2, 4}, 0.5, f64);
  c.boxes[0][0][1][0].copy_(first);
  c.boxes[0][0][1][1].copy_(second);
  c.confidence = at::tensor({0.1, 0.3, 0.6, 0.2, 0.5, 0.05, 0.2, 0.4,  //
                             0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1},
                            f64)
                     .view({2, 2, 2, 2});
  c.logits = at::tensor({5.0, -3.0, 0.0, std::log(3.0), 5.0, -3.0, -3.0, 5.0,  //
                         5.0, -3.0, 5.0, -3.0, -3.0, 5.0, 5.0, -3.0},
                        f64)
                 .view({2, 2, 2, 2});
  c.has_object = at::zeros({2, 2, 2}, at::kBool);
  c.has_object[0][0][1] = true;
  c.target_boxes = at::zeros({2, 2, 2, 4}, at::kFloat);  // float, as yolo_targets gives
  c.target_boxes[0][0][1].fill_(0.5);
  c.target_classes = at::full({2, 2, 2}, -1, at::kLong);
  c.target_classes[0][0][1] = 1;
  return c;
}

/// The predictors A and B of hand_case's object cell.
at::Tensor box_a() { return at::tensor({0.75, 0.5, 0.5, 0.5}, at::kDouble); }
at::Tensor box_b() { return at::tensor({0.5, 0.5, 0.25, 0.25}, at::kDouble); }

YOLOLossParts loss_of(const Case& c, const YOLOLossOptions& options = {}) {
  return functional::yolo_loss(c.boxes, c.confidence, c.logits, c.has_object, c.target_boxes,
                               c.target_classes, options);
}

void check_parts(const YOLOLossParts& parts, double coord, double object, double no_object,
                 double classes) {
  CHECK(parts.coord.item<double>() == Approx(coord).margin(1e-12));
  CHECK(parts.object.item<double>() == Approx(object).margin(1e-12));
  CHECK(parts.no_object.item<double>() == Approx(no_object).margin(1e-12));
  CHECK(parts.classes.item<double>() == Approx(classes).margin(1e-12));
  CHECK(parts.total.item<double>() ==
        Approx(coord + object + no_object + classes).margin(1e-12));
  CHECK(parts.total.dim() == 0);
}

}  // namespace

TEST_CASE("yolo_loss: each part of a hand-made case", "[losses][yolo]") {
  // See hand_case; the parts are weighted and divided by N = 2.
  check_parts(loss_of(hand_case(box_a(), box_b())), 0.15625, std::pow(0.6 - 1.0 / 3.0, 2) / 2,
              0.168125, 0.0625);
}

TEST_CASE("yolo_loss: the responsible predictor follows the predictions, the first on ties",
          "[losses][yolo]") {
  // A moved to predictor 1: the coordinate term still measures A (0.15625, not B's 0.3125),
  // while the confidences that count as responsible / not change places:
  //   object    (0.2 - 1/3)^2 / 2                                     = 0.0088888889
  //   no_object 0.5 x (0.6^2 + 0.5525 + 8 x 0.01) / 2 = 0.5 x 0.9925 / 2 = 0.248125
  check_parts(loss_of(hand_case(box_b(), box_a())), 0.15625, std::pow(0.2 - 1.0 / 3.0, 2) / 2,
              0.248125, 0.0625);
  // Two equal predictors: the first is responsible (the numbers of A at index 0).
  check_parts(loss_of(hand_case(box_a(), box_a())), 0.15625, std::pow(0.6 - 1.0 / 3.0, 2) / 2,
              0.168125, 0.0625);
}

TEST_CASE("yolo_loss: rescore false targets confidence 1, the lambdas weight their parts",
          "[losses][yolo]") {
  const auto c = hand_case(box_a(), box_b());
  // (0.6 - 1)^2 / 2 = 0.08 instead of (0.6 - 1/3)^2 / 2; the other parts are unchanged.
  check_parts(loss_of(c, YOLOLossOptions().rescore(false)), 0.15625, 0.08, 0.168125, 0.0625);
  // lambda_coord 1 and lambda_noobj 1: 0.0625 / 2 and 0.6725 / 2.
  check_parts(loss_of(c, YOLOLossOptions().lambda_coord(1.0).lambda_noobj(1.0)), 0.03125,
              std::pow(0.6 - 1.0 / 3.0, 2) / 2, 0.33625, 0.0625);
}

TEST_CASE("yolo_loss: gradients reach the responsible box, every confidence, object cells' logits",
          "[losses][yolo]") {
  auto c = hand_case(box_a(), box_b());
  c.boxes.requires_grad_(true);
  c.confidence.requires_grad_(true);
  c.logits.requires_grad_(true);
  loss_of(c).total.backward();
  const auto box_grad = c.boxes.grad();
  // d/dx of 5 (x - 0.5)^2 / 2 at x = 0.75; A's other values equal the target's.
  CHECK(box_grad[0][0][1][0][0].item<double>() == Approx(1.25).margin(1e-12));
  CHECK(box_grad[0][0][1][0].slice(0, 1).abs().sum().item<double>() == 0.0);
  // B, not responsible, gets nothing (its sqrt w, sqrt h differ from the target's), nor does any
  // predictor of an empty cell.
  CHECK(box_grad[0][0][1][1].abs().sum().item<double>() == 0.0);
  CHECK(box_grad.abs().sum().item<double>() == Approx(1.25).margin(1e-12));
  // Confidences: 2 (0.6 - 1/3) / 2 for A, 2 x 0.5 x c / 2 = c / 2 for every other predictor
  // (the rescore target is detached: no gradient reaches the boxes through it).
  auto expected = c.confidence.detach() / 2;
  expected[0][0][1][0] = 0.6 - 1.0 / 3.0;
  CHECK(at::allclose(c.confidence.grad(), expected, 0.0, 1e-12));
  // Class logits: only the object cell's; d/dz of (p0^2 + (p1 - 1)^2) / 2 at p = (1/4, 3/4) is
  // (p0 (dp0 - s), p1 (dp1 - s)) / 2 with dp = (1/2, -1/2), s = p . dp = -1/4: (3/32, -3/32).
  const auto logit_grad = c.logits.grad();
  CHECK(logit_grad[0][0][1][0].item<double>() == Approx(3.0 / 32.0).margin(1e-12));
  CHECK(logit_grad[0][0][1][1].item<double>() == Approx(-3.0 / 32.0).margin(1e-12));
  CHECK(logit_grad.abs().sum().item<double>() == Approx(6.0 / 32.0).margin(1e-12));
}

TEST_CASE("yolo_loss: float predictions, empty cells may hold anything, no object at all",
          "[losses][yolo]") {
  auto c = hand_case(box_a(), box_b());
  // Targets of empty cells are ignored even when not finite.
  c.target_boxes[1][1][1].fill_(std::nan(""));
  c.target_classes[1][0][0] = 7;
  const auto parts = functional::yolo_loss(c.boxes.to(at::kFloat), c.confidence.to(at::kFloat),
                                           c.logits.to(at::kFloat), c.has_object,
                                           c.target_boxes, c.target_classes);
  CHECK(parts.total.scalar_type() == at::kFloat);
  CHECK(parts.total.item<double>() ==
        Approx(0.15625 + std::pow(0.6 - 1.0 / 3.0, 2) / 2 + 0.168125 + 0.0625).epsilon(1e-5));
  // Without objects only the no-object term remains: 0.5 x sum c^2 / 2.
  c.has_object.zero_();
  const auto empty = loss_of(c);
  CHECK(empty.coord.item<double>() == 0.0);
  CHECK(empty.object.item<double>() == 0.0);
  CHECK(empty.classes.item<double>() == 0.0);
  CHECK(empty.no_object.item<double>() ==
        Approx(0.5 * c.confidence.square().sum().item<double>() / 2).margin(1e-12));
}

TEST_CASE("yolo_loss: mismatched shapes and bad classes are errors naming them", "[losses][yolo]") {
  const auto c = hand_case(box_a(), box_b());
  const auto call = [&](const at::Tensor& boxes, const at::Tensor& confidence,
                        const at::Tensor& logits, const at::Tensor& has_object,
                        const at::Tensor& target_boxes, const at::Tensor& target_classes) {
    return functional::yolo_loss(boxes, confidence, logits, has_object, target_boxes,
                                 target_classes);
  };
  CHECK_THROWS_WITH(call(c.boxes.select(4, 0), c.confidence, c.logits, c.has_object,
                         c.target_boxes, c.target_classes),
                    Contains("pred_boxes") && Contains("[2, 2, 2, 2]"));
  CHECK_THROWS_WITH(call(c.boxes, c.confidence.slice(3, 0, 1), c.logits, c.has_object,
                         c.target_boxes, c.target_classes),
                    Contains("pred_confidence") && Contains("[2, 2, 2, 1]"));
  CHECK_THROWS_WITH(call(c.boxes, c.confidence, c.logits.slice(1, 0, 1), c.has_object,
                         c.target_boxes, c.target_classes),
                    Contains("class_logits") && Contains("[2, 1, 2, 2]"));
  CHECK_THROWS_WITH(call(c.boxes, c.confidence, c.logits, c.has_object[0], c.target_boxes,
                         c.target_classes),
                    Contains("has_object") && Contains("[2, 2]"));
  CHECK_THROWS_WITH(call(c.boxes, c.confidence, c.logits, c.has_object.to(at::kLong),
                         c.target_boxes, c.target_classes),
                    Contains("has_object") && Contains("bool"));
  CHECK_THROWS_WITH(call(c.boxes, c.confidence, c.logits, c.has_object,
                         c.target_boxes.slice(3, 0, 3), c.target_classes),
                    Contains("target_boxes") && Contains("[2, 2, 2, 3]"));
  CHECK_THROWS_WITH(call(c.boxes, c.confidence, c.logits, c.has_object, c.target_boxes,
                         c.target_classes.select(2, 0)),
                    Contains("target_classes") && Contains("[2, 2]"));
  auto bad_class = c.target_classes.clone();
  bad_class[0][0][1] = 2;  // K = 2: classes 0 and 1
  CHECK_THROWS_WITH(call(c.boxes, c.confidence, c.logits, c.has_object, c.target_boxes,
                         bad_class),
                    Contains("label 2"));
  CHECK_THROWS_WITH(loss_of(c, YOLOLossOptions().lambda_noobj(-1.0)), Contains("lambda_noobj"));
}

TEST_CASE("yolo_loss on CUDA equals the CPU result, targets left on the CPU",
          "[losses][yolo][cuda]") {
  if (!torch::cuda::is_available()) return;
  const auto c = hand_case(box_a(), box_b());
  const auto parts = functional::yolo_loss(c.boxes.cuda(), c.confidence.cuda(), c.logits.cuda(),
                                           c.has_object, c.target_boxes, c.target_classes);
  CHECK(parts.total.is_cuda());
  CHECK(parts.coord.item<double>() == Approx(0.15625).margin(1e-12));
  CHECK(parts.object.item<double>() == Approx(std::pow(0.6 - 1.0 / 3.0, 2) / 2).margin(1e-12));
  CHECK(parts.no_object.item<double>() == Approx(0.168125).margin(1e-12));
  CHECK(parts.classes.item<double>() == Approx(0.0625).margin(1e-12));
}
