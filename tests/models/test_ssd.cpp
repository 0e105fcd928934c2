#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/types.h>

#include "catch.h"
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/losses/multibox.h"
#include "ostrov/models/backbones/mobilenet_v3.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/models/classifier.h"
#include "ostrov/models/detection/build.h"
#include "ostrov/models/detection/ssd.h"
#include "ostrov/models/detection/ssd_targets.h"
#include "ostrov/nn/receptive_field.h"
#include "ostrov/ops/box_coder.h"
#include "ostrov/ops/matchers.h"
#include "ostrov/ops/priors.h"
#include "support.h"

using namespace ostrov;
using Catch::Contains;

namespace {

at::Tensor boxes(std::vector<float> values) { return at::tensor(values, at::kFloat).view({-1, 4}); }

/// Parameters whose gradient is missing or all zero (each named in the test's output).
int64_t parameters_without_gradient(const torch::nn::Module& net) {
  int64_t count = 0;
  for (const auto& param : net.named_parameters()) {
    const auto& g = param.value().grad();
    if (!g.defined() || g.abs().sum().item<double>() == 0.0) {
      ++count;
      UNSCOPED_INFO("no gradient: " << param.key());
    }
  }
  return count;
}

/// Random BatchNorm statistics and affine values, so that a misplaced BN layer cannot hide
/// behind the identical defaults of every other one.
void randomise_batch_norms(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (const auto& item : module.named_buffers()) {
    if (item.key().find("running_mean") != std::string::npos) item.value().uniform_(-0.2, 0.2);
    if (item.key().find("running_var") != std::string::npos) item.value().uniform_(0.5, 1.5);
  }
  for (const auto& m : module.modules()) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
  }
}

}  // namespace

TEST_CASE("SSD300-VGG16 has torchvision's parameters, default boxes and head layout",
          "[models][detection]") {
  models::SSD net(models::SSDOptions::ssd300_vgg16(91));
  const auto state = io::module_state_dict(*net);
  // torchvision's SSD300_VGG16_Weights.COCO_V1.meta["num_params"] = 35641826, 71 tensors.
  int64_t total = 0;
  for (const auto& item : state) total += item.value().numel();
  CHECK(state.size() == 71);
  CHECK(total == 35641826);
  REQUIRE(state.contains("backbone.scale_weight"));
  CHECK(state["backbone.scale_weight"].sizes() == at::IntArrayRef({512}));
  CHECK(at::all(state["backbone.scale_weight"] == 20).item<bool>());
  CHECK(state.keys().front() == "backbone.scale_weight");
  // conv4_3 is features.21, fc6 and fc7 sit in extra.0.7 after conv5_x (extra.0.{1,3,5}).
  CHECK(state["backbone.features.21.weight"].sizes() == at::IntArrayRef({512, 512, 3, 3}));
  CHECK(state["backbone.extra.0.5.weight"].sizes() == at::IntArrayRef({512, 512, 3, 3}));
  CHECK(state["backbone.extra.0.7.1.weight"].sizes() == at::IntArrayRef({1024, 512, 3, 3}));
  CHECK(state["backbone.extra.0.7.3.weight"].sizes() == at::IntArrayRef({1024, 1024, 1, 1}));
  CHECK(state["backbone.extra.4.2.weight"].sizes() == at::IntArrayRef({256, 128, 3, 3}));
  // 4 boxes x 91 classes on conv4_3, 6 x 4 offsets on fc7.
  CHECK(state["head.classification_head.module_list.0.weight"].sizes() ==
        at::IntArrayRef({364, 512, 3, 3}));
  CHECK(state["head.regression_head.module_list.1.weight"].sizes() ==
        at::IntArrayRef({24, 1024, 3, 3}));
  CHECK(at::all(state["head.regression_head.module_list.1.bias"] == 0).item<bool>());
  CHECK(net->num_anchors_per_location() == std::vector<int64_t>{4, 6, 6, 6, 4, 4});
  const auto priors = net->priors();
  // 38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4
  CHECK(priors.sizes() == at::IntArrayRef({8732, 4}));
  // First prior: centre (4, 4) px, side 0.07 * 300 = 21 px.
  CHECK(priors[0][0].item<float>() == Approx(4 - 10.5).margin(1e-4));
  CHECK(priors[0][2].item<float>() == Approx(4 + 10.5).margin(1e-4));

  CHECK_THROWS_WITH(models::SSD(models::SSDOptions(91).image_size(256)),
                    Contains("image_size 300") && Contains("256"));
  CHECK_THROWS_WITH(models::SSD(models::SSDOptions(91).backbone("vgg19")), Contains("vgg19"));
  CHECK_THROWS_WITH(models::SSD(models::SSDOptions::light(5).num_extra(2)),
                    Contains("4 feature maps") && Contains("5"));
}

