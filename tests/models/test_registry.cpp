// models::build's registry: a model kind added by a user builds, validates its keys and gives
// its receptive field like the built-in ones.
#include "catch.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/conv.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/models/build.h"
#include "ostrov/models/classifier.h"
#include "ostrov/models/segmentation/pspnet.h"
#include "ostrov/nn/receptive_field.h"
#include "ostrov/models/detection/build.h"
#include "ostrov/models/instance/build.h"

using namespace ostrov;

namespace {

// A 1x1-convolution "segmenter": the smallest SegmentationNetwork.
struct PixelClassifierImpl : torch::nn::Module, models::SegmentationNetwork {
  PixelClassifierImpl(int64_t classes, int64_t width)
      : head(register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, classes, width)
                                                           .padding(width / 2)))),
        classes(classes) {}
  at::Tensor forward(const at::Tensor& x) override { return head->forward(x); }
  int64_t num_classes() const override { return classes; }
  int64_t in_channels() const override { return 3; }
  torch::nn::Conv2d head;
  int64_t classes;
};

models::SegmentationRecipe parse_pixel(io::ConfigReader& r, const std::string&, int64_t classes,
                                       models::InputPadding) {
  const auto width = r.get<int64_t>("width", 1);
  models::SegmentationRecipe recipe;
  recipe.build = [=] { return std::make_shared<PixelClassifierImpl>(classes, width); };
  recipe.layers = [=] {
    return std::vector<nn::LayerSpec>{{"head", "conv", width, 1, width / 2, 1}};
  };
  return recipe;
}

}  // namespace

TEST_CASE("models::register_segmentation_model: a user's model through models::build",
          "[models][registry]") {
  const auto before = models::segmentation_model_names();
  CHECK(before.front() == "unet");
  CHECK(std::find(before.begin(), before.end(), "pspnet") != before.end());
  if (std::find(before.begin(), before.end(), "pixel") == before.end()) {
    models::register_segmentation_model({"pixel", parse_pixel});
  }
  CHECK_THROWS_WITH(models::register_segmentation_model({"pixel", parse_pixel}),
                    Catch::Contains("\"pixel\" exists"));
  CHECK_THROWS_AS(models::register_segmentation_model({"unet", parse_pixel}), Error);

  const auto m = models::build({{"name", "pixel"}, {"width", 3}}, 5, "p.json");
  CHECK(m.name == "pixel");
  CHECK(m.network->num_classes() == 5);
  CHECK(m.forward(at::zeros({1, 3, 8, 8})).sizes() == at::IntArrayRef({1, 5, 8, 8}));
  CHECK(m.module->named_parameters().contains("head.weight"));
  const auto layers = models::receptive_field_layers({{"name", "pixel"}, {"width", 5}}, "p.json");
  REQUIRE(layers.size() == 1);
  CHECK(layers[0].kernel == 5);

  // The common keys and the checks around every entry apply to it too.
  CHECK_THROWS_WITH(models::build({{"name", "pixel"}, {"widht", 3}}, 5, "p.json"),
                    Catch::Contains("p.json") && Catch::Contains("model.widht"));
  CHECK_THROWS_WITH(models::build({{"name", "pixel"}, {"backbone_weights", "r18.pth"}}, 5, "p.json"),
                    Catch::Contains("model.backbone_weights") && Catch::Contains("pixel has no pretrained backbone"));
  CHECK_THROWS_WITH(models::build({{"name", "pixels"}}, 5, "p.json"),
                    Catch::Contains("unknown model \"pixels\"") && Catch::Contains("pixel"));
}

TEST_CASE("models::register_detection_model: a user's SSD configuration through build_detector",
          "[models][registry]") {
  const auto before = models::detection_model_names();
  REQUIRE(before.size() >= 2);
  CHECK(before[0] == "ssd300_vgg16");
  CHECK(before[1] == "ssd_light");
  const models::DetectionModelEntry tiny{"ssd_tiny", [](io::ConfigReader& r, int64_t classes) {
    return models::SSDOptions::light(classes, r.get<int64_t>("side", 64)).backbone_channels(8);
  }};
  if (std::find(before.begin(), before.end(), "ssd_tiny") == before.end()) {
    models::register_detection_model(tiny);
  }
  CHECK_THROWS_WITH(models::register_detection_model(tiny), Catch::Contains("\"ssd_tiny\" exists"));
  auto net = models::build_detector({{"name", "ssd_tiny"}, {"side", 96}, {"nms_threshold", 0.3}}, 4,
                                    "t.json");
  CHECK(net->options.image_size() == 96);
  CHECK(net->options.backbone_channels() == 8);
  CHECK(net->options.postprocess().nms_threshold() == Approx(0.3));  // common keys still read
  CHECK_THROWS_WITH(models::build_detector({{"name", "ssd_tiny"}, {"sied", 96}}, 4, "t.json"),
                    Catch::Contains("t.json") && Catch::Contains("model.sied"));
  CHECK_THROWS_WITH(models::build_detector({{"name", "ssd_huge"}}, 4, "t.json"),
                    Catch::Contains("unknown detector \"ssd_huge\"") && Catch::Contains("ssd_tiny"));
}

