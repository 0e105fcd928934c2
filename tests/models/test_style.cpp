// Style transfer: VGGFeatures layer names and shapes, equality with torchvision's vgg19
// features (same random weights, saved by Python's torch.save(state_dict) at test time),
// average pooling, weight-file errors, YCrCb against OpenCV, and stylize: losses that fall,
// a zero style loss for identical images, colour preservation and bad inputs.
#include "catch.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <opencv2/imgproc.hpp>
#include <torch/utils.h>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/core/runtime.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/losses/style.h"
#include "ostrov/tasks/style_transfer.h"
#include "ostrov/models/style/vgg_features.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

// Deterministic image [3,H,W] in [0,1] (the Python side builds the same).
at::Tensor pattern(int64_t h, int64_t w, double freq = 0.0123, double phase = 0.0) {
  const auto x = at::sin(at::arange(3 * h * w, at::kDouble) * freq + phase);
  return ((x + 1) / 2).reshape({3, h, w}).to(at::kFloat);
}

double max_abs(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// torchvision vgg19's features (make_layers(cfgs['E']), random weights, seed 0) saved as
// Python's state_dict() OrderedDict plus one classifier key (which load_weights must skip),
// vgg11's features, and vgg19's outputs for pattern(64, 64) at some layers, with max and avg pooling.
const char* const kPythonReference = R"(
import collections, sys, torch, torchvision
out = sys.argv[1]
torch.manual_seed(0)
torch.set_grad_enabled(False)
vgg = torchvision.models.vgg
def features(cfg):  # torchvision's vggN().features without allocating the classifier
    m = torch.nn.Module()
    m.features = vgg.make_layers(vgg.cfgs[cfg])
    return m.eval()
m = features('E')  # vgg19
sd = m.state_dict()  # an OrderedDict, as torchvision's checkpoints
sd['classifier.6.bias'] = torch.zeros(1000)
torch.save(sd, out + '/vgg19.pth')
torch.save(features('A').state_dict(), out + '/vgg11.pth')
x = torch.sin(torch.arange(3 * 64 * 64, dtype=torch.float64) * 0.0123)
x = ((x + 1) / 2).reshape(1, 3, 64, 64).float()
mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
names = {0: 'conv1_1', 3: 'relu1_2', 4: 'pool1', 21: 'conv4_2', 27: 'pool4', 28: 'conv5_1',
         35: 'relu5_4', 36: 'pool5'}
res = {}
for prefix, avg in (('max.', False), ('avg.', True)):
    y = (x - mean) / std
    for i, layer in enumerate(m.features):
        if avg and isinstance(layer, torch.nn.MaxPool2d):
            layer = torch.nn.AvgPool2d(2, 2)
        y = layer(y)
        if i in names:  # torchvision's ReLUs are in-place: copy each output
            res[prefix + names[i]] = y.clone()
torch.save(res, out + '/outputs.pth')
print('OK')
)";

// Runs the script once per test run; its files stay for the later test cases.
struct Reference {
  TempDir dir;
  test::RunResult result;
};

const Reference& reference() {
  static Reference ref;
  static const bool done = [] {
    const std::string script = ref.dir / "reference.py";
    std::ofstream(script) << kPythonReference;
    ref.result = test::run(std::string(OSTROV_PYTHON) + " " + test::quote(script) + " " +
                               test::quote(ref.dir.path().string()),
                           /*merge_stderr=*/true);
    return true;
  }();
  (void)done;
  return ref;
}

}  // namespace

