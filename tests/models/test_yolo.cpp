// YOLO v1 (models/detection/yolo.h): targets on a hand-made case, decoding, a round trip from
// targets through post-processing back to the ground truth, and the network's layout.
#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include "catch.h"
#include <cmath>
#include <string>
#include <vector>

#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/losses/yolo.h"
#include "ostrov/models/detection/yolo.h"
#include "ostrov/nn/conv_bn_act.h"
#include "support.h"

using namespace ostrov;
using Catch::Contains;

namespace {

at::Tensor xyxy(std::vector<float> values) { return at::tensor(values, at::kFloat).view({-1, 4}); }
at::Tensor ints(std::vector<int64_t> values) { return at::tensor(values, at::kLong); }

/// Largest absolute difference, for messages and tolerances.
double max_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

/// The round-trip ground truth: 128x128 inputs, three object classes (labels 1..3), every box
/// inside the input, no two of one class in one image overlapping.
struct GroundTruth {
  std::vector<at::Tensor> boxes{xyxy({10, 12, 50, 40, 70, 20, 120, 90, 40, 80, 60, 120}),
                                xyxy({0, 0, 128, 128, 5, 5, 20, 30})};
  std::vector<at::Tensor> labels{ints({1, 3, 2}), ints({2, 1})};
};

/// What a perfect network outputs for `t` (grid 4, B = 2, K = 3): predictor 0 of an object cell
/// reproduces the object's box with confidence 0.95, 0.85, 0.75, ... in raster order of the
/// cells, and logits of 20 on its class; predictor 1 has confidence 1e-3 everywhere and
/// predictor 0 of an empty cell 0 (scores below the default 0.01 threshold).
models::YOLOOutput perfect_output(const models::YOLOTargets& t) {
  const int64_t n = t.has_object.size(0), s = t.has_object.size(1), b = 2, k = 3;
  const auto has = t.has_object;
  models::YOLOOutput out;
  out.boxes = at::full({n, s, s, b, 4}, 0.5f);
  out.boxes.select(3, 0).copy_(at::where(has.unsqueeze(-1), t.boxes, at::full({}, 0.5f)));
  const auto rank = has.view({n, -1}).to(at::kLong).cumsum(1).view({n, s, s}) - 1;
  out.confidence = at::full({n, s, s, b}, 1e-3f);
  out.confidence.select(3, 0).copy_(
      at::where(has, 0.95f - 0.1f * rank.to(at::kFloat), at::zeros({}, at::kFloat)));
  out.class_logits = at::one_hot(t.classes.clamp_min(0), k).to(at::kFloat) * 20.0f *
                     has.unsqueeze(-1).to(at::kFloat);
  return out;
}

/// The round trip's expected detections of image 0 and 1, by decreasing score.
const std::vector<std::vector<float>> kExpectedBoxes = {
    {10, 12, 50, 40, 70, 20, 120, 90, 40, 80, 60, 120}, {5, 5, 20, 30, 0, 0, 128, 128}};
const std::vector<std::vector<int64_t>> kExpectedLabels = {{1, 3, 2}, {1, 2}};

/// ResNet-18 at half width (layer4: 256 channels, stride 32), a 32-channel head, 3 classes.
models::YOLOOptions small_options(int64_t grid) {
  return models::YOLOOptions(3)
      .backbone(models::BackboneOptions("resnet18").channels(32))
      .image_size(128)
      .grid(grid)
      .head_channels(32);
}

/// The head's raw output [N, B*5 + K, h, w] for `x`, computed from the children directly.
at::Tensor raw_head(models::YOLO& net, const at::Tensor& x) {
  auto stages = models::as_backbone(net->backbone)->forward_features(x, {"layer4"});
  return net->head->forward(stages["layer4"]);
}

/// Checks out.boxes/confidence/class_logits against `raw` [N, B*5 + K, S, S] (B = 2, K = 2):
/// channel b*5 + j is box b's value j (x, y, sqrt w, sqrt h, confidence), through a sigmoid;
/// channels 10.. are the class logits.
void check_layout(const models::YOLOOutput& out, const at::Tensor& raw) {
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t j = 0; j < 4; ++j) {
      INFO("box " << b << " value " << j);
      CHECK(at::allclose(out.boxes.select(3, b).select(3, j), raw.select(1, b * 5 + j).sigmoid()));
    }
    INFO("box " << b << " confidence");
    CHECK(at::allclose(out.confidence.select(3, b), raw.select(1, b * 5 + 4).sigmoid()));
  }
  CHECK(at::allclose(out.class_logits.permute({0, 3, 1, 2}), raw.slice(1, 10)));
}

