// torchvision 0.14's MobileNetV2/V3 classifiers and segmentation models (/usr/bin/python3) against
// ostrov's: each built in Python with random weights and random batch-norm statistics (so a
// folded or skipped batch norm cannot hide), saved with torch.save(model.state_dict()), loaded
// here by name with no renaming (models::build's model.weights, io::load_weights), and run in
// eval mode on a 75x93 input (not a multiple of 32): every output must equal torchvision's to
// 1e-4 of its largest magnitude.
#include "catch.h"

#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "ostrov/core/error.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/backbone.h"
#include "ostrov/models/backbones/mobilenet_v2.h"
#include "ostrov/models/backbones/mobilenet_v3.h"
#include "ostrov/models/build.h"
#include "ostrov/models/classifier.h"
#include "support.h"

using namespace ostrov;
using Catch::Contains;
using nlohmann::json;
using ostrov::test::TempDir;

namespace {

constexpr int64_t kH = 75;
constexpr int64_t kW = 93;

// Builds `builder` in Python, randomises it, saves `<name>.pth` and each output as `<name>.<key>.bin`.
void run_reference(const TempDir& dir, const std::string& name, const std::string& builder) {
  const std::string script = R"(
import os, torch, torchvision
from torchvision.models import segmentation
os.chdir(os.path.dirname(os.path.abspath(__file__)))
torch.manual_seed(0)
m = )" + builder + R"(.eval()
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
            mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5)
torch.save(m.state_dict(), ')" + name + R"(.pth')
x = torch.sin(torch.arange(3 * )" + std::to_string(kH * kW) + R"(, dtype=torch.float64) * 0.0123)
x = x.reshape(1, 3, )" + std::to_string(kH) + ", " + std::to_string(kW) + R"().float()
with torch.no_grad():
    y = m(x)
if not isinstance(y, dict):
    y = {'out': y}
for key, value in y.items():
    value.contiguous().numpy().tofile(')" + name + R"(.' + key + '.bin')
)";
  const auto r = test::run_python(dir, script);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

at::Tensor input() {
  return at::sin(at::arange(3 * kH * kW, at::kDouble) * 0.0123).reshape({1, 3, kH, kW}).to(at::kFloat);
}

void check_equal(const TempDir& dir, const std::string& file, const at::Tensor& ours) {
  INFO(file);
  const std::string raw = test::read_bytes(dir / file);
  REQUIRE(raw.size() == ours.nbytes());
  const auto ref = at::from_blob(const_cast<char*>(raw.data()), ours.sizes(), at::kFloat);
  const double scale = ref.abs().max().item<double>();
  const double diff = (ours.contiguous() - ref).abs().max().item<double>();
  INFO("max |diff| " << diff << " vs max |ref| " << scale);
  CHECK(scale > 0.0);
  CHECK(diff <= 1e-4 * scale);
}

}  // namespace

TEST_CASE("MobileNetV3-Large and -Small equal torchvision's classifiers", "[parity][models][backbones]") {
  TempDir dir;
  for (const std::string arch : {"large", "small"}) {
    INFO(arch);
    const std::string name = "mobilenet_v3_" + arch;
    run_reference(dir, name, "torchvision.models." + name + "(weights=None, num_classes=7)");
    models::MobileNetV3 net(models::MobileNetV3Options(arch).num_classes(7));
    io::load_weights(*net, dir / (name + ".pth"), /*strict=*/true);
    net->eval();
    torch::NoGradGuard no_grad;
    check_equal(dir, name + ".out.bin", net->forward(input()));
  }
  // Small's file into large: the mismatching keys are listed with both shapes.
  models::MobileNetV3 large(models::MobileNetV3Options("large").num_classes(7));
  CHECK_THROWS_AS(io::load_weights(*large, dir / "mobilenet_v3_small.pth"), IoError);
  CHECK_THROWS_WITH(io::load_weights(*large, dir / "mobilenet_v3_small.pth"),
                    Contains("mobilenet_v3_small.pth") && Contains("wrong shapes") &&
                        Contains("features.2.block.0.0.weight: file [72, 16, 1, 1] vs model [64, 16, 1, 1]"));
}