TEST_CASE("VGGFeatures names vgg19's layers conv/relu/pool and returns their shapes",
          "[models][style]") {
  models::VGGFeatures vgg;
  const auto names = vgg->layer_names();
  REQUIRE(names.size() == 37);  // 16 convs + 16 ReLUs + 5 pools
  CHECK(names[0] == "conv1_1");
  CHECK(names[1] == "relu1_1");
  CHECK(names[4] == "pool1");
  CHECK(names[34] == "conv5_4");
  CHECK(names[36] == "pool5");
  CHECK(vgg->layer_index("conv4_2") == 21);
  CHECK(vgg->layer_index("relu5_4") == 35);
  CHECK(vgg->layer_channels("conv3_1") == 256);
  CHECK(models::VGGFeatures(16)->layer_names().size() == 31);

  // torchvision's state_dict keys: features.N.weight/bias for the 16 convs, all frozen.
  const auto params = vgg->named_parameters();
  CHECK(params.size() == 32);
  CHECK(params.contains("features.0.weight"));
  CHECK(params.contains("features.34.bias"));
  for (const auto& p : params) {
    INFO(p.key());
    CHECK_FALSE(p.value().requires_grad());
  }

  torch::NoGradGuard no_grad;
  const auto x = pattern(64, 64).unsqueeze(0);
  const auto out = vgg->forward(x, {"pool5", "relu2_1", "conv1_1", "conv4_2"});
  REQUIRE(out.size() == 4);
  CHECK(out.keys() == std::vector<std::string>{"conv1_1", "relu2_1", "conv4_2", "pool5"});
  CHECK(out["conv1_1"].sizes() == at::IntArrayRef({1, 64, 64, 64}));
  CHECK(out["relu2_1"].sizes() == at::IntArrayRef({1, 128, 32, 32}));
  CHECK(out["conv4_2"].sizes() == at::IntArrayRef({1, 512, 8, 8}));
  CHECK(out["pool5"].sizes() == at::IntArrayRef({1, 512, 2, 2}));
  // Conv outputs are kept before their ReLU: some are negative, the ReLU's are not.
  CHECK(out["conv1_1"].min().item<float>() < 0);
  CHECK(out["relu2_1"].min().item<float>() >= 0);

  // The pass stops at the deepest requested layer: a 1x1 input reaches conv1_1 but cannot be
  // pooled.
  const auto tiny = at::rand({1, 3, 1, 1});
  CHECK(vgg->forward(tiny, {"relu1_2"})["relu1_2"].sizes() == at::IntArrayRef({1, 64, 1, 1}));
  CHECK_THROWS(vgg->forward(tiny, {"pool1"}));

  CHECK_THROWS_WITH(vgg->forward(x, {"conv6_1"}), Catch::Contains("conv6_1") &&
                                                     Catch::Contains("conv5_4"));
  CHECK_THROWS_WITH(vgg->forward(at::rand({1, 1, 8, 8}), {"conv1_1"}),
                    Catch::Contains("[1, 1, 8, 8]"));
  CHECK_THROWS_WITH(models::VGGFeatures(models::VGGFeaturesOptions().pooling("median")),
                    Catch::Contains("median"));
}

TEST_CASE("VGGFeatures equals torchvision's vgg19 features with the same weights",
          "[models][style][python]") {
  const auto& reference_run = reference();
  const auto& dir = reference_run.dir;
  const auto& r = reference_run.result;
  INFO("python output:\n" << r.output);
  REQUIRE(r.exit_code == 0);
  const auto ref = io::load_state_dict(dir / "outputs.pth");
  const auto x = pattern(64, 64).unsqueeze(0);
  for (const std::string pooling : {"max", "avg"}) {
    models::VGGFeatures vgg(models::VGGFeaturesOptions(19).pooling(pooling));
    vgg->load_weights(dir / "vgg19.pth");  // skips classifier.6.bias
    std::vector<std::string> names;
    for (const auto& item : ref) {
      if (item.key().rfind(pooling + ".", 0) == 0) names.push_back(item.key().substr(4));
    }
    REQUIRE(names.size() == 8);
    torch::NoGradGuard no_grad;
    const auto out = vgg->forward(x, names);
    for (const auto& name : names) {
      const auto expected = ref[pooling + "." + name];
      const auto& got = out[name];
      REQUIRE(got.sizes() == expected.sizes());
      const double scale = expected.abs().max().item<double>();
      const double diff = max_abs(got, expected);
      INFO(pooling << " " << name << ": max |ostrov - torchvision| = " << diff << ", scale "
                   << scale);
      CHECK(scale > 0);
      CHECK(diff <= 1e-4 * scale);
    }
  }
  // Average pooling changes what follows the first pool.
  const auto max5 = ref["max.conv5_1"], avg5 = ref["avg.conv5_1"];
  CHECK(max_abs(max5, avg5) > 1e-2 * max5.abs().max().item<double>());
  CHECK(max_abs(ref["max.relu1_2"], ref["avg.relu1_2"]) == 0);
}

