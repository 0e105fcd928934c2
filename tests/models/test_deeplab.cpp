// MobileNetV3, DeepLabV3, FCN (torchvision's) and LR-ASPP: the paper's sizes, stages and
// strides, any input size, gradients to every parameter (auxiliary head included), clones and
// save/load, configs and their errors, and that LR-ASPP learns a tiny problem. Equality with
// torchvision is in parity/test_deeplab_parity.cpp.
#include "catch.h"

#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/optim/adam.h>
#include <torch/types.h>

#include "ostrov/core/error.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/backbone.h"
#include "ostrov/models/backbones/mobilenet_v3.h"
#include "ostrov/models/build.h"
#include "ostrov/models/segmentation/deeplab.h"
#include "ostrov/nn/receptive_field.h"
#include "support.h"

using namespace ostrov;
using Catch::Contains;
using nlohmann::json;
using ostrov::test::TempDir;

namespace {

at::Tensor random_image(int64_t n, int64_t h, int64_t w, uint64_t seed = 1) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn({n, 3, h, w}, gen);
}

at::Tensor weighted_sum(const at::Tensor& logits, uint64_t seed = 7) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return (logits * at::randn(logits.sizes(), gen)).sum();
}

int64_t parameter_count(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

// Every parameter gets a finite, non-zero gradient.
void check_gradients(torch::nn::Module& module, const at::Tensor& loss) {
  loss.backward();
  size_t checked = 0;
  for (const auto& p : module.named_parameters()) {
    INFO(p.key());
    REQUIRE(p.value().grad().defined());
    CHECK(at::isfinite(p.value().grad()).all().item<bool>());
    CHECK(p.value().grad().abs().sum().item<double>() > 0.0);
    ++checked;
  }
  CHECK(checked > 0);
}

}  // namespace

TEST_CASE("MobileNetV3: torchvision's sizes, stages, strides and keys", "[models][backbones]") {
  // Parameter counts of torchvision 0.14's mobilenet_v3_large / _small (1000 classes).
  models::MobileNetV3 large("large");
  models::MobileNetV3 small("mobilenet_v3_small");
  CHECK(parameter_count(*large) == 5483032);
  CHECK(parameter_count(*small) == 2542856);
  CHECK(large->stage_names().size() == 17);
  CHECK(small->stage_names().size() == 13);
  CHECK(large->out_channels() == 960);
  CHECK(small->out_channels() == 576);
  CHECK(large->stage_stride("16") == 32);
  CHECK(large->features->first_stage_with_stride(8) == "4");
  CHECK(small->features->first_stage_with_stride(8) == "2");
  const auto params = large->named_parameters();
  for (const char* key : {"features.0.0.weight", "features.1.block.0.0.weight",
                          "features.4.block.2.fc1.bias", "features.16.1.weight",
                          "classifier.0.weight", "classifier.3.bias"}) {
    INFO(key);
    CHECK(params.find(key) != nullptr);
  }
  CHECK(large->named_buffers().find("features.4.block.1.1.running_var") != nullptr);

  // The dilated form: the same parameters, output stride 16.
  models::MobileNetV3Features dilated(models::MobileNetV3Options("large").num_classes(0).dilated(true));
  CHECK(dilated->stage_stride("16") == 16);
  CHECK(dilated->stage_stride("12") == 16);
  torch::NoGradGuard no_grad;
  large->eval();
  dilated->eval();
  const auto x = random_image(1, 45, 61);
  CHECK(large->forward(x).sizes() == at::IntArrayRef({1, 1000}));
  const auto f = dilated->forward_features(x, {"4", "16"});
  REQUIRE(f.size() == 2);
  CHECK(f["4"].sizes() == at::IntArrayRef({1, 40, 6, 8}));
  CHECK(f["16"].sizes() == at::IntArrayRef({1, 960, 3, 4}));
  CHECK_THROWS_WITH(dilated->stage_channels("17"), Contains("\"17\"") && Contains("\"16\""));
  CHECK_THROWS_WITH(models::MobileNetV3(models::MobileNetV3Options("medium")),
                    Contains("medium"));

  // A headless network refuses forward(); a classification file loads into the features.
  models::MobileNetV3 headless(models::MobileNetV3Options("large").num_classes(0));
  CHECK_THROWS_WITH(headless->forward(x), Contains("forward_features"));
  const auto state = io::module_state_dict(*large);
  dilated->load_torchvision(state, "mobilenet_v3_large.pth");
  CHECK(at::equal(dilated->named_parameters()["0.0.weight"], large->features->named_parameters()["0.0.weight"]));
  // small into large: the mismatches are listed by key and shape.
  CHECK_THROWS_AS(dilated->load_torchvision(io::module_state_dict(*small), "small.pth"), IoError);
  CHECK_THROWS_WITH(dilated->load_torchvision(io::module_state_dict(*small), "small.pth"),
                    Contains("small.pth") && Contains("16.0.weight") && Contains("wrong shapes"));
}