/// Random BatchNorm statistics, so that a save/load that drops buffers shows.
void randomise_batch_norm_statistics(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (const auto& item : module.named_buffers()) {
    if (item.key().find("running_mean") != std::string::npos) item.value().uniform_(-0.2, 0.2);
    if (item.key().find("running_var") != std::string::npos) item.value().uniform_(0.5, 1.5);
  }
}

}  // namespace

TEST_CASE("yolo_targets: cell, offsets, square-root sizes, classes, one object per cell",
          "[models][detection][yolo]") {
  // 100x100 input, grid 4: 25-pixel cells. Expected values by hand (the centre divided by 25
  // gives cell + offset; sqrt of width / 100).
  const auto t = models::yolo_targets(
      {xyxy({26, 35, 34, 45,      // centre (30,40): cell row 1, col 1, area 80
              10, 30, 50, 50,      // same centre, area 800: replaces the first
              90, 90, 110, 110}),  // centre (100,100) on the far edge: the last cell
       xyxy({0, 0, 25, 25,        // centre (12.5,12.5): cell (0,0), offsets 0.5
              40, 60, 60, 90,      // centre (50,75) on cell borders: cell row 3, col 2
              45, 70, 55, 80})},   // same centre, area 100 < 600: dropped
      {ints({3, 2, 1}), ints({1, 4, 2})}, 4, 100);
  REQUIRE(t.has_object.sizes() == at::IntArrayRef({2, 4, 4}));
  REQUIRE(t.boxes.sizes() == at::IntArrayRef({2, 4, 4, 4}));
  REQUIRE(t.classes.sizes() == at::IntArrayRef({2, 4, 4}));
  CHECK(t.has_object.scalar_type() == at::kBool);
  CHECK(t.boxes.scalar_type() == at::kFloat);
  CHECK(t.classes.scalar_type() == at::kLong);
  CHECK(t.dropped == 2);
  CHECK(t.has_object.sum().item<int64_t>() == 4);

  struct Expected {
    int64_t image, row, col;
    std::vector<double> box;
    int64_t label;
  };
  const std::vector<Expected> expected = {
      {0, 1, 1, {0.2, 0.6, std::sqrt(0.4), std::sqrt(0.2)}, 1},  // label 2, the larger object
      {0, 3, 3, {1.0, 1.0, std::sqrt(0.2), std::sqrt(0.2)}, 0},
      {1, 0, 0, {0.5, 0.5, 0.5, 0.5}, 0},
      {1, 3, 2, {0.0, 0.0, std::sqrt(0.2), std::sqrt(0.3)}, 3},  // label 4, the larger object
  };
  auto empty = ~t.has_object;
  for (const auto& e : expected) {
    INFO("image " << e.image << " cell (" << e.row << "," << e.col << ")");
    CHECK(t.has_object[e.image][e.row][e.col].item<bool>());
    CHECK(t.classes[e.image][e.row][e.col].item<int64_t>() == e.label);
    for (int64_t j = 0; j < 4; ++j) {
      CHECK(t.boxes[e.image][e.row][e.col][j].item<double>() ==
            Approx(e.box[static_cast<size_t>(j)]).margin(1e-6));
    }
  }
  // Cells without an object: class -1, box 0.
  CHECK(at::all(t.classes.masked_select(empty) == -1).item<bool>());
  CHECK(at::all(t.boxes.masked_select(empty.unsqueeze(-1).expand({2, 4, 4, 4})) == 0)
            .item<bool>());
}