TEST_CASE("VGGFeatures::load_weights names the file and lists mismatched keys",
          "[models][style][python]") {
  const auto& reference_run = reference();
  const auto& dir = reference_run.dir;
  const auto& r = reference_run.result;
  REQUIRE(r.exit_code == 0);
  models::VGGFeatures vgg;
  // vgg11's features: features.2 is a pool there (vgg19: a conv), features.3 a conv.
  CHECK_THROWS_AS(vgg->load_weights(dir / "vgg11.pth"), IoError);
  CHECK_THROWS_WITH(vgg->load_weights(dir / "vgg11.pth"),
                    Catch::Contains("vgg11.pth") && Catch::Contains("features.2.weight") &&
                        Catch::Contains("features.3.weight"));
  // A file of another kind of network.
  io::StateDict resnet;
  resnet.insert("conv1.weight", at::zeros({64, 3, 7, 7}));
  resnet.insert("fc.bias", at::zeros({1000}));
  io::save_state_dict(resnet, dir / "resnet.pth");
  CHECK_THROWS_WITH(vgg->load_weights(dir / "resnet.pth"),
                    Catch::Contains("resnet.pth") && Catch::Contains("features.") &&
                        Catch::Contains("conv1.weight"));
  CHECK_THROWS_WITH(vgg->load_weights(dir / "missing.pth"), Catch::Contains("missing.pth"));
  // The right file still loads after the failures.
  vgg->load_weights(dir / "vgg19.pth");
  const auto ref = io::load_state_dict(dir / "vgg19.pth");
  CHECK(max_abs(vgg->named_parameters()["features.34.weight"], ref["features.34.weight"]) == 0);
}

TEST_CASE("rgb_to_ycrcb equals OpenCV's float YCrCb and ycrcb_to_rgb inverts it",
          "[models][style]") {
  const auto rgb = pattern(5, 7, 0.37);  // [3,5,7]
  const auto hwc = rgb.permute({1, 2, 0}).contiguous();
  cv::Mat mat(5, 7, CV_32FC3, hwc.data_ptr<float>());
  cv::Mat ycrcb;
  cv::cvtColor(mat, ycrcb, cv::COLOR_RGB2YCrCb);
  const auto expected =
      at::from_blob(ycrcb.ptr<float>(), {5, 7, 3}, at::kFloat).permute({2, 0, 1}).clone();
  const auto ours = tasks::rgb_to_ycrcb(rgb);
  CHECK(max_abs(ours, expected) < 1e-3);  // OpenCV rounds its coefficients differently
  CHECK(max_abs(tasks::ycrcb_to_rgb(ours), rgb) < 1e-5);
  CHECK(max_abs(tasks::rgb_to_ycrcb(rgb.unsqueeze(0))[0], ours) == 0);
}

TEST_CASE("stylize with Adam lowers the style loss over 5 steps at size 48", "[models][style]") {
  core::seed_everything(1);
  models::VGGFeatures vgg(models::VGGFeaturesOptions(19).pooling("avg"));
  const auto content = pattern(40, 60, 0.0123);
  const auto style = pattern(50, 50, 0.71, 1.0);
  std::vector<tasks::StyleLosses> seen;
  std::vector<int64_t> steps;
  auto options = tasks::StyleTransferOptions()
                     .optimizer("adam")
                     .lr(0.05)
                     .steps(5)
                     .size(48)
                     .callback_every(1)
                     .callback([&](const tasks::StyleTransferProgress& p) {
                       steps.push_back(p.step);
                       seen.push_back(p.losses);
                       CHECK(p.image.sizes() == at::IntArrayRef({3, 32, 48}));
                     });
  const auto result = tasks::stylize(vgg, content, {{style, 1.0}}, options);
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4, 5});
  CHECK(result.steps == 5);
  REQUIRE(result.image.sizes() == at::IntArrayRef({3, 32, 48}));
  CHECK(result.image.min().item<float>() >= 0);
  CHECK(result.image.max().item<float>() <= 1);
  INFO("style loss: start " << result.initial_losses.style << ", step 5 " << seen.back().style
                            << ", end " << result.losses.style);
  CHECK(result.initial_losses.content == Approx(0).margin(1e-12));  // starts at the content
  CHECK(result.initial_losses.style > 0);
  CHECK(seen.back().style < seen.front().style);
  CHECK(result.losses.style < 0.9 * result.initial_losses.style);
  CHECK(result.losses.total ==
        Approx(result.losses.content + 1e6 * result.losses.style).epsilon(1e-4));
}

