// The two-stage detectors (models/detection/{fpn,rpn,roi_heads,rcnn_transform,faster_rcnn}.h)
// on hand-made cases: anchors, sampling, level mapping, the transform, the pyramid's top-down
// sum, the box head's post-processing, the losses' behaviour without objects, errors naming
// the image and box, torchvision's old key names. tests/parity/test_rcnn_parity.cpp compares
// the whole model with torchvision.
#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/types.h>

#include "catch.h"
#include <cmath>
#include <string>
#include <vector>

#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "ostrov/models/instance/build.h"
#include "ostrov/ops/roi_align.h"
#include "support.h"

using namespace ostrov;
using Catch::Contains;

namespace {

double max_difference(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

/// A Mask R-CNN small enough for unit tests: ResNet-18 at width 16, 16 channels per level.
models::FasterRCNNOptions tiny(int64_t classes = 3, int64_t size = 64) {
  auto o = models::FasterRCNNOptions::maskrcnn_resnet18_fpn_small(classes, size, 16);
  o.backbone(o.backbone().backbone(models::BackboneOptions("resnet18").channels(16)));
  o.representation_size(32);
  return o;
}

/// One object per box: the box's pixels.
models::RCNNTarget rect_target(int64_t h, int64_t w, std::vector<std::vector<float>> boxes,
                               std::vector<int64_t> labels) {
  models::RCNNTarget t;
  t.boxes = at::zeros({static_cast<int64_t>(boxes.size()), 4});
  t.masks = at::zeros({static_cast<int64_t>(boxes.size()), h, w}, at::kByte);
  for (size_t k = 0; k < boxes.size(); ++k) {
    const auto& b = boxes[k];
    const auto i = static_cast<int64_t>(k);
    t.boxes[i] = at::tensor(b);
    t.masks[i]
        .narrow(0, static_cast<int64_t>(b[1]), static_cast<int64_t>(b[3] - b[1]))
        .narrow(1, static_cast<int64_t>(b[0]), static_cast<int64_t>(b[2] - b[0]))
        .fill_(1);
  }
  t.labels = at::tensor(labels, at::kLong);
  return t;
}

}  // namespace

TEST_CASE("AnchorGenerator: torchvision's rounded cell anchors, shifted over each level's grid",
          "[models][detection][rcnn]") {
  models::AnchorGenerator gen(models::AnchorGeneratorOptions().sizes({{32}, {64}}).aspect_ratios(
      {{0.5, 1.0, 2.0}, {1.0}}));
  CHECK(gen.num_anchors_per_location() == std::vector<int64_t>{3, 1});
  // ratio 0.5: h = 32 sqrt(.5) = 22.63, w = 32 / sqrt(.5) = 45.25 -> halves 11.31, 22.63 -> 11, 23
  const auto cell = at::tensor({-23.f, -11.f, 23.f, 11.f, -16.f, -16.f, 16.f, 16.f, -11.f, -23.f,
                                11.f, 23.f})
                        .view({3, 4});
  CHECK(at::equal(gen.cell_anchors(0), cell));
  // A 64x64 batch: level 0 a 2x2 grid (stride 32), level 1 a 1x1 grid (stride 64).
  const auto anchors = gen({64, 64}, {{2, 2}, {1, 1}}, at::kCPU);
  REQUIRE(anchors.sizes() == (std::vector<int64_t>{2 * 2 * 3 + 1, 4}));
  // Order: row, column, then cell anchor; x shifts first within a row.
  CHECK(at::equal(anchors.narrow(0, 0, 3), cell));
  CHECK(at::equal(anchors.narrow(0, 3, 3), cell + at::tensor({32.f, 0.f, 32.f, 0.f})));
  CHECK(at::equal(anchors.narrow(0, 6, 3), cell + at::tensor({0.f, 32.f, 0.f, 32.f})));
  CHECK(at::equal(anchors[12], at::tensor({-32.f, -32.f, 32.f, 32.f})));
  CHECK_THROWS_WITH(gen({64, 64}, {{2, 2}}, at::kCPU), Contains("1 feature levels but anchors for 2"));
  CHECK_THROWS_WITH(models::AnchorGenerator(models::AnchorGeneratorOptions().sizes({{32}})),
                    Contains("1 levels of sizes but 5 of aspect ratios"));
}

TEST_CASE("balanced_positive_negative_sample: torchvision's counts, never an ignored anchor",
          "[models][detection][rcnn]") {
  // 10 positives, 100 negatives, 20 ignored; 16 per image at 0.25: 4 positives, 12 negatives.
  auto labels = at::cat({at::ones({10}), at::zeros({100}), at::full({20}, -1.0)});
  torch::manual_seed(7);
  const auto [pos, neg] = models::balanced_positive_negative_sample({labels, labels.narrow(0, 8, 122)}, 16, 0.25);
  REQUIRE(pos.size() == 2);
  CHECK(pos[0].sum().item<int64_t>() == 4);
  CHECK(neg[0].sum().item<int64_t>() == 12);
  CHECK((pos[0].to(at::kBool) & labels.ne(1)).sum().item<int64_t>() == 0);
  CHECK((neg[0].to(at::kBool) & labels.ne(0)).sum().item<int64_t>() == 0);
  // Two positives only: both, and negatives fill the rest.
  CHECK(pos[1].sum().item<int64_t>() == 2);
  CHECK(neg[1].sum().item<int64_t>() == 14);
  // The draws are torch.randperm's on the default generator: the same seed, the same samples.
  torch::manual_seed(7);
  const auto again = models::balanced_positive_negative_sample({labels}, 16, 0.25);
  CHECK(at::equal(again.first[0], pos[0]));
  CHECK(at::equal(again.second[0], neg[0]));
  torch::manual_seed(7);
  const auto positives = at::where(labels >= 1)[0];
  const auto expected = positives.index_select(0, at::randperm(10, at::kLong).narrow(0, 0, 4));
  CHECK(at::equal(at::where(pos[0])[0], std::get<0>(expected.sort())));
}

TEST_CASE("MultiScaleRoIAlign: a box's level follows its scale, as torchvision's LevelMapper",
          "[models][detection][rcnn]") {
  models::MultiScaleRoIAlign pool(models::MultiScaleRoIAlignOptions(3).sampling_ratio(2));
  // side 224 -> level 4; 112 -> 3; 56 -> 2; 20 -> 0.4 -> clamped to 2; 1000 -> 6.16 -> 5.
  const auto boxes = at::tensor({0.f, 0.f, 224.f, 224.f, 0.f, 0.f, 112.f, 112.f, 10.f, 10.f, 66.f,
                                 66.f, 0.f, 0.f, 20.f, 20.f, 0.f, 0.f, 1000.f, 1000.f})
                         .view({5, 4});
  CHECK(at::equal(pool.map_levels({boxes}, 2, 5), at::tensor({2, 1, 0, 0, 3}, at::kLong)));
  // Pooling: each box from its level at that level's scale (2^-2 ... 2^-5 of a 256x256 image).
  const std::vector<at::Tensor> features = {at::randn({1, 2, 64, 64}), at::randn({1, 2, 32, 32}),
                                            at::randn({1, 2, 16, 16}), at::randn({1, 2, 8, 8})};
  const auto some = at::tensor({8.f, 8.f, 60.f, 60.f, 0.f, 0.f, 240.f, 200.f}).view({2, 4});
  const auto out = pool(features, {some}, {{256, 256}});
  REQUIRE(out.sizes() == (std::vector<int64_t>{2, 2, 3, 3}));
  const auto rois = ops::boxes_to_rois({some});
  // 52 px -> level 2 (index 0, scale 1/4); sqrt(240*200) = 219 -> level 3 (index 1, 1/8).
  CHECK(max_difference(out[0], ops::roi_align(features[0], rois.narrow(0, 0, 1), {3, 3}, 0.25, 2)[0]) == 0.0);
  CHECK(max_difference(out[1], ops::roi_align(features[1], rois.narrow(0, 1, 1), {3, 3}, 0.125, 2)[0]) == 0.0);
}

TEST_CASE("GeneralizedRCNNTransform: sizes, padding, boxes and masks by hand, and mapping back",
          "[models][detection][rcnn]") {
  models::GeneralizedRCNNTransform t(
      models::GeneralizedRCNNTransformOptions().min_size({256}).max_size(400));
  // 240x320: min(256/240, 400/320) = 1.0667 -> 256 x floor(341.33); 300x200: min(1.28, 1.333)
  // = 1.28 -> floor(383.99) x floor(255.99) (float32(1.28) < 1.28).
  CHECK((t.resized_size({240, 320}, 256) == models::ImageSize{256, 341}));
  CHECK((t.resized_size({300, 200}, 256) == models::ImageSize{383, 255}));
  CHECK((t.resized_size({100, 1000}, 256) == models::ImageSize{40, 400}));  // max_size caps it
  // In double (later torchvision): 1.28 exactly -> 384 x 256.
  const models::GeneralizedRCNNTransform d(
      models::GeneralizedRCNNTransformOptions().min_size({256}).max_size(400).float32_scale(false));
  CHECK((d.resized_size({300, 200}, 256) == models::ImageSize{384, 256}));
  CHECK((d.resized_size({240, 320}, 256) == models::ImageSize{256, 341}));
  const auto a = at::rand({3, 240, 320}), b = at::rand({3, 300, 200});
  std::vector<models::RCNNTarget> targets = {rect_target(240, 320, {{30, 40, 120, 150}}, {1}),
                                             rect_target(300, 200, {{20, 30, 180, 250}}, {2})};
  const auto batch = t({a, b}, false, &targets);
  CHECK(batch.tensors.sizes() == (std::vector<int64_t>{2, 3, 384, 352}));  // multiples of 32
  CHECK((batch.image_sizes == std::vector<models::ImageSize>{{256, 341}, {383, 255}}));
  CHECK(batch.tensors[0].narrow(1, 256, 128).abs().max().item<float>() == 0.0f);
  CHECK(batch.tensors[0].narrow(2, 341, 11).abs().max().item<float>() == 0.0f);
  // Normalised with ImageNet's statistics: a constant image of the mean becomes 0.
  const auto grey = at::tensor({0.485f, 0.456f, 0.406f}).view({3, 1, 1}).expand({3, 64, 64}).contiguous();
  CHECK(t({grey}, false).tensors.abs().max().item<float>() < 1e-6);
  // Boxes scale by new / old per axis in float32: x by 341/320, y by 256/240.
  const float rx = 341.f / 320.f, ry = 256.f / 240.f;
  CHECK(max_difference(targets[0].boxes, at::tensor({30 * rx, 40 * ry, 120 * rx, 150 * ry}).view({1, 4})) == 0.0);
  REQUIRE(targets[0].masks.sizes() == (std::vector<int64_t>{1, 256, 341}));
  CHECK(targets[0].masks.scalar_type() == at::kByte);
  // Nearest: row r of the output reads floor(r * 240/256) of the input.
  CHECK(targets[0].masks[0][42][100].item<int>() == 0);  // floor(42 * 0.9375) = 39 < 40
  CHECK(targets[0].masks[0][43][100].item<int>() == 1);  // 40
  // postprocess: boxes back by old / new; masks pasted at the original size.
  std::vector<models::RCNNDetection> dets = {
      {targets[0].boxes.clone(), at::ones({1}), at::ones({1}, at::kLong), at::ones({1, 1, 28, 28})}};
  t.postprocess(dets, {{256, 341}}, {{240, 320}});
  CHECK(max_difference(dets[0].boxes, at::tensor({30.f, 40.f, 120.f, 150.f}).view({1, 4})) < 1e-4);
  REQUIRE(dets[0].masks.sizes() == (std::vector<int64_t>{1, 1, 240, 320}));
  CHECK(dets[0].masks[0][0][100][60].item<float>() > 0.5f);
  CHECK(dets[0].masks[0][0][10][10].item<float>() == 0.0f);
  // Training draws min_size with one number of the default generator (torch_choice).
  models::GeneralizedRCNNTransform two(models::GeneralizedRCNNTransformOptions().min_size({64, 128}).max_size(1000));
  torch::manual_seed(3);
  const auto index = static_cast<int64_t>(at::empty({1}).uniform_(0.0, 2.0).item<float>());
  torch::manual_seed(3);
  CHECK(two({at::rand({3, 32, 32})}, true).image_sizes[0][0] == (index == 0 ? 64 : 128));
  CHECK_THROWS_WITH(t({at::rand({1, 32, 32})}, false), Contains("image 0 should be a floating [3,H,W]"));
}

TEST_CASE("FeaturePyramidNetwork: lateral plus the upsampled coarser level, pool subsamples the top",
          "[models][detection][rcnn]") {
  models::FeaturePyramidNetwork fpn(models::FeaturePyramidNetworkOptions({1, 1}, 1));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : fpn->named_parameters()) p.value().zero_();
    for (int i = 0; i < 2; ++i) {
      fpn->inner_blocks[i]->named_parameters()["0.weight"].fill_(1.0);        // lateral = x
      fpn->layer_blocks[i]->named_parameters()["0.weight"][0][0][1][1] = 1.0;  // 3x3 identity
    }
  }
  const auto fine = at::arange(16, at::kFloat).view({1, 1, 4, 4});
  const auto coarse = at::tensor({100.f, 200.f, 300.f, 400.f}).view({1, 1, 2, 2});
  const auto out = fpn->forward({fine, coarse});
  REQUIRE(out.size() == 3);
  CHECK(at::equal(out[1], coarse));
  // fine + nearest 2x of coarse: pixel (1, 2) = 6 + coarse(0, 1) = 206; (3, 0) = 12 + 300.
  CHECK(out[0][0][0][1][2].item<float>() == 206.f);
  CHECK(out[0][0][0][3][0].item<float>() == 312.f);
  CHECK(out[0][0][0][0][0].item<float>() == 100.f);
  // "pool": max_pool2d(kernel 1, stride 2) = every second pixel of the top level.
  CHECK(at::equal(out[2], coarse.index({at::indexing::Slice(), at::indexing::Slice(),
                                        at::indexing::Slice(0, at::indexing::None, 2),
                                        at::indexing::Slice(0, at::indexing::None, 2)})));
  CHECK_THROWS_WITH(fpn->forward({fine}), Contains("expected 2 levels, got 1"));
}