TEST_CASE("MobileNetV2 equals torchvision's classifier, MobileNets load through build_classifier",
          "[parity][models][backbones]") {
  TempDir dir;
  for (const std::string name : {"mobilenet_v2", "mobilenet_v3_small"}) {
    INFO(name);
    run_reference(dir, name, "torchvision.models." + name + "(weights=None, num_classes=7)");
    const auto net = models::build_classifier(
        {{"name", name}, {"weights", dir / (name + ".pth")}}, 7, "cls.json");
    CHECK(net.name == name);
    net.module->eval();
    torch::NoGradGuard no_grad;
    check_equal(dir, name + ".out.bin", net.forward(input()));
  }
  // The classification file is a backbone's weights: its features load, the classifier is not
  // needed.
  auto backbone = models::make_backbone(models::BackboneOptions("mobilenet_v2"));
  auto* features = backbone->as<models::MobileNetV2FeaturesImpl>();
  REQUIRE(features != nullptr);
  features->load_torchvision(io::load_state_dict(dir / "mobilenet_v2.pth"), "mobilenet_v2.pth");
  models::MobileNetV2 full(models::MobileNetV2Options().num_classes(7));
  io::load_weights(*full, dir / "mobilenet_v2.pth");
  full->eval();
  features->eval();
  torch::NoGradGuard no_grad;
  CHECK(at::equal(features->forward(input()), full->features->forward(input())));
  CHECK_THROWS_WITH(models::build_classifier({{"name", "mobilenet_v2"},
                                              {"weights", dir / "mobilenet_v3_small.pth"}},
                                             7, "cls.json"),
                    Contains("mobilenet_v3_small.pth") && Contains("features.1.conv.0.0.weight"));
}

TEST_CASE("DeepLabV3, LR-ASPP and FCN equal torchvision's segmentation models", "[parity][models][segmentation]") {
  struct Case {
    std::string name;
    std::string builder;
    json config;
    bool aux;
  };
  const std::vector<Case> cases = {
      {"deeplabv3_mobilenet_v3_large",
       "segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, "
       "num_classes=5, aux_loss=True)",
       {{"name", "deeplabv3"}, {"backbone", "mobilenet_v3_large"}}, true},
      {"lraspp_mobilenet_v3_large",
       "segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, "
       "num_classes=5)",
       {{"name", "lraspp"}}, false},
      {"deeplabv3_resnet50",
       "segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=5, "
       "aux_loss=True)",
       {{"name", "deeplabv3"}, {"backbone", "resnet50"}}, true},
      {"fcn_resnet50",
       "segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=5, "
       "aux_loss=True)",
       {{"name", "fcn"}, {"backbone", "resnet50"}}, true},
      {"deeplabv3_resnet101",
       "segmentation.deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=5, "
       "aux_loss=True)",
       {{"name", "deeplabv3"}, {"backbone", "resnet101"}}, true},
      {"fcn_resnet101",
       "segmentation.fcn_resnet101(weights=None, weights_backbone=None, num_classes=5, "
       "aux_loss=True)",
       {{"name", "fcn"}, {"backbone", "resnet101"}}, true},
  };
  TempDir dir;
  for (const auto& c : cases) {
    INFO(c.name);
    run_reference(dir, c.name, c.builder);
    json config = c.config;
    config["weights"] = dir / (c.name + ".pth");
    const auto model = models::build(config, 5, "run.json");
    model.module->eval();
    torch::NoGradGuard no_grad;
    const auto out = model.forward_with_aux(input());
    check_equal(dir, c.name + ".out.bin", out.main);
    if (c.aux) check_equal(dir, c.name + ".aux.bin", out.aux);
  }
}

TEST_CASE("A torchvision MobileNetV3 classification file is the backbone_weights of DeepLabV3 and LR-ASPP", "[parity][models][segmentation]") {
  TempDir dir;
  run_reference(dir, "classifier", "torchvision.models.mobilenet_v3_large(weights=None)");
  const io::StateDict state = io::load_state_dict(dir / "classifier.pth");
  for (const std::string name : {"deeplabv3", "lraspp"}) {
    INFO(name);
    const auto model = models::build(
        {{"name", name}, {"backbone_weights", dir / "classifier.pth"}}, 3, "run.json");
    const auto params = model.module->named_parameters();
    const auto buffers = model.module->named_buffers();
    CHECK(at::equal(params["backbone.0.0.weight"], state["features.0.0.weight"]));
    CHECK(at::equal(params["backbone.13.block.2.fc2.bias"], state["features.13.block.2.fc2.bias"]));
    CHECK(at::equal(buffers["backbone.16.1.running_var"], state["features.16.1.running_var"]));
  }
  // The small network's file: listed by key and shape, naming the file.
  run_reference(dir, "small", "torchvision.models.mobilenet_v3_small(weights=None)");
  CHECK_THROWS_WITH(models::build({{"name", "lraspp"}, {"backbone_weights", dir / "small.pth"}},
                                  3, "run.json"),
                    Contains("small.pth") && Contains("wrong shapes"));
}