TEST_CASE("yolo_targets: bad boxes and labels are errors naming the image and the box",
          "[models][detection][yolo]") {
  const auto good = xyxy({0, 0, 25, 25});
  CHECK_THROWS_WITH(
      models::yolo_targets({good, xyxy({0, 0, 25, 25, 10, 10, 10, 20})}, {ints({1}), ints({1, 2})},
                           4, 100),
      Contains("image 1, box 1") && Contains("width 0"));
  CHECK_THROWS_WITH(models::yolo_targets({xyxy({5, 30, 15, 30})}, {ints({1})}, 4, 100),
                    Contains("image 0, box 0") && Contains("height 0"));
  CHECK_THROWS_WITH(models::yolo_targets({good, good}, {ints({1}), ints({0})}, 4, 100),
                    Contains("image 1, box 0") && Contains("label 0"));
  CHECK_THROWS_WITH(models::yolo_targets({at::zeros({4})}, {ints({1})}, 4, 100),
                    Contains("[G,4]") && Contains("[4]"));
  CHECK_THROWS_WITH(models::yolo_targets({good}, {ints({1, 2})}, 4, 100), Contains("[1]"));
  CHECK_THROWS_WITH(models::yolo_targets({xyxy({100, 100, 120, 120})}, {ints({1})}, 4, 100),
                    Contains("outside"));
  CHECK_THROWS_WITH(models::yolo_targets({good}, {ints({1})}, 0, 100), Contains("grid"));
  // No image: empty targets.
  const auto none = models::yolo_targets({}, {}, 4, 100);
  CHECK(none.has_object.sizes() == at::IntArrayRef({0, 4, 4}));
}

TEST_CASE("yolo_decode_boxes: cell offsets and square-root sizes to input pixels",
          "[models][detection][yolo]") {
  // 2x2 grid, B = 1, 100-pixel input: 50-pixel cells. By hand: cell (row 1, col 0) with
  // (0.5, 0.25, 0.6, 0.4) has centre (0.5 * 50, 1.25 * 50) = (25, 62.5) and size
  // (0.36 * 100, 0.16 * 100) = (36, 16); cell (row 0, col 1) with 0.5 everywhere has centre
  // (75, 25) and size 25.
  auto b = at::full({1, 2, 2, 1, 4}, 0.5f);
  b[0][1][0][0].copy_(at::tensor({0.5f, 0.25f, 0.6f, 0.4f}));
  const auto decoded = models::yolo_decode_boxes(b, 100);
  REQUIRE(decoded.sizes() == at::IntArrayRef({1, 2, 2, 1, 4}));
  CHECK(max_difference(decoded[0][1][0][0], at::tensor({7.0, 54.5, 43.0, 70.5})) < 1e-4);
  CHECK(max_difference(decoded[0][0][1][0], at::tensor({62.5, 12.5, 87.5, 37.5})) < 1e-4);
  CHECK(max_difference(decoded[0][0][0][0], at::tensor({12.5, 12.5, 37.5, 37.5})) < 1e-4);
  CHECK_THROWS_WITH(models::yolo_decode_boxes(at::zeros({1, 2, 2, 4}), 100),
                    Contains("[N,S,S,B,4]"));
}