TEST_CASE("ssd_preprocess normalises then resizes as torchvision's transform",
          "[models][detection]") {
  const auto image = at::full({3, 40, 60}, 0.5f);
  const auto x = models::ssd_preprocess(image, 300, {0.48235, 0.45882, 0.40784},
                                        {1.0 / 255, 1.0 / 255, 1.0 / 255});
  REQUIRE(x.sizes() == at::IntArrayRef({1, 3, 300, 300}));
  // (0.5 - 0.48235) * 255 = 4.50075, (0.5 - 0.45882) * 255 = 10.5009, (0.5 - 0.40784) * 255
  CHECK(x[0][0].min().item<float>() == Approx(4.50075).epsilon(1e-4));
  CHECK(x[0][0].max().item<float>() == Approx(4.50075).epsilon(1e-4));
  CHECK(x[0][1][7][9].item<float>() == Approx(10.5009).epsilon(1e-4));
  CHECK(x[0][2][299][0].item<float>() == Approx(23.5008).epsilon(1e-4));
  // A 2x2 image up-sampled to 4x4 (align_corners = false): row 0 = 0, .25, .75, 1 of [0, 1].
  const auto ramp = at::tensor({0.f, 1.f, 0.f, 1.f}, at::kFloat).view({1, 2, 2}).expand({3, 2, 2});
  const auto r = models::ssd_preprocess(ramp, 4, {0, 0, 0}, {1, 1, 1});
  CHECK(at::allclose(r[0][1][0], at::tensor({0.f, .25f, .75f, 1.f})));
  CHECK_THROWS_WITH(models::ssd_preprocess(at::zeros({1, 40, 60}), 300, {0, 0, 0}, {1, 1, 1}),
                    Contains("3 channels"));
}

TEST_CASE("Light SSD: shapes, default boxes and gradient flow", "[models][detection]") {
  torch::manual_seed(0);
  models::SSD net(models::SSDOptions::light(11));
  CHECK(net->options.image_size() == 256);
  const auto x = at::randn({2, 3, 256, 256});
  const auto out = net->forward(x);
  // 16²·4 + 8²·6 + 4²·6 + 2²·4 + 1²·4
  const int64_t p = 1524;
  CHECK(out.locations.sizes() == at::IntArrayRef({2, p, 4}));
  CHECK(out.scores.sizes() == at::IntArrayRef({2, p, 11}));
  REQUIRE(out.priors.sizes() == at::IntArrayRef({p, 4}));
  CHECK(out.image_size == ops::GridSize{{256, 256}});
  CHECK(at::equal(out.priors, net->priors()));
  // At 128: 8²·4 + 4²·6 + 2²·6 + 1·4 + 1·4 (the last extra stays 1x1).
  CHECK(models::SSD(models::SSDOptions::light(3, 128))->priors().size(0) == 384);
  const auto centres = (out.priors.slice(1, 0, 2) + out.priors.slice(1, 2, 4)) / 2;
  CHECK(centres.min().item<float>() > 0);
  CHECK(centres.max().item<float>() < 256);

  (out.locations.square().mean() + out.scores.square().mean()).backward();
  CHECK(parameters_without_gradient(*net) == 0);
  CHECK(net->named_parameters().contains("backbone.layer4.1.conv2.weight"));
  CHECK(net->named_parameters().contains("backbone.extra.2.3.weight"));
}

TEST_CASE("ssd_targets: threshold and Hungarian matching, encoded offsets", "[models][detection]") {
  const auto priors = boxes({0, 0, 10, 10, 10, 10, 30, 30, 0, 0, 20, 20, 50, 50, 60, 60});
  const ops::BoxCoder coder({10, 10, 5, 5});

  // Separate objects: both matchers agree.
  const auto gt = boxes({0, 0, 10, 10, 12, 12, 30, 30});
  const auto labels = at::tensor({3, 5}, at::kLong);
  for (const std::string matcher : {"threshold", "hungarian"}) {
    INFO(matcher);
    const auto t =
        models::ssd_targets(gt, labels, priors, models::SSDTargetOptions().matcher(matcher));
    CHECK(at::equal(t.labels, at::tensor({3, 5, 0, 0}, at::kLong)));
    REQUIRE(t.locations.sizes() == at::IntArrayRef({4, 4}));
    CHECK(t.locations[0].abs().max().item<float>() < 1e-6);
    CHECK(at::allclose(t.locations[1], coder.encode(gt.slice(0, 1, 2), priors.slice(0, 1, 2))[0]));
    CHECK(at::all(t.locations.slice(0, 2) == 0).item<bool>());
  }

  // Two objects whose best prior is prior 0: SSD's matcher gives it to the later object
  // (IoU 1 vs 100/110) and the first is lost; Hungarian (1 - IoU) gives A prior 0 (cost 0)
  // and B prior 2 (IoU 110/400, cost .725 < .091 + .75).
  const auto gt2 = boxes({0, 0, 10, 10, 0, 0, 11, 10});
  const auto thr = models::ssd_targets(gt2, labels, priors);
  CHECK(at::equal(thr.labels, at::tensor({5, 0, 0, 0}, at::kLong)));
  const auto hun =
      models::ssd_targets(gt2, labels, priors, models::SSDTargetOptions().matcher("hungarian"));
  CHECK(at::equal(hun.labels, at::tensor({3, 0, 5, 0}, at::kLong)));
  CHECK(at::allclose(hun.locations[2], coder.encode(gt2.slice(0, 1, 2), priors.slice(0, 2, 3))[0]));

  // No objects: all background; batches stack.
  const auto none = models::ssd_targets(at::zeros({0, 4}), at::zeros({0}, at::kLong), priors);
  CHECK(at::all(none.labels == 0).item<bool>());
  const auto batch =
      models::ssd_targets(std::vector<at::Tensor>{gt, at::zeros({0, 4})},
                          std::vector<at::Tensor>{labels, at::zeros({0}, at::kLong)}, priors);
  CHECK(batch.locations.sizes() == at::IntArrayRef({2, 4, 4}));
  CHECK(at::equal(batch.labels[0], at::tensor({3, 5, 0, 0}, at::kLong)));

  CHECK_THROWS_WITH(models::ssd_targets(gt, at::tensor({3, 0}, at::kLong), priors),
                    Contains("gt_labels[1] = 0"));
  CHECK_THROWS_WITH(
      models::ssd_targets(gt, labels, priors, models::SSDTargetOptions().num_classes(5)),
      Contains("gt_labels[1] = 5"));
  CHECK_THROWS_WITH(
      models::ssd_targets(gt, labels, priors, models::SSDTargetOptions().matcher("best")),
      Contains("\"best\""));
}

