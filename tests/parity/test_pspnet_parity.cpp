// PSPNet's dilated backbones against torchvision 0.14 (/usr/bin/python3): ResNet-50 with
// replace_stride_with_dilation=[False, True, True] (the paper's backbone), and ResNet-18 with
// the same stride-to-dilation rewrite applied in Python the way the CSAIL semantic-segmentation
// code does (`_nostride_dilate`), since torchvision's BasicBlock refuses dilation. Random
// weights and batch-norm statistics are saved with torch.save(model.state_dict()) and loaded by
// PSPNet::load_backbone_weights; every stage output must match.
#include "catch.h"

#include <string>

#include <ATen/ATen.h>
#include <torch/types.h>

#include "ostrov/core/error.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/models/build.h"
#include "ostrov/models/segmentation/pspnet.h"
#include "support.h"

using namespace ostrov;
using Catch::Contains;
using ostrov::test::TempDir;

namespace {

const char* const kStages[] = {"stem", "layer1", "layer2", "layer3", "layer4"};

void run_reference(const TempDir& dir, const std::string& builder, bool rewrite) {
  std::string script = R"(
import os, functools, torch, torchvision
os.chdir(os.path.dirname(os.path.abspath(__file__)))
torch.manual_seed(0)
m = torchvision.models.)" + builder + R"(.eval()
def nostride_dilate(mod, dilate):
    if isinstance(mod, torch.nn.Conv2d):
        if mod.stride == (2, 2):
            mod.stride = (1, 1)
            if mod.kernel_size == (3, 3):
                mod.dilation, mod.padding = (dilate // 2, dilate // 2), (dilate // 2, dilate // 2)
        elif mod.kernel_size == (3, 3):
            mod.dilation, mod.padding = (dilate, dilate), (dilate, dilate)
if )" + std::string(rewrite ? "True" : "False") + R"(:
    m.layer3.apply(functools.partial(nostride_dilate, dilate=2))
    m.layer4.apply(functools.partial(nostride_dilate, dilate=4))
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
            mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 1.5)
torch.save(m.state_dict(), 'resnet.pth')
x = torch.sin(torch.arange(3 * 64 * 64, dtype=torch.float64) * 0.0123).reshape(1, 3, 64, 64).float()
with torch.no_grad():
    y = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    y.numpy().tofile('stem.bin')
    for name in ['layer1', 'layer2', 'layer3', 'layer4']:
        y = getattr(m, name)(y)
        y.numpy().tofile(name + '.bin')
)";
  const auto r = test::run_python(dir, script);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

void check_stages(const TempDir& dir, models::PSPNetImpl& net) {
  torch::NoGradGuard no_grad;
  net.eval();
  const auto x = at::sin(at::arange(3 * 64 * 64, at::kDouble) * 0.0123)
                     .reshape({1, 3, 64, 64})
                     .to(at::kFloat);
  const auto stages = net.backbone->forward_features(x);
  for (const char* name : kStages) {
    INFO(name);
    const at::Tensor& ours = stages[name];
    const std::string raw = test::read_bytes(dir / (std::string(name) + ".bin"));
    REQUIRE(raw.size() == ours.nbytes());
    const auto ref = at::from_blob(const_cast<char*>(raw.data()), ours.sizes(), at::kFloat);
    const double scale = ref.abs().max().item<double>();
    const double diff = (ours - ref).abs().max().item<double>();
    INFO("max |diff| " << diff << " vs max |ref| " << scale);
    CHECK(scale > 0.0);
    CHECK(diff <= 1e-4 * scale);
  }
  // Output stride 8: 64x64 -> 8x8 in layer4.
  CHECK(stages["layer4"].size(2) == 8);
}

}  // namespace

TEST_CASE("PSPNet's dilated ResNet-50 equals torchvision's replace_stride_with_dilation", "[parity][models][segmentation]") {
  TempDir dir;
  run_reference(dir, "resnet50(weights=None, replace_stride_with_dilation=[False, True, True])",
                false);
  models::PSPNet net(models::PSPNetOptions(5).backbone_depth(50).head_channels(16)
                         .aux_channels(16));
  const io::StateDict state = io::load_state_dict(dir / "resnet.pth");
  net->load_backbone_weights(state, dir / "resnet.pth");
  check_stages(dir, *net);
  // Another depth's checkpoint: the mismatches are listed by key.
  models::PSPNet r18(models::PSPNetOptions(5).head_channels(8).aux(false));
  CHECK_THROWS_AS(r18->load_backbone_weights(state, "resnet50.pth"), IoError);
  CHECK_THROWS_WITH(r18->load_backbone_weights(state, "resnet50.pth"),
                    Contains("resnet50.pth") && Contains("layer1.0.conv3.weight"));
}

TEST_CASE("PSPNet's dilated ResNet-18 equals torchvision's resnet18 rewritten as DeepLab/CSAIL", "[parity][models][segmentation]") {
  TempDir dir;
  run_reference(dir, "resnet18(weights=None)", true);
  // Through the config builder's model.backbone_weights (which ignores the file's fc.*).
  const auto model = models::build({{"name", "pspnet"},
                                    {"head_channels", 8},
                                    {"aux_channels", 8},
                                    {"backbone_weights", dir / "resnet.pth"}},
                                   5, "run.json");
  auto* net = model.module->as<models::PSPNetImpl>();
  REQUIRE(net != nullptr);
  check_stages(dir, *net);
}