TEST_CASE("stylize's style term is the mean squared Gram difference, zero for the style itself",
          "[models][style]") {
  core::seed_everything(2);
  models::VGGFeatures vgg;
  const auto content = pattern(32, 32, 0.0123);
  const auto style = pattern(32, 32, 0.5, 2.0);
  auto options = tasks::StyleTransferOptions()
                     .style_layers({"conv1_1", "relu3_1"})
                     .style_layer_weights({1.0, 0.5})
                     .steps(1)
                     .size(32)
                     .init("style");
  const auto result = tasks::stylize(vgg, content, {{style, 1.0}}, options);
  CHECK(result.initial_losses.style == Approx(0).margin(1e-12));
  // From the content instead: the style term against losses::functional (sum over C x C, so
  // divided by C^2 here).
  options.init("content");
  const auto from_content = tasks::stylize(vgg, content, {{style, 1.0}}, options);
  torch::NoGradGuard no_grad;
  const auto fc = vgg->forward(content.unsqueeze(0), {"conv1_1", "relu3_1"});
  const auto fs = vgg->forward(style.unsqueeze(0), {"conv1_1", "relu3_1"});
  const double expected =
      losses::functional::style_loss({fc["conv1_1"]},
                                     {losses::functional::gram_matrix(fs["conv1_1"])})
              .item<double>() /
          (64.0 * 64.0) +
      0.5 *
          losses::functional::style_loss({fc["relu3_1"]},
                                         {losses::functional::gram_matrix(fs["relu3_1"])})
              .item<double>() /
          (256.0 * 256.0);
  CHECK(expected > 0);
  CHECK(from_content.initial_losses.style == Approx(expected).epsilon(1e-4));
}

TEST_CASE("stylize with L-BFGS halves the total loss in 50 steps on a 64x64 pair",
          "[models][style]") {
  core::seed_everything(3);
  models::VGGFeatures vgg(models::VGGFeaturesOptions(19).pooling("avg"));
  const auto content = pattern(64, 64, 0.0123);
  const auto style = pattern(64, 64, 0.71, 1.0);
  // Layers up to conv3_1 keep the 50 steps within a few seconds on one core.
  const auto result = tasks::stylize(vgg, content, {{style, 1.0}},
                                      tasks::StyleTransferOptions()
                                          .style_layers({"conv1_1", "conv2_1", "conv3_1"})
                                          .content_layer("conv3_1")
                                          .steps(50)
                                          .size(64)
                                          .tv_weight(1e-2)
                                          .init("noise"));
  INFO("total loss: start " << result.initial_losses.total << ", end " << result.losses.total);
  CHECK(result.initial_losses.total > 0);
  CHECK(result.losses.total <= 0.5 * result.initial_losses.total);
  CHECK(result.losses.tv > 0);
}