TEST_CASE("ssd_targets: hungarian_predicted matches the predictions, not the default boxes",
          "[models][detection]") {
  // One object g = [1,1,11,11] of class 2 and two default boxes: P0 = [0,0,10,10] overlaps it
  // (IoU 81/119), P1 = [20,20,30,30] does not, so both prior matchers give g to P0.
  const auto priors = boxes({0, 0, 10, 10, 20, 20, 30, 30});
  const auto gt = boxes({1, 1, 11, 11});
  const auto labels = at::tensor({2}, at::kLong);
  const ops::BoxCoder coder({10, 10, 5, 5});
  const auto g_p0 = coder.encode(gt, priors.slice(0, 0, 1));  // (1, 1, 0, 0)
  const auto g_p1 = coder.encode(gt, priors.slice(0, 1, 2));  // (-19, -19, 0, 0)
  REQUIRE(at::allclose(g_p0, torch::tensor({{1.f, 1.f, 0.f, 0.f}}), 1e-5, 1e-5));
  for (const std::string matcher : {"threshold", "hungarian"}) {
    const auto t = models::ssd_targets(gt, labels, priors, models::SSDTargetOptions().matcher(matcher));
    CHECK(at::equal(t.labels, at::tensor({2, 0}, at::kLong)));
  }
  const auto predicted = models::SSDTargetOptions().matcher("hungarian_predicted");

  // The network predicts g from P1 (offsets exactly g's, class 2 at 0.9) and a box at
  // [40,40,50,50] from P0 (offsets (40,40,0,0), class 2 at 0.1). Costs (alpha = beta = 1):
  // P0: |(1,1,0,0) - (40,40,0,0)|_1 - 0.1 = 77.9; P1: 0 - 0.9 = -0.9 -> g goes to P1.
  const auto far = coder.encode(boxes({40, 40, 50, 50}), priors.slice(0, 0, 1));
  models::SSDPredictions disagree{at::cat({far, g_p1}),
                                  torch::tensor({{0.8f, 0.1f, 0.1f}, {0.05f, 0.05f, 0.9f}})};
  const auto t = models::ssd_targets(gt, labels, priors, predicted, disagree);
  CHECK(at::equal(t.labels, at::tensor({0, 2}, at::kLong)));
  CHECK(at::allclose(t.locations[1], g_p1[0]));
  CHECK(at::all(t.locations[0] == 0).item<bool>());

  // Predictions that agree with the default boxes: P0 predicts g (cost -0.8), P1 predicts its
  // own box (|(-19,-19,0,0)|_1 - 0.05 = 37.95) -> P0, as the prior matchers.
  models::SSDPredictions agree{at::cat({g_p0, at::zeros({1, 4})}),
                               torch::tensor({{0.1f, 0.1f, 0.8f}, {0.9f, 0.05f, 0.05f}})};
  CHECK(at::equal(models::ssd_targets(gt, labels, priors, predicted, agree).labels,
                  at::tensor({2, 0}, at::kLong)));

  // The weights: without the box term only the class probability counts (P0 0.8 > P1 0.1).
  models::SSDPredictions confident{disagree.codes,
                                   torch::tensor({{0.1f, 0.1f, 0.8f}, {0.8f, 0.1f, 0.1f}})};
  CHECK(at::equal(models::ssd_targets(gt, labels, priors, predicted, confident).labels,
                  at::tensor({0, 2}, at::kLong)));  // alpha = 1: 77.2 vs -0.1
  auto class_only = predicted;
  class_only.hungarian(ops::HungarianMatcherOptions().location_weight(0.0));
  CHECK(at::equal(models::ssd_targets(gt, labels, priors, class_only, confident).labels,
                  at::tensor({2, 0}, at::kLong)));  // alpha = 0: -0.8 vs -0.1

  // The batch form takes [N,P,...] predictions and equals the per-image targets.
  const auto batch = models::ssd_targets(
      std::vector<at::Tensor>{gt, gt}, std::vector<at::Tensor>{labels, labels}, priors, predicted,
      {at::stack({disagree.codes, agree.codes}),
       at::stack({disagree.probabilities, agree.probabilities})});
  CHECK(at::equal(batch.labels, torch::tensor({{0, 2}, {2, 0}}, at::kLong)));

  CHECK_THROWS_WITH(models::ssd_targets(gt, labels, priors, predicted),
                    Contains("hungarian_predicted") && Contains("predictions"));
  CHECK_THROWS_WITH(
      models::ssd_targets(gt, labels, priors, predicted,
                          {disagree.codes, disagree.probabilities.slice(1, 0, 2)}),
      Contains("probabilities should be [2,C]"));
  CHECK_THROWS_WITH(models::ssd_targets(std::vector<at::Tensor>{gt},
                                        std::vector<at::Tensor>{labels}, priors, predicted,
                                        disagree),
                    Contains("[N,P,4]"));
}