TEST_CASE("DeepLabV3, FCN, DeepLabV3+ and LR-ASPP keep any input size and reach every parameter", "[models][segmentation]") {
  struct Case {
    std::string what;
    std::shared_ptr<torch::nn::Module> module;
    std::shared_ptr<models::SegmentationNetwork> network;
    bool aux;
  };
  std::vector<Case> cases;
  const auto add = [&](std::string what, auto holder, bool aux) {
    cases.push_back({std::move(what), holder.ptr(), holder.ptr(), aux});
  };
  add("deeplabv3 mobilenet_v3_small",
      models::DeepLabV3(models::DeepLabV3Options(4).backbone(
          models::BackboneOptions("mobilenet_v3_small").output_stride(16))),
      true);
  add("deeplabv3 resnet18 os16",
      models::DeepLabV3(models::DeepLabV3Options(4).backbone(
          models::BackboneOptions("resnet18").channels(16).output_stride(16))),
      true);
  add("fcn resnet18 os8",
      models::DeepLabV3(models::DeepLabV3Options(4)
                            .backbone(models::BackboneOptions("resnet18").channels(16).output_stride(8))
                            .head(models::DenseHead::kFCN)),
      true);
  add("deeplabv3plus mobilenet_v3_small",
      models::DeepLabV3Plus(models::DeepLabV3PlusOptions(4)
                                .backbone(models::BackboneOptions("mobilenet_v3_small").output_stride(16))
                                .decoder_channels(32)),
      false);
  add("deeplabv3plus resnet18 os16",
      models::DeepLabV3Plus(models::DeepLabV3PlusOptions(4)
                                .backbone(models::BackboneOptions("resnet18").channels(8).output_stride(16))
                                .low_level_channels(8)
                                .decoder_channels(16)),
      false);
  add("lraspp mobilenet_v3_small",
      models::LRASPP(models::LRASPPOptions(4).backbone(
          models::BackboneOptions("mobilenet_v3_small").output_stride(16))),
      false);
  for (auto& c : cases) {
    INFO(c.what);
    c.module->eval();
    {
      torch::NoGradGuard no_grad;
      for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {37, 53}}) {
        CHECK(c.network->forward(random_image(1, h, w)).sizes() == at::IntArrayRef({1, 4, h, w}));
      }
    }
    c.module->train();
    c.module->zero_grad();
    const auto out = c.network->forward_with_aux(random_image(2, 33, 41));
    CHECK(out.main.sizes() == at::IntArrayRef({2, 4, 33, 41}));
    CHECK(out.aux.defined() == c.aux);
    auto loss = weighted_sum(out.main);
    if (c.aux) {
      CHECK(out.aux.sizes() == out.main.sizes());
      CHECK(out.aux_weight == 0.5);
      loss = loss + weighted_sum(out.aux, 9);
    }
    check_gradients(*c.module, loss);

    // A clone is a deep copy with equal outputs.
    c.module->eval();
    torch::NoGradGuard no_grad;
    const auto copy = c.module->clone();
    const auto x = random_image(1, 29, 31, 5);
    CHECK(at::equal(models::as_segmentation_network(copy)->forward(x), c.network->forward(x)));
  }
}