TEST_CASE("yolo_postprocess: a perfect prediction of the targets gives back the ground truth",
          "[models][detection][yolo]") {
  const GroundTruth gt;
  const auto t = models::yolo_targets(gt.boxes, gt.labels, 4, 128);
  REQUIRE(t.dropped == 0);
  const auto out = perfect_output(t);
  const models::SSDPostprocessOptions defaults{};

  SECTION("boxes in input pixels, labels, scores by decreasing confidence") {
    const auto detections = models::yolo_postprocess(out, 128, defaults);
    REQUIRE(detections.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
      INFO("image " << i);
      const auto& d = detections[i];
      REQUIRE(d.boxes.size(0) == static_cast<int64_t>(kExpectedLabels[i].size()));
      CHECK(max_difference(d.boxes, xyxy(kExpectedBoxes[i])) < 1e-4);
      CHECK(at::equal(d.labels, ints(kExpectedLabels[i])));
      // confidence x softmax, the softmax within 1e-8 of 1
      for (int64_t j = 0; j < d.scores.size(0); ++j) {
        const double expected = 0.95 - 0.1 * static_cast<double>(j);
        CHECK(d.scores[j].item<double>() == Approx(expected).margin(1e-6));
      }
    }
  }
  SECTION("scaled to the original sizes: x by W / 128, y by H / 128") {
    const auto detections = models::yolo_postprocess(out, 128, defaults, {{256, 64}, {128, 128}});
    REQUIRE(detections.size() == 2);
    const auto scale = at::tensor({0.5f, 2.0f, 0.5f, 2.0f});
    CHECK(max_difference(detections[0].boxes, xyxy(kExpectedBoxes[0]) * scale) < 1e-4);
    CHECK(max_difference(detections[1].boxes, xyxy(kExpectedBoxes[1])) < 1e-4);
    CHECK_THROWS_WITH(models::yolo_postprocess(out, 128, defaults, {{128, 128}}),
                      Contains("1 sizes for 2 images"));
  }
  SECTION("score_threshold and detections_per_image") {
    auto o = models::SSDPostprocessOptions().score_threshold(0.8);
    auto detections = models::yolo_postprocess(out, 128, o);
    CHECK(at::equal(detections[0].labels, ints({1, 3})));  // 0.95, 0.85 (0.75 is out)
    CHECK(at::equal(detections[1].labels, ints({1, 2})));
    o = models::SSDPostprocessOptions().detections_per_image(1);
    detections = models::yolo_postprocess(out, 128, o);
    REQUIRE(detections[0].boxes.size(0) == 1);
    REQUIRE(detections[1].boxes.size(0) == 1);
    CHECK(max_difference(detections[0].boxes, xyxy({10, 12, 50, 40})) < 1e-4);
    CHECK(max_difference(detections[1].boxes, xyxy({5, 5, 20, 30})) < 1e-4);
  }
  SECTION("a second predictor repeating a box with a lower score is suppressed (NMS)") {
    auto repeated = out;
    repeated.boxes = out.boxes.clone();
    repeated.confidence = out.confidence.clone();
    repeated.boxes[0][0][0][1].copy_(out.boxes[0][0][0][0]);
    repeated.confidence[0][0][0][1].fill_(0.5);
    const auto detections = models::yolo_postprocess(repeated, 128, defaults);
    CHECK(at::equal(detections[0].labels, ints({1, 3, 2})));
    CHECK(max_difference(detections[0].boxes, xyxy(kExpectedBoxes[0])) < 1e-4);
    // Without NMS the repeated box would be kept: a threshold of 1 keeps everything.
    const auto all = models::yolo_postprocess(
        repeated, 128, models::SSDPostprocessOptions().nms_threshold(1.0));
    CHECK(all[0].boxes.size(0) == 4);
  }
  SECTION("the loss of the perfect boxes and classes has no coordinate term") {
    const auto parts = losses::functional::yolo_loss(out.boxes, out.confidence, out.class_logits,
                                                     t.has_object, t.boxes, t.classes);
    CHECK(parts.coord.item<double>() == Approx(0.0).margin(1e-10));
    CHECK(parts.classes.item<double>() == Approx(0.0).margin(1e-10));
  }
}