TEST_CASE("ssd_targets of a batch equal the per-image targets exactly", "[models][detection]") {
  // SSD300's default boxes, 7 images with 0..9 objects, some sharing a best prior.
  ops::DefaultBoxGenerator generator(ops::DefaultBoxOptions::ssd300());
  const auto priors = generator.forward(ops::ssd300_grid_sizes(), {300, 300});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  std::vector<at::Tensor> gts, labels;
  for (int64_t i = 0; i < 7; ++i) {
    const int64_t g = (i * 3) % 10;
    auto u = at::rand({g, 4}, gen);
    auto xy = u.slice(1, 0, 2) * 250, wh = u.slice(1, 2, 4) * 120 + 2;
    auto b = at::cat({xy, xy + wh}, 1);
    if (g >= 2) b[1].copy_(b[0] + 0.5);  // two objects on the same spot
    gts.push_back(b);
    labels.push_back(at::randint(1, 21, {g}, gen, at::kLong));
  }
  const auto batch = models::ssd_targets(gts, labels, priors);
  REQUIRE(batch.labels.sizes() == at::IntArrayRef({7, priors.size(0)}));
  for (size_t i = 0; i < gts.size(); ++i) {
    INFO("image " << i);
    const auto one = models::ssd_targets(gts[i], labels[i], priors);
    CHECK(at::equal(batch.labels[static_cast<int64_t>(i)], one.labels));
    CHECK(at::equal(batch.locations[static_cast<int64_t>(i)], one.locations));
    CHECK(at::equal(ops::threshold_match(gts, priors)[static_cast<int64_t>(i)],
                    ops::threshold_match(gts[i], priors)));
  }
  CHECK(batch.labels.gt(0).sum().item<int64_t>() > 20);

  // Errors name the image.
  auto bad = gts;
  bad[3] = boxes({10, 10, 5, 20});
  auto bad_labels = labels;
  bad_labels[3] = at::tensor({1}, at::kLong);
  CHECK_THROWS_WITH(models::ssd_targets(bad, bad_labels, priors), Contains("image 3"));
  bad_labels = labels;
  bad_labels[2] = at::zeros_like(labels[2]);
  CHECK_THROWS_WITH(models::ssd_targets(gts, bad_labels, priors),
                    Contains("image 2") && Contains("gt_labels[0] = 0"));
}

TEST_CASE("ssd_postprocess: threshold, NMS, clipping and rescaling", "[models][detection]") {
  const auto priors = boxes({10, 10, 30, 30, 12, 12, 32, 32, 60, 60, 90, 90});
  auto locations = at::zeros({1, 3, 4});
  locations[0][2][0] = 10.0;  // dx = 1 prior width: [90, 60, 120, 90], clipped to x2 = 100
  auto logits = at::zeros({1, 3, 3});
  logits[0][0][1] = 10.0;  // class 1, kept
  logits[0][1][1] = 9.0;   // class 1, IoU 324/476 = .68 with prior 0: suppressed
  logits[0][2][2] = 8.0;   // class 2
  const auto dets = models::ssd_postprocess(locations, logits, priors, {100, 100}, {{200, 300}});
  REQUIRE(dets.size() == 1);
  const auto& d = dets[0];
  REQUIRE(d.boxes.size(0) == 2);
  CHECK(at::equal(d.labels, at::tensor({1, 2}, at::kLong)));
  // x scaled by 300/100, y by 200/100.
  CHECK(at::allclose(d.boxes, boxes({30, 20, 90, 60, 270, 120, 300, 180})));
  const double p0 = std::exp(10.0) / (std::exp(10.0) + 2.0);
  CHECK(d.scores[0].item<float>() == Approx(p0).epsilon(1e-6));

  const auto top1 =
      models::ssd_postprocess(locations, logits, priors, {100, 100}, {},
                              models::SSDPostprocessOptions().detections_per_image(1));
  CHECK(top1[0].boxes.size(0) == 1);
  CHECK(at::allclose(top1[0].boxes, boxes({10, 10, 30, 30})));
  // e^8 / (e^8 + 2) = .99933 < .9995 < e^9 / (e^9 + 2) = .99975: prior 2 drops out.
  const auto strict =
      models::ssd_postprocess(locations, logits, priors, {100, 100}, {},
                              models::SSDPostprocessOptions().score_threshold(0.9995));
  CHECK(at::equal(strict[0].labels, at::tensor({1}, at::kLong)));
  // No NMS suppression at threshold 0.9: prior 1 comes back.
  const auto loose = models::ssd_postprocess(locations, logits, priors, {100, 100}, {},
                                             models::SSDPostprocessOptions().nms_threshold(0.9));
  CHECK(loose[0].boxes.size(0) == 3);
  CHECK_THROWS_WITH(models::ssd_postprocess(locations, logits, priors.slice(0, 0, 2), {100, 100}),
                    Contains("priors should be [3,4]"));
}

TEST_CASE("Light SSD overfits one image with two boxes in 20 Adam steps", "[models][detection]") {
  torch::manual_seed(1);
  // 96x96 (230 default boxes) keeps 20 steps short; a batch of two copies because the last
  // extra stage is 1x1 and BatchNorm needs more than one value per channel in training.
  models::SSD net(models::SSDOptions::light(3, 96));
  net->train();
  const auto image = at::rand({1, 3, 96, 96}).expand({2, 3, 96, 96}).contiguous();
  const auto gt = boxes({10, 15, 40, 50, 50, 30, 90, 85});
  const auto labels = at::tensor({1, 2}, at::kLong);
  const auto priors = net->priors();
  const auto target = models::ssd_targets(std::vector<at::Tensor>{gt, gt},
                                          std::vector<at::Tensor>{labels, labels}, priors);
  REQUIRE(net->priors().size(0) == 230);
  REQUIRE((target.labels > 0).sum().item<int64_t>() >= 4);
  // Perfect offsets give a zero localisation term.
  CHECK(losses::functional::multibox_loss(target.locations, at::zeros({2, priors.size(0), 3}),
                                          target.locations, target.labels)
            .location.item<float>() == 0.0f);

  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(1e-3));
  std::vector<float> history;
  for (int step = 0; step < 20; ++step) {
    optimizer.zero_grad();
    const auto out = net->forward(image);
    const auto loss = losses::functional::multibox_loss(out.locations, out.scores, target.locations,
                                                        target.labels)
                          .loss;
    REQUIRE(std::isfinite(loss.item<float>()));
    history.push_back(loss.item<float>());
    loss.backward();
    optimizer.step();
  }
  INFO("loss " << history.front() << " -> " << history.back());
  CHECK(history.back() < 0.5f * history.front());
}