TEST_CASE("DeepLabV3 heads: torchvision's keys, stages and the batch-of-one error", "[models][segmentation]") {
  models::DeepLabV3 net(models::DeepLabV3Options(3).backbone(
      models::BackboneOptions("mobilenet_v3_large").output_stride(16)));
  CHECK(net->main_stage() == "16");
  CHECK(net->aux_stage() == "4");
  const auto params = net->named_parameters();
  for (const char* key :
       {"backbone.0.0.weight", "backbone.16.1.bias", "classifier.0.convs.0.0.weight",
        "classifier.0.convs.3.1.weight", "classifier.0.convs.4.1.weight",
        "classifier.0.project.0.weight", "classifier.1.weight", "classifier.2.bias",
        "classifier.4.bias", "aux_classifier.0.weight", "aux_classifier.4.bias"}) {
    INFO(key);
    CHECK(params.find(key) != nullptr);
  }
  CHECK(params["classifier.0.convs.3.0.weight"].sizes() == at::IntArrayRef({256, 960, 3, 3}));
  CHECK(params["aux_classifier.0.weight"].sizes() == at::IntArrayRef({10, 40, 3, 3}));
  models::DeepLabV3 resnet(models::DeepLabV3Options(3).backbone(
      models::BackboneOptions("resnet18").channels(8).output_stride(8)));
  CHECK(resnet->main_stage() == "layer4");
  CHECK(resnet->aux_stage() == "layer3");

  net->train();
  CHECK_THROWS_WITH(net->forward(random_image(1, 40, 40)),
                    Contains("ASPP") && Contains("batch of 1"));
  CHECK_THROWS_WITH(models::DeepLabV3(models::DeepLabV3Options(3).backbone(
                        models::BackboneOptions("resnet50").output_stride(32))),
                    Contains("output_stride must be 8 or 16") && Contains("32"));
  CHECK_THROWS_WITH(models::DeepLabV3(models::DeepLabV3Options(3).backbone(
                        models::BackboneOptions("mobilenet_v3_large").output_stride(8))),
                    Contains("output stride 16"));
  CHECK_THROWS_WITH(models::LRASPP(models::LRASPPOptions(3).backbone(
                        models::BackboneOptions("resnet50").output_stride(16))),
                    Contains("mobilenet_v3_large"));
  CHECK_THROWS_WITH(net->forward(at::zeros({1, 1, 8, 8})), Contains("[N,3,H,W]"));
}

TEST_CASE("build() makes deeplabv3, fcn, deeplabv3plus and lraspp from configs, bad keys are named", "[models][segmentation][build]") {
  TempDir dir;
  const std::vector<json> configs = {
      {{"name", "deeplabv3"}, {"backbone", "mobilenet_v3_small"}, {"atrous_rates", {2, 4}}},
      {{"name", "deeplabv3"}, {"backbone", "resnet18"}, {"backbone_channels", 8},
       {"output_stride", 16}, {"aux", false}},
      {{"name", "fcn"}, {"backbone", "resnet18"}, {"backbone_channels", 8}, {"aux_weight", 0.3}},
      {{"name", "lraspp"}, {"backbone", "mobilenet_v3_small"}, {"inter_channels", 16}},
      {{"name", "deeplabv3plus"}, {"backbone", "resnet18"}, {"backbone_channels", 8},
       {"decoder_channels", 16}, {"low_level_channels", 8}},
  };
  for (const auto& config : configs) {
    INFO(config.dump());
    auto model = models::build(config, 5, "run.json");
    model.module->eval();
    torch::NoGradGuard no_grad;
    const auto x = random_image(1, 35, 27);
    const auto y = model.forward(x);
    CHECK(y.sizes() == at::IntArrayRef({1, 5, 35, 27}));
    // Save and load round trip through a whole-model file.
    const std::string path = dir / "model.pt";
    io::save_state_dict(io::module_state_dict(*model.module), path);
    json with_weights = config;
    with_weights["weights"] = path;
    auto loaded = models::build(with_weights, 5, "run.json");
    loaded.module->eval();
    CHECK(at::equal(loaded.forward(x), y));
    CHECK_FALSE(models::receptive_field_layers(config, "run.json").empty());
  }
  const auto aux = models::build(configs[2], 5, "run.json").forward_with_aux(random_image(2, 17, 19));
  CHECK(aux.aux_weight == Approx(0.3));

  // Receptive field of the MobileNetV3-small DeepLab: the stem, eleven depthwise convs, the
  // widest ASPP branch and the 3x3 after it.
  const auto layers = models::receptive_field_layers(configs[0], "run.json");
  CHECK(layers.size() == 1 + 11 + 2);
  CHECK(layers[12].dilation == 4);
  CHECK(nn::receptive_fields(layers).back().jump == 16);
  // DeepLabV3+ over ResNet-18 is at output stride 16 by default, its decoder reads layer1.
  const auto plus = models::build(configs[4], 5, "run.json");
  auto* plus_net = plus.module->as<models::DeepLabV3PlusImpl>();
  REQUIRE(plus_net != nullptr);
  CHECK(plus_net->options.backbone().output_stride() == 16);
  CHECK(plus.module->named_parameters()["low_level.0.weight"].sizes() ==
        at::IntArrayRef({8, 8, 1, 1}));
  CHECK(plus.module->named_parameters()["decoder.0.weight"].sizes() ==
        at::IntArrayRef({16, 16 + 8, 3, 3}));
  CHECK(plus.module->named_parameters()["aspp.convs.1.0.weight"].sizes() ==
        at::IntArrayRef({16, 64, 3, 3}));

  const auto fails = [](const json& config) {
    return [config] { models::build(config, 3, "run.json"); };
  };
  CHECK_THROWS_WITH(fails({{"name", "deeplabv3"}, {"backbone", "vgg16"}})(),
                    Contains("model.backbone") && Contains("mobilenet_v3_large"));
  CHECK_THROWS_WITH(fails({{"name", "deeplabv3"}, {"backbone", "resnet50"}, {"output_stride", 32}})(),
                    Contains("model.output_stride") && Contains("32"));
  CHECK_THROWS_WITH(fails({{"name", "deeplabv3"}, {"output_stride", 8}})(),
                    Contains("model.output_stride"));
  CHECK_THROWS_WITH(fails({{"name", "lraspp"}, {"backbone", "resnet18"}})(),
                    Contains("model.backbone"));
  CHECK_THROWS_WITH(fails({{"name", "lraspp"}, {"backbone_channels", 32}})(),
                    Contains("model.backbone_channels"));
  CHECK_THROWS_WITH(fails({{"name", "fcn"}, {"atrous_rates", {6}}})(),
                    Contains("model.atrous_rates"));
  CHECK_THROWS_WITH(fails({{"name", "deeplabv3"}, {"input_padding", "zero"}})(),
                    Contains("model.input_padding") && Contains("any input size"));
}