TEST_CASE("YOLO: layout of the outputs, pooling to the grid, grid and input size errors",
          "[models][detection][yolo]") {
  models::YOLO net(small_options(4));
  net->eval();
  const auto x = at::randn({2, 3, 128, 128});
  const auto out = net->forward(x);
  // B = 2 boxes and K = 3 - 1 = 2 class logits per cell of the 4x4 grid (128 / 32 = 4).
  CHECK(out.boxes.sizes() == at::IntArrayRef({2, 4, 4, 2, 4}));
  CHECK(out.confidence.sizes() == at::IntArrayRef({2, 4, 4, 2}));
  CHECK(out.class_logits.sizes() == at::IntArrayRef({2, 4, 4, 2}));
  const auto raw = raw_head(net, x);
  REQUIRE(raw.sizes() == at::IntArrayRef({2, 12, 4, 4}));
  check_layout(out, raw);

  // A map larger than the grid is averaged onto it: 4x4 -> 2x2 at grid 2 ...
  models::YOLO coarse(small_options(2));
  coarse->eval();
  const auto pooled = coarse->forward(x);
  CHECK(pooled.boxes.sizes() == at::IntArrayRef({2, 2, 2, 2, 4}));
  check_layout(pooled, at::avg_pool2d(raw_head(coarse, x), {2, 2}));
  // ... and an 8x8 map from a 256x256 input onto the 4x4 grid.
  const auto large = at::randn({1, 3, 256, 256});
  const auto from_large = net->forward(large);
  CHECK(from_large.boxes.sizes() == at::IntArrayRef({1, 4, 4, 2, 4}));
  check_layout(from_large, at::avg_pool2d(raw_head(net, large), {2, 2}));

  // A grid larger than the map is an error, at construction and for a small input.
  CHECK_THROWS_WITH(models::YOLO(small_options(8)), Contains("grid 8") && Contains("4x4"));
  CHECK_THROWS_WITH(net->forward(at::randn({1, 3, 64, 64})),
                    Contains("2x2") && Contains("grid 4x4"));
  CHECK_THROWS_WITH(net->forward(at::randn({1, 1, 128, 128})), Contains("[1, 1, 128, 128]"));
  CHECK_THROWS_WITH(models::YOLO(models::YOLOOptions(1)), Contains("num_classes"));
  CHECK_THROWS_WITH(models::YOLO(small_options(4).boxes_per_cell(0)), Contains("boxes_per_cell"));
  CHECK_THROWS_WITH(models::YOLO(models::YOLOOptions(3).backbone(models::BackboneOptions("vgg16"))),
                    Contains("vgg16"));
}

TEST_CASE("YOLO: state_dict keys, gradients from the loss, save and load, postprocess, clone",
          "[models][detection][yolo]") {
  // Four classes (K = 3 object classes), as the ground truth's labels 1..3 need.
  models::YOLO net(small_options(4).num_classes(4));
  const auto state = io::module_state_dict(*net);
  REQUIRE(state.contains("backbone.conv1.weight"));
  REQUIRE(state.contains("head.2.bias"));
  CHECK(state["backbone.conv1.weight"].sizes() == at::IntArrayRef({32, 3, 7, 7}));
  CHECK(state["head.0.conv.weight"].sizes() == at::IntArrayRef({32, 256, 1, 1}));
  CHECK(state["head.1.conv.weight"].sizes() == at::IntArrayRef({32, 32, 3, 3}));
  CHECK(state["head.2.weight"].sizes() == at::IntArrayRef({13, 32, 1, 1}));  // 2 x 5 + 3
  CHECK(state["head.2.bias"].sizes() == at::IntArrayRef({13}));
  CHECK_FALSE(state.contains("head.0.conv.bias"));  // followed by batch norm
  for (size_t i = 0; i < 2; ++i) {
    const auto* block = net->head[i]->as<ostrov::nn::ConvBnActImpl>();
    REQUIRE(block != nullptr);
    CHECK(block->options.activation() == ostrov::nn::Activation::kLeakyReLU);
    CHECK(block->options.negative_slope() == 0.1);
  }

  // Gradients of the loss reach every parameter (training mode, batch of 2).
  const GroundTruth gt;
  const auto t = models::yolo_targets(gt.boxes, gt.labels, 4, 128);
  const auto x = at::randn({2, 3, 128, 128});
  auto out = net->forward(x);
  losses::functional::yolo_loss(out.boxes, out.confidence, out.class_logits, t.has_object,
                                t.boxes, t.classes)
      .total.backward();
  for (const auto& p : net->named_parameters()) {
    INFO(p.key());
    CHECK(p.value().grad().defined());
    if (p.value().grad().defined()) CHECK(p.value().grad().abs().sum().item<double>() > 0);
  }

  // Saved and loaded into another network: the same outputs.
  randomise_batch_norm_statistics(*net);
  test::TempDir dir;
  const std::string path = dir / "yolo.pt";
  io::save_state_dict(io::module_state_dict(*net), path);
  models::YOLO other(net->options);
  net->eval();
  other->eval();
  CHECK_FALSE(at::equal(other->forward(x).boxes, net->forward(x).boxes));
  io::load_state_dict_into(*other, io::load_state_dict(path));
  const auto a = net->forward(x), b = other->forward(x);
  CHECK(at::equal(a.boxes, b.boxes));
  CHECK(at::equal(a.confidence, b.confidence));
  CHECK(at::equal(a.class_logits, b.class_logits));

  // postprocess: yolo_postprocess with the model's options, boxes inside the input.
  const auto detections = net->postprocess(a);
  REQUIRE(detections.size() == 2);
  const auto direct = models::yolo_postprocess(a, 128, net->options.postprocess());
  for (size_t i = 0; i < 2; ++i) {
    CHECK(at::equal(detections[i].boxes, direct[i].boxes));
    CHECK(at::equal(detections[i].labels, direct[i].labels));
    if (detections[i].boxes.numel() > 0) {
      CHECK(detections[i].boxes.min().item<float>() >= 0.0f);
      CHECK(detections[i].boxes.max().item<float>() <= 128.0f);
    }
  }

  // A clone (a data-parallel replica) is a deep copy that runs its own backbone: zeroing the
  // original's backbone leaves the copy's outputs as they were.
  auto copy = std::dynamic_pointer_cast<models::YOLOImpl>(net->clone());
  REQUIRE(copy != nullptr);
  copy->eval();
  CHECK(at::equal(copy->forward(x).boxes, a.boxes));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : net->backbone->parameters()) p.zero_();
  }
  CHECK_FALSE(at::equal(net->forward(x).boxes, a.boxes));
  CHECK(at::equal(copy->forward(x).boxes, a.boxes));
}

