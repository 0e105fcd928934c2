// models::build's registry: a model kind added by a user builds, validates its keys and gives
// its receptive field like the built-in ones.
#include <catch2/catch.hpp>

#include <ATen/ATen.h>
#include <torch/nn/modules/conv.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/models/build.h"

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