TEST_CASE("stylize with preserve_color keeps the content's Cr and Cb", "[models][style]") {
  core::seed_everything(4);
  models::VGGFeatures vgg;
  cv::Mat chelsea = core::read_image(std::string(OSTROV_SOURCE_DIR) + "/data/chelsea.png");
  cv::resize(chelsea, chelsea, cv::Size(48, 32), 0, 0, cv::INTER_AREA);
  const auto content = core::image_to_tensor(chelsea);
  const auto style = core::image_to_tensor(
      core::read_image(std::string(OSTROV_SOURCE_DIR) + "/data/starry_night.jpg"));
  auto options =
      tasks::StyleTransferOptions().optimizer("adam").lr(0.05).steps(5).size(48).preserve_color(
          true);
  const auto kept = tasks::stylize(vgg, content, {{style, 1.0}}, options);
  const auto plain = tasks::stylize(vgg, content, {{style, 1.0}}, options.preserve_color(false));
  const auto c = tasks::rgb_to_ycrcb(content);
  const auto k = tasks::rgb_to_ycrcb(kept.image);
  const auto p = tasks::rgb_to_ycrcb(plain.image);
  const auto chroma_diff = [&](const at::Tensor& ycrcb) {
    return (ycrcb.narrow(0, 1, 2) - c.narrow(0, 1, 2)).abs().mean().item<double>();
  };
  const double luma_change = (k[0] - c[0]).abs().mean().item<double>();
  INFO("mean |dCrCb|: preserved " << chroma_diff(k) << ", plain " << chroma_diff(p)
                                  << "; mean |dY| preserved " << luma_change);
  CHECK(luma_change > 5e-3);  // the style did change the image
  CHECK(chroma_diff(k) < 1e-2);  // only where clamping to [0,1] bites
  CHECK(chroma_diff(p) > 3 * chroma_diff(k));
}

TEST_CASE("stylize rejects bad inputs with the values", "[models][style]") {
  models::VGGFeatures vgg(models::VGGFeaturesOptions(11));
  const auto image = pattern(16, 16);
  const std::vector<tasks::StyleImage> styles = {{image, 1.0}};
  const auto opts = [] { return tasks::StyleTransferOptions().steps(1).size(16); };
  CHECK_THROWS_WITH(tasks::stylize(vgg, image.unsqueeze(0), styles, opts()),
                    Catch::Contains("[1, 3, 16, 16]"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, {}, opts()), Catch::Contains("no style image"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, {{image.narrow(0, 0, 1), 1.0}}, opts()),
                    Catch::Contains("style image 0") && Catch::Contains("[1, 16, 16]"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, {{image, 0.0}}, opts()),
                    Catch::Contains("sum to 0"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, styles, opts().size(5000)),
                    Catch::Contains("5000"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, styles, opts().size(-1)), Catch::Contains("-1"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, styles, opts().steps(0)),
                    Catch::Contains("steps"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, styles, opts().optimizer("sgd")),
                    Catch::Contains("sgd"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, styles, opts().init("zeros")),
                    Catch::Contains("zeros"));
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, styles, opts().content_layer("conv5_4")),
                    Catch::Contains("conv5_4"));  // vgg11 has conv5_1 and conv5_2 only
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, styles, opts().style_layer_weights({1, 2})),
                    Catch::Contains("2 style layer weights for 5"));
  CHECK_THROWS_AS(core::read_image("/nonexistent/content.png"), IoError);
  c10::InferenceMode inference;
  CHECK_THROWS_WITH(tasks::stylize(vgg, image, styles, opts()),
                    Catch::Contains("InferenceMode"));
}

// Hidden (run with "[benchmark]"): seconds for stylize at 256 px, 10 L-BFGS steps, VGG19.
TEST_CASE("stylize timing at 256 px, 10 L-BFGS steps", "[.][benchmark]") {
  const int threads = core::set_num_threads();
  core::seed_everything(5);
  models::VGGFeatures vgg(models::VGGFeaturesOptions(19).pooling("avg"));
  const auto content = core::image_to_tensor(
      core::read_image(std::string(OSTROV_SOURCE_DIR) + "/data/chelsea.png"));
  const auto style = core::image_to_tensor(
      core::read_image(std::string(OSTROV_SOURCE_DIR) + "/data/starry_night.jpg"));
  const auto start = std::chrono::steady_clock::now();
  const auto result = tasks::stylize(vgg, content, {{style, 1.0}},
                                      tasks::StyleTransferOptions().size(256).steps(10));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  WARN("stylize 256 px (" << result.image.size(2) << "x" << result.image.size(1)
                          << "), 10 L-BFGS steps (" << result.evaluations << " passes), "
                          << threads << " threads: " << seconds
                          << " s; loss " << result.initial_losses.total << " -> "
                          << result.losses.total);
  CHECK(result.losses.total < result.initial_losses.total);
}