TEST_CASE("RoIHeads post-processing by hand: softmax, per-class boxes, threshold, per-class NMS",
          "[models][detection][rcnn]") {
  models::RoIHeads heads(models::MultiScaleRoIAlign(models::MultiScaleRoIAlignOptions(7)),
                         models::TwoMLPHead(2 * 49, 8), models::FastRCNNPredictor(8, 3));
  {
    torch::NoGradGuard no_grad;
    heads->box_predictor->cls_score->weight.zero_();
    heads->box_predictor->cls_score->bias.copy_(at::tensor({0.f, 2.f, 0.f}));
    heads->box_predictor->bbox_pred->weight.zero_();
    heads->box_predictor->bbox_pred->bias.zero_();  // boxes = proposals
  }
  heads->eval();
  torch::NoGradGuard no_grad;
  // Proposals 0 and 1 overlap with IoU 361/439 = 0.82 > 0.5; proposal 2 overlaps neither.
  const auto proposals = at::tensor({0.f, 0.f, 20.f, 20.f, 1.f, 1.f, 21.f, 21.f, 30.f, 30.f, 60.f,
                                     60.f})
                             .view({3, 4});
  const std::vector<at::Tensor> features = {at::randn({1, 2, 16, 16})};
  const auto out = heads->forward(features, {proposals}, {{64, 64}});
  REQUIRE(out.detections.size() == 1);
  const auto& d = out.detections[0];
  // softmax(0, 2, 0): class 1 e^2 / (e^2 + 2) = 0.787, class 2 1 / (e^2 + 2) = 0.1065; per
  // class NMS keeps one of 0/1 and proposal 2: two detections of each class.
  const double e2 = std::exp(2.0);
  REQUIRE(d.boxes.size(0) == 4);
  CHECK(at::equal(d.labels, at::tensor({1, 1, 2, 2}, at::kLong)));
  CHECK(max_difference(d.scores, at::tensor({e2 / (e2 + 2), e2 / (e2 + 2), 1 / (e2 + 2), 1 / (e2 + 2)})) < 1e-6);
  CHECK((d.boxes == proposals[2]).all(1).sum().item<int64_t>() == 2);
  CHECK(!d.masks.defined());
  // score_thresh 0.2 drops class 2; detections_per_img 1 keeps the best.
  heads->options.score_thresh(0.2);
  CHECK(heads->forward(features, {proposals}, {{64, 64}}).detections[0].boxes.size(0) == 2);
  heads->options.detections_per_img(1);
  CHECK(heads->forward(features, {proposals}, {{64, 64}}).detections[0].boxes.size(0) == 1);
}