TEST_CASE("Light SSD at half width: backbone_channels 32", "[models][detection]") {
  torch::manual_seed(0);
  models::SSD net(models::SSDOptions::light(11).backbone_channels(32));
  const auto* backbone = net->backbone->as<models::SSDResNetBackboneImpl>();
  REQUIRE(backbone != nullptr);
  CHECK(backbone->out_channels() == std::vector<int64_t>{128, 256, 128, 128, 128});
  const auto out = net->forward(at::randn({2, 3, 256, 256}));
  CHECK(out.locations.sizes() == at::IntArrayRef({2, 1524, 4}));
  CHECK(out.scores.sizes() == at::IntArrayRef({2, 1524, 11}));
  const auto stages = net->backbone->as<models::SSDResNetBackboneImpl>()->forward_stages(
      at::randn({2, 3, 64, 64}));
  REQUIRE(stages.size() == 7);
  CHECK(stages[0].size(1) == 32);  // layer1
  CHECK(stages[1].size(1) == 64);  // layer2
  CHECK(net->named_parameters()["backbone.extra.0.0.weight"].sizes() ==
        at::IntArrayRef({64, 256, 1, 1}));
  int64_t full = 0, half = 0;
  for (const auto& p : models::SSD(models::SSDOptions::light(11))->parameters()) full += p.numel();
  for (const auto& p : net->parameters()) half += p.numel();
  CHECK(half * 3 < full);
  CHECK_THROWS_WITH(models::SSD(models::SSDOptions::ssd300_vgg16(5).backbone_channels(32)),
                    Contains("backbone_channels") && Contains("resnet18"));
}

TEST_CASE("build_detector builds both SSDs from JSON and names bad keys", "[models][detection]") {
  auto light = models::build_detector({{"name", "ssd_light"}, {"image_size", 128}}, 11, "run.json");
  CHECK(light->options.backbone() == "resnet18");
  CHECK(light->options.image_size() == 128);
  CHECK(light->options.num_classes() == 11);
  CHECK(light->options.backbone_channels() == 64);
  CHECK(models::build_detector({{"name", "ssd_light"}, {"backbone_channels", 32}}, 11, "run.json")
            ->options.backbone_channels() == 32);
  CHECK_THROWS_WITH(
      models::build_detector({{"name", "ssd_light"}, {"backbone_channels", 0}}, 11, "run.json"),
      Contains("run.json") && Contains("model.backbone_channels"));
  CHECK_THROWS_WITH(
      models::build_detector({{"name", "ssd_light"}, {"image_size", 16}}, 11, "run.json"),
      Contains("run.json") && Contains("model.image_size") && Contains(">= 32, got 16"));
  auto ssd300 = models::build_detector(
      {{"name", "ssd300_vgg16"}, {"score_threshold", 0.2}, {"detections_per_image", 50}}, 5,
      "run.json");
  CHECK(ssd300->options.backbone() == "vgg16");
  CHECK(ssd300->options.postprocess().score_threshold() == Approx(0.2));
  CHECK(ssd300->options.postprocess().detections_per_image() == 50);
  CHECK(ssd300->head->classification_head->num_columns == 5);

  CHECK_THROWS_WITH(models::build_detector({{"name", "yolo"}}, 11, "run.json"),
                    Contains("run.json") && Contains("model.name") && Contains("ssd_light"));
  CHECK_THROWS_WITH(models::build_detector({{"name", "ssd_light"}, {"imgae_size", 9}}, 11, "run.json"),
                    Contains("model.imgae_size"));
  CHECK_THROWS_WITH(models::build_detector({{"name", "ssd300_vgg16"}, {"image_size", 512}}, 11, "r.json"),
                    Contains("model.image_size") && Contains("300"));
  CHECK_THROWS_WITH(models::build_detector({{"name", "ssd_light"}, {"nms_threshold", 0}}, 11, "r.json"),
                    Contains("model.nms_threshold"));
  CHECK_THROWS_WITH(models::build_detector({{"name", "ssd_light"}}, 1, "r.json"),
                    Contains("num_classes"));
  CHECK_THROWS_WITH(
      models::build_detector({{"name", "ssd_light"}, {"weights", "/no/such.pth"}}, 11, "r.json"),
      Contains("/no/such.pth"));
}

