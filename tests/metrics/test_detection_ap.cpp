#include "catch.h"

#include <cmath>
#include <vector>

#include <ATen/ATen.h>

#include "ostrov/metrics/detection_ap.h"
#include "ostrov/metrics/instance.h"

using namespace ostrov::metrics;

namespace {

at::Tensor boxes(std::vector<float> v) {
  return at::tensor(v, at::kFloat).view({-1, 4});
}

Detections dets(std::vector<float> b, std::vector<float> scores, std::vector<int64_t> labels) {
  return {boxes(std::move(b)), {}, at::tensor(scores, at::kFloat), at::tensor(labels, at::kLong)};
}

GroundTruth gts(std::vector<float> b, std::vector<int64_t> labels, std::vector<int64_t> crowd = {}) {
  GroundTruth g{boxes(std::move(b)), {}, at::tensor(labels, at::kLong), {}};
  if (!crowd.empty()) g.iscrowd = at::tensor(crowd, at::kLong);
  return g;
}

// Two images, one class-1 object each.
const std::vector<float> kA = {0, 0, 10, 10};
const std::vector<float> kB = {20, 20, 40, 30};
const std::vector<float> kFar = {100, 100, 110, 110};

std::vector<float> cat(std::initializer_list<std::vector<float>> parts) {
  std::vector<float> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

TEST_CASE("DetectionAP: perfect detections give 1 everywhere", "[metrics]") {
  DetectionAP ap;
  ap.update(dets(kA, {0.3f}, {1}), gts(kA, {1}));
  ap.update(dets(cat({kB, kA}), {0.9f, 0.8f}, {1, 2}), gts(cat({kB, kA}), {1, 2}));
  auto r = ap.compute();
  CHECK(r.map == Approx(1.0));
  CHECK(r.map50 == Approx(1.0));
  CHECK(r.map75 == 1.0);
  CHECK(r.voc07_map50 == Approx(1.0));
  CHECK(r.voc_map50 == 1.0);
  CHECK(r.classes == std::vector<int64_t>{1, 2});
}

TEST_CASE("DetectionAP: one false positive between two true positives", "[metrics]") {
  // Sorted: TP (.9), FP (.8), TP (.7); 2 ground truths. recall .5 .5 1, precision 1 .5 2/3.
  // COCO: the envelope is 1 .667 .667; recall thresholds i/100 <= .5 (51 of them) read 1, the
  //   50 above read 2/3: AP = (51 + 50*2/3)/101 = 253/303, at every IoU threshold (IoU = 1).
  // VOC07: t = 0 .. .5 (6 points) -> 1, t = .6 .. 1 (5 points) -> 2/3: (6 + 10/3)/11 = 28/33.
  // VOC all-point: .5 * 1 + .5 * 2/3 = 5/6.
  DetectionAP ap;
  ap.update(dets(cat({kA, kFar}), {0.9f, 0.8f}, {1, 1}), gts(kA, {1}));
  ap.update(dets(kB, {0.7f}, {1}), gts(kB, {1}));
  auto r = ap.compute();
  CHECK(r.map == Approx(253.0 / 303.0));
  CHECK(r.map50 == Approx(253.0 / 303.0));
  CHECK(r.voc07_map50 == Approx(28.0 / 33.0));
  CHECK(r.voc_map50 == Approx(5.0 / 6.0));
}

TEST_CASE("DetectionAP: a missed object and a class without detections", "[metrics]") {
  // Class 1: 2 objects, one found (.9): recall .5 at precision 1.
  //   COCO 51/101 (thresholds 0 .. .5), VOC07 6/11, all-point .5.
  // Class 2: one object, no detection: AP 0 and counted. Class 3: detections only: left out.
  DetectionAP ap;
  ap.update(dets(cat({kA, kFar}), {0.9f, 0.6f}, {1, 3}), gts(cat({kA, kB}), {1, 1}));
  ap.update(dets({}, {}, {}), gts(kA, {2}));
  auto r = ap.compute();
  CHECK(r.classes == std::vector<int64_t>{1, 2});
  CHECK(r.ap50_per_class[0] == Approx(51.0 / 101.0));
  CHECK(r.ap50_per_class[1] == 0.0);
  CHECK(r.map50 == Approx(51.0 / 202.0));
  CHECK(r.voc07_ap50_per_class[0] == Approx(6.0 / 11.0));
  CHECK(r.voc_ap50_per_class[0] == Approx(0.5));
  CHECK(r.voc_map50 == Approx(0.25));
}

TEST_CASE("DetectionAP: duplicates are false positives, COCO and VOC differ on the second match",
          "[metrics]") {
  // Two objects A, B; detections A (.9), A again (.8), B (.7): the duplicate is an FP for both
  // conventions, so the numbers equal the one-false-positive case: 253/303, 28/33, 5/6.
  DetectionAP dup;
  dup.update(dets(cat({kA, kA, kB}), {0.9f, 0.8f, 0.7f}, {1, 1, 1}), gts(cat({kA, kB}), {1, 1}));
  auto r = dup.compute();
  CHECK(r.map50 == Approx(253.0 / 303.0));
  CHECK(r.voc07_map50 == Approx(28.0 / 33.0));
  CHECK(r.voc_map50 == Approx(5.0 / 6.0));

  // Overlapping objects A = [0,0,10,10], C = [0,5,10,15]. d1 = A (.9); d2 = [0,2,10,12] (.8)
  // has IoU 80/120 = .667 with A and 70/130 = .538 with C.
  // COCO @.5: d1 takes A; d2 skips the matched A and takes C (.538 >= .5): AP50 = 1.
  //   @.55 and above d2 matches nothing: recall .5 .5, precision 1 .5 -> 51/101 at the 9
  //   other thresholds: AP = (1 + 9*51/101)/10.
  // VOC: d2's best overlap is A, already taken -> FP even though C is free: recall .5 .5,
  //   precision 1 .5 -> VOC07 6/11, all-point .5.
  DetectionAP overlap;
  const std::vector<float> c = {0, 5, 10, 15}, d2 = {0, 2, 10, 12};
  overlap.update(dets(cat({kA, d2}), {0.9f, 0.8f}, {1, 1}), gts(cat({kA, c}), {1, 1}));
  r = overlap.compute();
  CHECK(r.map50 == Approx(1.0));
  CHECK(r.map == Approx((1.0 + 9 * 51.0 / 101.0) / 10));
  CHECK(r.voc07_map50 == Approx(6.0 / 11.0));
  CHECK(r.voc_map50 == Approx(0.5));
}

TEST_CASE("DetectionAP: crowd regions are ignored", "[metrics]") {
  // Object A and a crowd region K = [50,50,70,70]. Detections: inside K (.99) and A (.9).
  // The first matches the crowd region (intersection / its own area = 1): ignored, and the
  // crowd is not an object to find: recall 0 -> 1 with no FP, AP 1 for all conventions
  // (VOC sees IoU 324/400 = .81 > .5 with a "difficult" box: ignored too). Counted as an FP
  // it would give precision .5 and AP .5.
  const std::vector<float> crowd = {50, 50, 70, 70}, inside = {52, 52, 70, 70};
  DetectionAP ap;
  ap.update(dets(cat({inside, kA}), {0.99f, 0.9f}, {1, 1}), gts(cat({kA, crowd}), {1, 1}, {0, 1}));
  auto r = ap.compute();
  CHECK(r.map == Approx(1.0));
  CHECK(r.voc07_map50 == Approx(1.0));
  CHECK(r.voc_map50 == Approx(1.0));
  DetectionAP no_crowd;
  no_crowd.update(dets(cat({inside, kA}), {0.99f, 0.9f}, {1, 1}), gts(kA, {1}));
  CHECK(no_crowd.compute().map == Approx(0.5));
  // Several detections may fall in one crowd region; a class with only crowd is left out.
  DetectionAP only_crowd;
  only_crowd.update(dets(cat({inside, inside}), {0.9f, 0.8f}, {2, 2}), gts(crowd, {2}, {1}));
  CHECK(std::isnan(only_crowd.compute().map));
}

TEST_CASE("DetectionAP: ties, IoU exactly .5, max_detections and numpy's 11-point grid",
          "[metrics]") {
  // Equal scores keep the input order: FP first -> precision 0 then .5 -> AP .5; TP first -> 1.
  DetectionAP fp_first, tp_first;
  fp_first.update(dets(cat({kFar, kA}), {0.5f, 0.5f}, {1, 1}), gts(kA, {1}));
  tp_first.update(dets(cat({kA, kFar}), {0.5f, 0.5f}, {1, 1}), gts(kA, {1}));
  CHECK(fp_first.compute().map50 == Approx(0.5));
  CHECK(tp_first.compute().map50 == Approx(1.0));
  // IoU exactly .5 ([0,0,10,20] vs A: 100/200): a COCO match at .5 only (AP@[.5:.95] = 1/10),
  // not a VOC match (strictly greater).
  DetectionAP half;
  half.update(dets({0, 0, 10, 20}, {0.9f}, {1}), gts(kA, {1}));
  auto r = half.compute();
  CHECK(r.map50 == Approx(1.0));
  CHECK(r.map == Approx(0.1));
  CHECK(r.voc_map50 == 0.0);
  // max_detections = 1: only the FP (.9) is kept for COCO (AP 0); VOC has no limit.
  DetectionAP one(DetectionAPOptions().max_detections(1));
  one.update(dets(cat({kFar, kA}), {0.9f, 0.8f}, {1, 1}), gts(kA, {1}));
  r = one.compute();
  CHECK(r.map == 0.0);
  CHECK(r.voc_map50 == Approx(0.5));
  // 10 objects, 3 found: recall .1 .2 .3 at precision 1. VOC07 reads t = i*0.1 as numpy's
  // arange does: 3*0.1 = 0.30000000000000004 > .3, so only t = 0, .1, .2 count: 3/11.
  // COCO's grid has 30*0.01 == 0.3: thresholds 0 .. .3 (31 of them): 31/101.
  DetectionAP ten;
  std::vector<float> gt_boxes, found;
  for (int i = 0; i < 10; ++i) {
    std::vector<float> b = {20.0f * i, 0, 20.0f * i + 10, 10};
    gt_boxes.insert(gt_boxes.end(), b.begin(), b.end());
    if (i < 3) found.insert(found.end(), b.begin(), b.end());
  }
  ten.update(dets(found, {0.9f, 0.8f, 0.7f}, {1, 1, 1}), gts(gt_boxes, std::vector<int64_t>(10, 1)));
  r = ten.compute();
  CHECK(r.voc07_map50 == Approx(3.0 / 11.0));
  CHECK(r.map50 == Approx(31.0 / 101.0));
}

TEST_CASE("DetectionAP: merge, reset and bad input", "[metrics]") {
  DetectionAP a, b, whole;
  a.update(dets(cat({kA, kFar}), {0.9f, 0.8f}, {1, 1}), gts(kA, {1}));
  b.update(dets(kB, {0.7f}, {1}), gts(kB, {1}));
  whole.update(dets(cat({kA, kFar}), {0.9f, 0.8f}, {1, 1}), gts(kA, {1}));
  whole.update(dets(kB, {0.7f}, {1}), gts(kB, {1}));
  a.merge(b);
  CHECK(a.num_images() == 2);
  CHECK(a.compute().map == whole.compute().map);
  a.reset();
  CHECK(a.num_images() == 0);
  CHECK(std::isnan(a.compute().map));

  CHECK_THROWS_WITH(a.update(dets(kA, {0.9f, 0.8f}, {1, 1}), gts(kA, {1})),
                    Catch::Contains("[1, 4]") && Catch::Contains("2 scores"));
  CHECK_THROWS_WITH(a.update(dets(kA, {std::nanf("")}, {1}), gts(kA, {1})), Catch::Contains("NaN"));
  CHECK_THROWS_WITH(a.update(dets(kA, {0.9f}, {1}), gts(kA, {1}, {0, 1})),
                    Catch::Contains("iscrowd should be [1]"));
  Detections bad_boxes = dets(kA, {0.9f}, {1});
  bad_boxes.boxes = at::zeros({1, 5});
  CHECK_THROWS_WITH(a.update(bad_boxes, gts(kA, {1})), Catch::Contains("[1, 5]"));
}

TEST_CASE("MaskAP: COCO AP on masks", "[metrics]") {
  // Ground truth: two 4x4 squares in a 10x10 image. Detections: the first square exactly (.9),
  // a 4x2 half of the second (.8): IoU 8/16 = .5 -> matched at .5 only, and an empty mask (.7)
  // that matches nothing.
  auto gt = at::zeros({2, 10, 10}, at::kByte);
  gt[0].narrow(0, 0, 4).narrow(1, 0, 4).fill_(1);
  gt[1].narrow(0, 5, 4).narrow(1, 5, 4).fill_(1);
  auto pred = at::zeros({3, 10, 10}, at::kFloat);
  pred[0].narrow(0, 0, 4).narrow(1, 0, 4).fill_(0.9f);  // > .5 -> inside
  pred[1].narrow(0, 5, 4).narrow(1, 5, 2).fill_(1.0f);
  MaskAP ap;
  ap.update({{}, pred, at::tensor({0.9f, 0.8f, 0.7f}), at::ones({3}, at::kLong)},
            {{}, gt, at::ones({2}, at::kLong), {}});
  auto r = ap.compute();
  // @.5: TP TP FP -> recall .5 1 1, precision 1 1 .667 -> envelope 1 1 .667 -> AP 1.
  // @.55+: TP FP FP -> recall .5 .5 .5, precision 1 .5 .33 -> 51/101.
  CHECK(r.map50 == Approx(1.0));
  CHECK(r.map == Approx((1.0 + 9 * 51.0 / 101.0) / 10));
  CHECK_THROWS_WITH(ap.update({{}, pred.narrow(1, 0, 9), at::tensor({0.9f, 0.8f, 0.7f}), at::ones({3}, at::kLong)},
                              {{}, gt, at::ones({2}, at::kLong), {}}),
                    Catch::Contains("[3, 9, 10]") && Catch::Contains("[2, 10, 10]"));
}