TEST_CASE("FasterRCNN training: five named losses, gradients reach every trainable parameter",
          "[models][detection][rcnn]") {
  torch::manual_seed(0);
  models::FasterRCNN net(tiny());
  net->train();
  const std::vector<at::Tensor> images = {at::rand({3, 64, 64}), at::rand({3, 48, 64})};
  const std::vector<models::RCNNTarget> targets = {
      rect_target(64, 64, {{4, 6, 30, 40}, {35, 10, 60, 28}}, {1, 2}),
      rect_target(48, 64, {{10, 10, 50, 40}}, {2})};
  const auto out = net->forward(images, targets);
  CHECK(out.detections.empty());
  REQUIRE(out.losses.size() == 5);
  at::Tensor total = at::zeros({});
  for (const char* name : {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                           "loss_box_reg", "loss_mask"}) {
    INFO(name);
    REQUIRE(out.losses.count(name) == 1);
    CHECK(std::isfinite(out.losses.at(name).item<double>()));
    CHECK(out.losses.at(name).item<double>() > 0.0);
    total = total + out.losses.at(name);
  }
  total.backward();
  for (const auto& p : net->named_parameters()) {
    INFO(p.key());
    if (!p.value().requires_grad()) continue;
    REQUIRE(p.value().grad().defined());
  }
  // The caller's targets are not resized.
  CHECK(targets[0].boxes[0][2].item<float>() == 30.f);
}