TEST_CASE("SSD backbone weights: torchvision's vgg16 features and resnet18 load by name",
          "[models][detection]") {
  // A vgg16 state dict as torchvision writes it, made from one SSD300's backbone: features.0-22
  // are the SSD's features, features.23-29 its extra.0.0-6; classifier keys are ignored.
  models::SSD source(models::SSDOptions::ssd300_vgg16(3));
  auto* vgg = source->backbone->as<models::SSDVGGBackboneImpl>();
  REQUIRE(vgg != nullptr);
  io::StateDict state;
  for (const auto& item : vgg->features->named_parameters()) {
    state.insert("features." + item.key(), item.value());
  }
  for (const auto& item : vgg->extra[0]->named_parameters()) {
    const auto dot = item.key().find('.');
    const int64_t index = std::stoll(item.key().substr(0, dot));
    if (index < 7) state.insert("features." + std::to_string(index + 23) + item.key().substr(dot), item.value());
  }
  state.insert("classifier.0.weight", at::zeros({2, 2}));
  models::SSD target(models::SSDOptions::ssd300_vgg16(3));
  models::load_ssd_backbone_weights(*target, state, "vgg16.pth");
  const auto a = io::module_state_dict(*source), b = io::module_state_dict(*target);
  CHECK(at::equal(a["backbone.features.21.weight"], b["backbone.features.21.weight"]));
  CHECK(at::equal(a["backbone.extra.0.5.weight"], b["backbone.extra.0.5.weight"]));  // conv5_3
  CHECK_FALSE(at::equal(a["backbone.extra.0.7.1.weight"], b["backbone.extra.0.7.1.weight"]));  // fc6

  // resnet18: everything but fc; a resnet34 is refused, naming its extra blocks.
  models::ResNet resnet18(models::ResNetOptions(18));
  models::SSD light(models::SSDOptions::light(4, 64));
  models::load_ssd_backbone_weights(*light, io::module_state_dict(*resnet18), "resnet18.pth");
  CHECK(at::equal(io::module_state_dict(*light)["backbone.layer4.1.conv2.weight"],
                  io::module_state_dict(*resnet18)["layer4.1.conv2.weight"]));
  models::ResNet resnet34(models::ResNetOptions(34));
  CHECK_THROWS_WITH(
      models::load_ssd_backbone_weights(*light, io::module_state_dict(*resnet34), "resnet34.pth"),
      Contains("resnet34.pth") && Contains("layer1.2.conv1.weight"));
  io::StateDict broken = io::module_state_dict(*resnet18);
  broken["conv1.weight"] = at::zeros({64, 3, 3, 3});
  CHECK_THROWS_WITH(models::load_ssd_backbone_weights(*light, broken, "broken.pth"),
                    Contains("broken.pth") && Contains("conv1.weight"));
}

TEST_CASE("SSDLite320-MobileNetV3: feature maps, default boxes, separable heads, gradients",
          "[models][detection]") {
  torch::manual_seed(0);
  models::SSD net(models::SSDOptions::ssdlite320_mobilenet_v3_large(5));
  const auto& backbone = net->maps_backbone();
  CHECK(backbone.out_channels() == std::vector<int64_t>{672, 480, 512, 256, 256, 128});
  CHECK(models::SSD(models::SSDOptions::ssdlite320_mobilenet_v3_large(5).reduced_tail(false))
            ->maps_backbone()
            .out_channels()[1] == 960);
  CHECK(net->num_anchors_per_location() == std::vector<int64_t>(6, 6));

  // torchvision's keys: the C4 expansion ends features.0, block 13's depthwise conv starts
  // features.1; the heads are depthwise conv-BN-ReLU6 then 1x1.
  const auto params = net->named_parameters();
  CHECK(params["backbone.features.0.13.0.weight"].sizes() == at::IntArrayRef({672, 112, 1, 1}));
  CHECK(params["backbone.features.1.0.1.0.weight"].sizes() == at::IntArrayRef({672, 1, 5, 5}));
  CHECK(params["backbone.features.1.0.2.fc1.weight"].sizes() == at::IntArrayRef({168, 672, 1, 1}));
  CHECK(params["backbone.features.1.3.0.weight"].sizes() == at::IntArrayRef({480, 80, 1, 1}));
  CHECK(params["backbone.extra.0.1.0.weight"].sizes() == at::IntArrayRef({256, 1, 3, 3}));
  CHECK(params["head.classification_head.module_list.0.0.0.weight"].sizes() ==
        at::IntArrayRef({672, 1, 3, 3}));
  CHECK(params["head.classification_head.module_list.5.1.weight"].sizes() ==
        at::IntArrayRef({30, 128, 1, 1}));
  CHECK(params["head.regression_head.module_list.1.1.bias"].sizes() == at::IntArrayRef({24}));
  const double head_std = params["head.classification_head.module_list.0.1.weight"].std().item<double>();
  CHECK(head_std == Approx(0.03).epsilon(0.05));  // torchvision's _normal_init
  for (const auto& m : net->modules()) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      CHECK(bn->options.eps() == Approx(0.001));
      CHECK(bn->options.momentum().value() == Approx(0.03));
    }
  }

  // 320x320: maps 20, 10, 5, 3, 2, 1 with 6 boxes per cell = 3234 default boxes.
  const std::vector<ops::GridSize> grids{{20, 20}, {10, 10}, {5, 5}, {3, 3}, {2, 2}, {1, 1}};
  CHECK((backbone.grid_sizes(320) == grids));  // no decomposition: grids have no operator<<
  const auto x = at::randn({2, 3, 320, 320});
  const auto maps = net->forward_maps(x);
  REQUIRE(maps.size() == 6);
  for (size_t i = 0; i < maps.size(); ++i) {
    CHECK(maps[i].size(2) == grids[i][0]);
  }
  const auto out = net->forward_heads(maps, {320, 320});
  CHECK(out.locations.sizes() == at::IntArrayRef({2, 3234, 4}));
  CHECK(out.scores.sizes() == at::IntArrayRef({2, 3234, 5}));
  CHECK(at::equal(out.priors, net->priors()));
  // Another size: the maps the network gives are the ones grid_sizes predicts (a batch of two:
  // the last map is 1x1 and BatchNorm trains on more than one value per channel).
  std::vector<at::Tensor> odd;
  {
    torch::NoGradGuard no_grad;
    odd = net->forward_maps(at::randn({2, 3, 300, 300}));
  }
  const auto odd_grids = backbone.grid_sizes(300);
  for (size_t i = 0; i < odd.size(); ++i) {
    CHECK(odd[i].size(2) == odd_grids[i][0]);
    CHECK(odd[i].size(3) == odd_grids[i][1]);
  }

  (out.locations.square().mean() + out.scores.square().mean()).backward();
  CHECK(parameters_without_gradient(*net) == 0);
}