TEST_CASE("models::register_instance_model: names in order, unknown names listed",
          "[models][registry]") {
  const auto names = models::instance_model_names();
  REQUIRE(names.size() >= 5);
  CHECK(std::vector<std::string>(names.begin(), names.begin() + 5) ==
        std::vector<std::string>{"deep_coloring", "deep_watershed", "mask_rcnn", "ssd_mask",
                                 "unet_border"});
  CHECK_THROWS_AS(models::register_instance_model({"ssd_mask", [](io::ConfigReader&, int64_t, int64_t) {
                    return models::InstanceRecipe{};
                  }}),
                  Error);
  CHECK_THROWS_WITH(models::build_instance({{"name", "yolact"}}, 3, 64, "i.json"),
                    Catch::Contains("unknown instance model \"yolact\"") &&
                        Catch::Contains("deep_coloring, deep_watershed, mask_rcnn, ssd_mask"));
}

TEST_CASE("One backbone spelling in every model config: backbone, backbone_channels, output_stride",
          "[models][registry][backbones]") {
  // PSPNet: any ResNet, its width, output stride 8 or 16.
  const nlohmann::json psp = {{"name", "pspnet"}, {"backbone", "resnet18"}, {"backbone_channels", 16},
                              {"output_stride", 16}, {"head_channels", 8}, {"aux_channels", 8}};
  const auto m = models::build(psp, 3, "p.json");
  auto* net = m.module->as<models::PSPNetImpl>();
  REQUIRE(net != nullptr);
  CHECK(net->options.output_stride() == 16);
  CHECK(net->backbone->stage_stride("layer4") == 16);
  CHECK(net->backbone->out_channels() == 128);
  m.module->eval();
  CHECK(m.forward(at::zeros({1, 3, 37, 41})).sizes() == at::IntArrayRef({1, 3, 37, 41}));
  CHECK(nn::receptive_fields(models::receptive_field_layers(psp, "p.json")).back().jump == 16);
  CHECK_THROWS_WITH(models::build({{"name", "pspnet"}, {"output_stride", 32}}, 3, "p.json"),
                    Catch::Contains("model.output_stride") && Catch::Contains("pspnet takes 8, 16"));
  CHECK_THROWS_WITH(models::build({{"name", "pspnet"}, {"backbone_depth", 50}}, 3, "p.json"),
                    Catch::Contains("model.backbone_depth is spelled model.backbone = \"resnet50\""));
  // Models with a fixed backbone name it the same way and refuse another.
  CHECK_THROWS_WITH(models::build({{"name", "fcn8s"}, {"backbone", "vgg16"}}, 3, "f.json"),
                    Catch::Contains("model.backbone") && Catch::Contains("fcn8s takes \"alexnet\""));
  CHECK_THROWS_WITH(models::build({{"name", "unet"}, {"backbone", "vgg16"}}, 3, "u.json"),
                    Catch::Contains("unet takes \"none\", \"resnet18\""));
  CHECK(models::build_detector({{"name", "ssd_light"}, {"backbone", "resnet18"}, {"image_size", 64}},
                               3, "d.json")->options.backbone() == "resnet18");
  CHECK_THROWS_WITH(models::build_detector({{"name", "ssd_light"}, {"backbone", "resnet34"}}, 3, "d.json"),
                    Catch::Contains("ssd_light takes \"resnet18\", got \"resnet34\""));
  CHECK_THROWS_WITH(models::detector_options({{"name", "ssd300_vgg16"}, {"backbone_channels", 32}}, 3, "d.json"),
                    Catch::Contains("model.backbone_channels"));
  CHECK_THROWS_WITH(models::check_instance_model({{"name", "ssd_mask"}, {"backbone", "vgg16"}}, 3, 64, "i.json"),
                    Catch::Contains("ssd_mask takes \"resnet18\""));
  CHECK_THROWS_WITH(models::build_classifier({{"name", "resnet18"}, {"base_channels", 8}}, 3, "c.json"),
                    Catch::Contains("model.base_channels is spelled model.backbone_channels"));
}