TEST_CASE("FasterRCNN: images without objects give finite losses, zero box and mask terms",
          "[models][detection][rcnn]") {
  torch::manual_seed(0);
  models::FasterRCNN net(tiny());
  net->train();
  models::RCNNTarget empty{at::zeros({0, 4}), at::zeros({0}, at::kLong), at::zeros({0, 64, 64}, at::kByte)};
  const auto out = net->forward({at::rand({3, 64, 64})}, {empty});
  REQUIRE(out.losses.size() == 5);
  for (const auto& [name, value] : out.losses) {
    INFO(name);
    CHECK(std::isfinite(value.item<double>()));
  }
  CHECK(out.losses.at("loss_rpn_box_reg").item<double>() == 0.0);
  CHECK(out.losses.at("loss_box_reg").item<double>() == 0.0);
  CHECK(out.losses.at("loss_mask").item<double>() == 0.0);
  CHECK(out.losses.at("loss_objectness").item<double>() > 0.0);
  CHECK(out.losses.at("loss_classifier").item<double>() > 0.0);
}

TEST_CASE("FasterRCNN: bad targets name the image and the box", "[models][detection][rcnn]") {
  models::FasterRCNN net(tiny());
  net->train();
  const auto image = at::rand({3, 64, 64});
  auto flat = rect_target(64, 64, {{4, 6, 30, 40}, {10, 10, 20, 30}}, {1, 2});
  flat.boxes[1][3] = 10.f;  // y2 == y1
  CHECK_THROWS_WITH(net->forward({image, image}, {rect_target(64, 64, {{1, 1, 9, 9}}, {1}), flat}),
                    Contains("target of image 1: box 1 (10, 10, 20, 10) has zero or negative"));
  CHECK_THROWS_WITH(net->forward({image}, {rect_target(64, 64, {{1, 1, 9, 9}}, {3})}),
                    Contains("label 3 of box 0 is outside [1, 3)"));
  auto wrong = rect_target(64, 64, {{1, 1, 9, 9}}, {1});
  wrong.masks = at::zeros({1, 32, 32}, at::kByte);
  CHECK_THROWS_WITH(net->forward({image}, {wrong}), Contains("masks must be [1,64,64]"));
  CHECK_THROWS_WITH(net->forward({image}), Contains("training mode needs targets"));
  CHECK_THROWS_WITH(net->forward({image}, {}), Contains("training mode needs targets"));
  models::FasterRCNN boxes_only(models::FasterRCNNOptions(tiny()).masks(false));
  boxes_only->eval();
  CHECK_THROWS_WITH(boxes_only->predict(image.unsqueeze(0)), Contains("no mask branch"));
}