TEST_CASE("SSDLite learns one image with either matcher in 25 Adam steps", "[models][detection]") {
  // 128x128: maps 8, 4, 2, 1, 1, 1 (522 default boxes); two copies because the last maps are
  // 1x1 and BatchNorm trains on more than one value per channel.
  const auto gt = boxes({10, 15, 60, 70, 70, 40, 120, 110});
  const auto labels = at::tensor({1, 2}, at::kLong);
  for (const std::string matcher : {"threshold", "hungarian"}) {
    INFO("matcher " << matcher);
    torch::manual_seed(3);
    models::SSD net(models::SSDOptions::ssdlite320_mobilenet_v3_large(3).image_size(128));
    net->train();
    const auto priors = net->priors();
    REQUIRE(priors.size(0) == 522);
    const auto target =
        models::ssd_targets(std::vector<at::Tensor>{gt, gt}, std::vector<at::Tensor>{labels, labels},
                            priors, models::SSDTargetOptions().matcher(matcher));
    const int64_t positives = (target.labels > 0).sum().item<int64_t>();
    if (matcher == "hungarian") {
      CHECK(positives == 4);  // one default box per object
    } else {
      CHECK(positives >= 4);
    }
    const auto image = at::rand({1, 3, 128, 128}).expand({2, 3, 128, 128}).contiguous();
    torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(1e-3));
    std::vector<float> history;
    for (int step = 0; step < 25; ++step) {
      optimizer.zero_grad();
      const auto out = net->forward(image);
      const auto loss = losses::functional::multibox_loss(out.locations, out.scores,
                                                          target.locations, target.labels)
                            .loss;
      REQUIRE(std::isfinite(loss.item<float>()));
      history.push_back(loss.item<float>());
      loss.backward();
      optimizer.step();
    }
    INFO("loss " << history.front() << " -> " << history.back());
    CHECK(history.back() < 0.5f * history.front());
  }
}

TEST_CASE("SSDLite backbone weights: a torchvision mobilenet_v3_large classifier loads by name",
          "[models][detection]") {
  torch::manual_seed(2);
  torch::NoGradGuard no_grad;
  models::MobileNetV3 classifier("large");
  randomise_batch_norms(*classifier);
  classifier->eval();
  const auto state = io::module_state_dict(*classifier);  // features.*, classifier.*

  models::SSD net(models::SSDOptions::ssdlite320_mobilenet_v3_large(3).reduced_tail(false));
  models::load_ssd_backbone_weights(*net, state, "mobilenet_v3_large.pth");
  net->eval();
  // The second feature map is the whole of the classifier's `features`: every renamed layer
  // (features.i -> features.0.i / features.1.(i-13), block 13 split in two) is in its path.
  const auto x = at::randn({1, 3, 224, 224});
  const auto maps = net->forward_maps(x);
  const auto expected = classifier->features->forward(x);
  REQUIRE(maps[1].sizes() == expected.sizes());
  CHECK((maps[1] - expected).abs().max().item<double>() <=
        1e-5 * expected.abs().max().item<double>());
  // The half-width tail of the default (no ImageNet weights) form cannot take them.
  models::SSD reduced(models::SSDOptions::ssdlite320_mobilenet_v3_large(3));
  CHECK_THROWS_WITH(models::load_ssd_backbone_weights(*reduced, state, "mobilenet_v3_large.pth"),
                    Contains("mobilenet_v3_large.pth") && Contains("wrong shape") &&
                        Contains("features.1.0.3.0.weight"));

  // From a config: reduced_tail follows backbone_weights, as torchvision's builder.
  test::TempDir dir;
  io::save_state_dict(state, dir / "mnv3.pth");
  auto built = models::build_detector(
      {{"name", "ssdlite320_mobilenet_v3_large"}, {"backbone_weights", dir / "mnv3.pth"}}, 3,
      "run.json");
  CHECK_FALSE(built->options.reduced_tail());
  CHECK(at::equal(io::module_state_dict(*built)["backbone.features.1.0.1.0.weight"],
                  state["features.13.block.1.0.weight"]));
  auto plain = models::build_detector({{"name", "ssdlite320_mobilenet_v3_large"}}, 3, "run.json");
  CHECK(plain->options.reduced_tail());
  CHECK(plain->options.head() == "ssdlite");
  CHECK(plain->options.image_size() == 320);
  CHECK(plain->options.postprocess().score_threshold() == Approx(0.001));
  CHECK(plain->options.postprocess().nms_threshold() == Approx(0.55));
  CHECK_THROWS_WITH(models::build_detector({{"name", "ssdlite320_mobilenet_v3_large"},
                                            {"backbone", "resnet18"}},
                                           3, "run.json"),
                    Contains("run.json") && Contains("model.backbone"));
  CHECK_THROWS_WITH(models::SSD(models::SSDOptions::ssdlite320_mobilenet_v3_large(3).head("lite")),
                    Contains("\"ssdlite\"") && Contains("lite"));
}