TEST_CASE("LR-ASPP and DeepLabV3+ over MobileNetV3-small learn a two-class toy problem", "[models][segmentation]") {
  // Bright squares on a dark background; the label is "bright".
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto x = at::randn({4, 3, 48, 48}, gen) * 0.1;
  auto y = at::zeros({4, 48, 48}, at::kLong);
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t r = 4 + 8 * i;
    x.index({i, at::indexing::Slice(), at::indexing::Slice(r, r + 16), at::indexing::Slice(r, r + 16)}) += 2.0;
    y.index({i, at::indexing::Slice(r, r + 16), at::indexing::Slice(r, r + 16)}) = 1;
  }
  const auto small = models::BackboneOptions("mobilenet_v3_small").output_stride(16);
  for (const std::string name : {"lraspp", "deeplabv3plus"}) {
    INFO(name);
    torch::manual_seed(0);
    std::shared_ptr<torch::nn::Module> module;
    if (name == "lraspp") {
      module = models::LRASPP(models::LRASPPOptions(2).backbone(small)).ptr();
    } else {
      module = models::DeepLabV3Plus(models::DeepLabV3PlusOptions(2).backbone(small)).ptr();
    }
    auto net = models::as_segmentation_network(module);
    torch::optim::Adam opt(module->parameters(), torch::optim::AdamOptions(3e-3));
    module->train();
    double first = 0.0;
    double last = 0.0;
    for (int step = 0; step < 40; ++step) {
      opt.zero_grad();
      const auto loss = at::cross_entropy_loss(net->forward(x), y);
      loss.backward();
      opt.step();
      if (step == 0) first = loss.item<double>();
      last = loss.item<double>();
    }
    INFO("loss " << first << " -> " << last);
    CHECK(last < 0.5 * first);
    // Batch statistics: MobileNetV3's batch norm (momentum 0.01) has barely moved its running
    // statistics in 40 steps, so eval mode would measure that, not what was learnt.
    torch::NoGradGuard no_grad;
    const auto pred = net->forward(x).argmax(1);
    CHECK(pred.eq(y).to(at::kFloat).mean().item<double>() > 0.9);
  }
}