TEST_CASE("FasterRCNN evaluation: detections at the input size, predict, clone, eval losses",
          "[models][detection][rcnn]") {
  torch::manual_seed(1);
  auto o = tiny();
  o.roi_heads(o.roi_heads().score_thresh(0.0));
  models::FasterRCNN net(o);
  net->eval();
  torch::NoGradGuard no_grad;
  const auto x = at::rand({2, 3, 64, 80});
  const auto dets = net->detect({x[0], x[1]});
  REQUIRE(dets.size() == 2);
  REQUIRE(dets[0].boxes.size(0) > 0);
  CHECK(dets[0].masks.sizes() == (std::vector<int64_t>{dets[0].boxes.size(0), 1, 64, 80}));
  CHECK(dets[0].boxes.select(1, 2).max().item<float>() <= 80.f);
  CHECK(dets[0].boxes.select(1, 3).max().item<float>() <= 64.f);
  CHECK(dets[0].labels.min().item<int64_t>() >= 1);
  const auto found = net->predict(x);
  REQUIRE(found.size() == 2);
  CHECK(found[0].masks.scalar_type() == at::kByte);
  CHECK(at::equal(found[0].masks, dets[0].masks.squeeze(1).gt(0.5).to(at::kByte)));
  CHECK(at::equal(found[1].scores, dets[1].scores));
  // One image alone (a batch of one may round differently from a batch of two).
  const auto single = net->detect({x[0]})[0];
  auto copy = std::dynamic_pointer_cast<models::FasterRCNNImpl>(net->clone());
  REQUIRE(copy != nullptr);
  copy->eval();
  const auto copied = copy->detect({x[0]})[0];
  REQUIRE(copied.boxes.sizes() == single.boxes.sizes());
  CHECK(at::equal(copied.boxes, single.boxes));
  CHECK(at::equal(copied.masks, single.masks));
  // The copy owns its parameters (data-parallel replicas train their own).
  for (auto& p : copy->parameters()) p.data().add_(1.0);
  CHECK(at::equal(net->detect({x[0]})[0].boxes, single.boxes));
  // Evaluation mode with targets: the same detections, and the validation losses.
  const auto both = net->forward({x[0]}, {rect_target(64, 80, {{4, 6, 30, 40}}, {1})});
  CHECK(both.losses.size() == 5);
  REQUIRE(both.detections[0].boxes.sizes() == single.boxes.sizes());
  CHECK(at::equal(both.detections[0].boxes, single.boxes));
}