TEST_CASE("Receptive fields of the SSD backbones up to their coarsest feature map",
          "[models][detection]") {
  // By hand (rf += (dilation*(k-1)) * jump; jump *= stride):
  // SSD300: conv4_3 92 (jump 8); conv5_3 196, pool5 3/1 228, fc6 (k 3, dilation 6) 420 (jump
  // 16); conv8_2 452 (32), conv9_2 516 (64), conv10_2 644, conv11_2 772 (3x3 unpadded).
  const auto vgg = nn::receptive_fields(
      models::detector_receptive_field_layers({{"name", "ssd300_vgg16"}}, "run.json"));
  const auto conv4_3 = std::find_if(vgg.begin(), vgg.end(),
                                    [](const nn::LayerField& f) { return f.name == "conv4_3"; });
  REQUIRE(conv4_3 != vgg.end());
  CHECK(conv4_3->receptive_field == 92);
  CHECK(vgg.back().receptive_field == 772);
  CHECK(vgg.back().jump == 64);
  // SSDLite: MobileNetV3-Large's stem and 15 depthwise convs end at 595 (jump 32); each extra
  // stage's 3x3 stride-2 depthwise conv adds 2 x jump: 659, 787, 1043, 1555 (jump 512).
  const auto lite = nn::receptive_fields(models::detector_receptive_field_layers(
      {{"name", "ssdlite320_mobilenet_v3_large"}}, "run.json"));
  REQUIRE(lite.size() == 1 + 15 + 4);
  CHECK(lite[15].receptive_field == 595);
  CHECK(lite[15].jump == 32);
  CHECK(lite.back().receptive_field == 1555);
  CHECK(lite.back().jump == 512);
  // YOLO over ResNet-18: 435 at layer4 (jump 32, the classic figure), the head's 3x3 adds
  // 2 x 32.
  const auto yolo = nn::receptive_fields(models::detector_receptive_field_layers(
      {{"name", "yolo"}, {"backbone", "resnet18"}}, "run.json"));
  REQUIRE(yolo.size() >= 3);
  CHECK(yolo[yolo.size() - 3].receptive_field == 435);
  CHECK(yolo.back().name == "head.1");
  CHECK(yolo.back().receptive_field == 499);
  CHECK(yolo.back().jump == 32);
  CHECK_THROWS_WITH(models::detector_receptive_field_layers({{"name", "ssd"}}, "run.json"),
                    Contains("run.json") && Contains("model.name"));
}

TEST_CASE("build_classifier: a narrow ResNet-18 whose weights are a light SSD's backbone",
          "[models][detection][classifier]") {
  test::TempDir dir;
  const auto built = models::build_classifier({{"name", "resnet18"}, {"backbone_channels", 16}}, 10, "cls.json");
  CHECK(built.name == "resnet18");
  auto* net = built.module->as<models::ResNetImpl>();
  REQUIRE(net != nullptr);
  CHECK(net->options.base_channels() == 16);
  CHECK(built.forward(at::rand({2, 3, 48, 48})).sizes() == at::IntArrayRef({2, 10}));
  CHECK(net->fc->weight.sizes() == at::IntArrayRef({10, 128}));
  CHECK(models::build_classifier({{"name", "resnet50"}}, 7, "cls.json")
            .module->as<models::ResNetImpl>()
            ->fc->weight.size(1) == 2048);
  CHECK_THROWS_WITH(models::build_classifier({{"name", "resnet19"}}, 10, "cls.json"),
                    Contains("cls.json") && Contains("model.name") && Contains("resnet34"));
  CHECK_THROWS_WITH(models::build_classifier({{"name", "resnet18"}, {"backbone_channels", 0}}, 10, "cls.json"),
                    Contains("model.backbone_channels"));
  CHECK_THROWS_WITH(models::build_classifier({{"name", "resnet18"}, {"widht", 3}}, 10, "cls.json"),
                    Contains("model.widht"));
  CHECK_THROWS_WITH(models::build_classifier({{"name", "resnet18"}}, 1, "cls.json"),
                    Contains("num_classes"));

  // Saved as a state_dict (what `ostrov export` writes), it loads back whole with model.weights
  // and, without fc, as the backbone of a light SSD of the same width.
  const std::string file = dir / "resnet18_w16.pt";
  io::save_state_dict(io::module_state_dict(*net), file);
  auto again = models::build_classifier({{"name", "resnet18"}, {"backbone_channels", 16}, {"weights", file}},
                                        10, "cls.json");
  CHECK(at::equal(io::module_state_dict(*again.module)["layer3.1.conv2.weight"],
                  io::module_state_dict(*net)["layer3.1.conv2.weight"]));
  CHECK(at::equal(io::module_state_dict(*again.module)["layer1.0.bn1.running_var"],
                  io::module_state_dict(*net)["layer1.0.bn1.running_var"]));
  CHECK_THROWS_WITH(models::build_classifier({{"name", "resnet18"}, {"weights", file}}, 10, "cls.json"),
                    Contains("resnet18_w16.pt") && Contains("conv1.weight"));
  auto ssd = models::build_detector(
      {{"name", "ssd_light"}, {"image_size", 64}, {"backbone_channels", 16}, {"backbone_weights", file}},
      11, "ssd.json");
  CHECK(at::equal(io::module_state_dict(*ssd)["backbone.layer2.0.downsample.0.weight"],
                  io::module_state_dict(*net)["layer2.0.downsample.0.weight"]));
}