TEST_CASE("YOLO on CUDA: forward, loss and post-processing equal the CPU results",
          "[models][detection][yolo][cuda]") {
  if (!torch::cuda::is_available()) return;
  const GroundTruth gt;
  const auto t = models::yolo_targets(gt.boxes, gt.labels, 4, 128);
  const auto out = perfect_output(t);
  models::YOLOOutput on_gpu{out.boxes.cuda(), out.confidence.cuda(), out.class_logits.cuda()};
  const auto cpu = models::yolo_postprocess(out, 128, {});
  const auto gpu = models::yolo_postprocess(on_gpu, 128, {});
  for (size_t i = 0; i < 2; ++i) {
    CHECK(gpu[i].boxes.is_cuda());
    CHECK(max_difference(gpu[i].boxes, cpu[i].boxes) < 1e-4);
    CHECK(at::equal(gpu[i].labels.cpu(), cpu[i].labels));
  }
  // Targets stay on the CPU; the loss moves them.
  auto noisy = on_gpu.boxes + 0.01;
  const auto loss_gpu = losses::functional::yolo_loss(noisy, on_gpu.confidence,
                                                      on_gpu.class_logits, t.has_object,
                                                      t.boxes, t.classes);
  const auto loss_cpu = losses::functional::yolo_loss(noisy.cpu(), out.confidence,
                                                      out.class_logits, t.has_object, t.boxes,
                                                      t.classes);
  CHECK(loss_gpu.total.is_cuda());
  CHECK(loss_gpu.total.item<double>() == Approx(loss_cpu.total.item<double>()).epsilon(1e-5));

  models::YOLO net(small_options(4));
  net->eval();
  const auto x = at::randn({2, 3, 128, 128});
  const auto expected = net->forward(x);
  net->to(at::kCUDA);
  const auto result = net->forward(x.cuda());
  CHECK(max_difference(result.boxes, expected.boxes) < 1e-4);
  CHECK(max_difference(result.class_logits, expected.class_logits) < 1e-3);
}