TEST_CASE("FasterRCNN::load_torchvision: pre-0.13 key names and FrozenBatchNorm2d files load",
          "[models][detection][rcnn]") {
  models::FasterRCNN source(tiny()), target(tiny());
  io::StateDict old;
  for (const auto& item : io::module_state_dict(*source)) {
    std::string key = item.key();
    if (key.find("num_batches_tracked") != std::string::npos) continue;  // FrozenBatchNorm2d
    if (key.rfind("rpn.head.conv.0.0.", 0) == 0) key = "rpn.head.conv." + key.substr(18);
    if (key.rfind("roi_heads.mask_head.", 0) == 0) {  // "roi_heads.mask_head.2.0.weight"
      const auto rest = key.substr(20);
      key = "roi_heads.mask_head.mask_fcn" + std::to_string(std::stoi(rest.substr(0, 1)) + 1) +
            rest.substr(3);
    }
    old.insert(key, item.value());
  }
  REQUIRE(old.find("rpn.head.conv.weight") != nullptr);
  REQUIRE(old.find("roi_heads.mask_head.mask_fcn4.bias") != nullptr);
  target->load_torchvision(old, "old.pth");
  const auto a = io::module_state_dict(*source), b = io::module_state_dict(*target);
  for (const auto& item : a) {
    if (item.key().find("num_batches_tracked") != std::string::npos) continue;
    INFO(item.key());
    CHECK(at::equal(item.value(), b[item.key()]));
  }
  old.insert("roi_heads.extra.weight", at::zeros({1}));
  CHECK_THROWS_WITH(target->load_torchvision(old, "old.pth"), Contains("roi_heads.extra.weight"));
}

TEST_CASE("BackboneWithFPN: trainable layers and frozen batch norm as torchvision's",
          "[models][detection][rcnn]") {
  models::BackboneWithFPN fpn(models::BackboneWithFPNOptions(models::BackboneOptions("resnet18").channels(16))
                                  .out_channels(8)
                                  .trainable_layers(3)
                                  .frozen_batch_norm(true));
  for (const auto& p : fpn->body->named_parameters()) {
    INFO(p.key());
    const bool trainable = p.key().rfind("layer2", 0) == 0 || p.key().rfind("layer3", 0) == 0 ||
                           p.key().rfind("layer4", 0) == 0;
    const bool bn = p.key().find("bn") != std::string::npos ||
                    p.key().find("downsample.1") != std::string::npos;
    CHECK(p.value().requires_grad() == (trainable && !bn));
  }
  fpn->train();
  for (const auto& m : fpn->body->modules(false)) {
    if (m->as<torch::nn::BatchNorm2d>() != nullptr) CHECK(!m->is_training());
  }
  CHECK(fpn->fpn->is_training());
  const auto out = fpn->forward(at::rand({1, 3, 64, 64}));
  CHECK(out.keys() == std::vector<std::string>{"0", "1", "2", "3", "pool"});
  CHECK(fpn->strides() == std::vector<int64_t>{4, 8, 16, 32, 64});
  CHECK(out["pool"].sizes() == (std::vector<int64_t>{1, 8, 1, 1}));
  CHECK_THROWS_WITH(models::BackboneWithFPN(models::BackboneWithFPNOptions(models::BackboneOptions("resnet18")).trainable_layers(6)),
                    Contains("trainable_layers must be in [0, 5]"));
}

TEST_CASE("build_instance: mask_rcnn is the two-stage model, ssd_mask the one-stage one",
          "[models][detection][rcnn][registry]") {
  auto m = models::build_instance({{"name", "mask_rcnn"}, {"fpn_channels", 16}, {"representation_size", 32}},
                                  4, 96, "run.json");
  auto* net = m.as<models::FasterRCNNImpl>();
  REQUIRE(net != nullptr);
  CHECK(net->options.masks());
  CHECK(net->options.num_classes() == 4);
  CHECK(net->options.transform().min_size() == std::vector<int64_t>{96});
  CHECK(!net->options.transform().normalize());  // ostrov's data pipeline normalises
  CHECK(net->backbone->out_channels() == 16);
  CHECK(m.network->has_classes());
  auto tv = models::build_instance({{"name", "mask_rcnn"}, {"preset", "torchvision"}}, 91, 96, "run.json");
  CHECK(tv.as<models::FasterRCNNImpl>()->options.backbone().backbone().name() == "resnet50");
  CHECK(tv.as<models::FasterRCNNImpl>()->options.transform().max_size() == 1333);
  CHECK(models::build_instance({{"name", "ssd_mask"}}, 4, 64, "run.json").as<models::SSDMaskImpl>() != nullptr);
  // From ImageNet weights, as torchvision: frozen batch norm, layer2..layer4 trainable.
  test::TempDir dir;
  models::ResNet r18(models::ResNetOptions(18));
  io::save_state_dict(io::module_state_dict(*r18), dir / "r18.pth");
  auto pre = models::build_instance({{"name", "mask_rcnn"}, {"fpn_channels", 16},
                                     {"representation_size", 32},
                                     {"backbone_weights", dir / "r18.pth"}},
                                    4, 64, "run.json");
  auto* pretrained = pre.as<models::FasterRCNNImpl>();
  CHECK(pretrained->options.backbone().frozen_batch_norm());
  CHECK(pretrained->options.backbone().trainable_layers() == 3);
  const auto body = pretrained->backbone->body->named_parameters();
  CHECK(at::equal(body["conv1.weight"], r18->conv1->weight));
  CHECK(!body["conv1.weight"].requires_grad());
  CHECK(body["layer2.0.conv1.weight"].requires_grad());
  CHECK_THROWS_WITH(models::check_instance_model({{"name", "mask_rcnn"}, {"preset", "big"}}, 4, 64, "run.json"),
                    Contains("\"big\" is not a mask_rcnn preset (small, torchvision)"));
  CHECK_THROWS_WITH(models::check_instance_model({{"name", "mask_rcnn"}, {"min_size", 16}}, 4, 64, "run.json"),
                    Contains("model.min_size"));
  CHECK_THROWS_WITH(models::check_instance_model({{"name", "mask_rcnn"}, {"nms_threshold", 2}}, 4, 64, "run.json"),
                    Contains("model.nms_threshold must be in [0,1]"));
  CHECK_THROWS_WITH(models::check_instance_model({{"name", "mask_rcnn"}, {"roi_sise", 7}}, 4, 64, "run.json"),
                    Contains("model.roi_sise"));
}
