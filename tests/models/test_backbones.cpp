// Backbones: output and stage shapes, torchvision's exact state_dict keys (names, order and
// shapes, taken at test time from Debian's torchvision 0.14 through /usr/bin/python3),
// torchvision's initialisation, and the output of a dilated ResNet-50 against torchvision's
// with the same deterministic weights.
#include "catch.h"

#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>
#include <torch/utils.h>

#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/alexnet.h"
#include "ostrov/models/backbones/backbone.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/models/backbones/vgg.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

using Entry = std::pair<std::string, at::Tensor>;
using KeyShape = std::pair<std::string, std::vector<int64_t>>;

// Python's Module.state_dict() order: per module its own parameters, then its own buffers,
// then each child recursively (prefixed "child.").
void collect_state(const torch::nn::Module& module, const std::string& prefix,
                   std::vector<Entry>& out) {
  for (const auto& p : module.named_parameters(/*recurse=*/false)) {
    out.emplace_back(prefix + p.key(), p.value());
  }
  for (const auto& b : module.named_buffers(/*recurse=*/false)) {
    out.emplace_back(prefix + b.key(), b.value());
  }
  for (const auto& c : module.named_children()) {
    collect_state(*c.value(), prefix + c.key() + ".", out);
  }
}

std::vector<Entry> state_of(const torch::nn::Module& module) {
  std::vector<Entry> out;
  collect_state(module, "", out);
  return out;
}

std::vector<KeyShape> keys_and_shapes(const std::vector<Entry>& state) {
  std::vector<KeyShape> out;
  for (const auto& e : state) {
    out.emplace_back(e.first, e.second.sizes().vec());
  }
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += (i ? "," : "") + std::to_string(shape[i]);
  }
  return s + "]";
}

// Deterministic value of the k-th state_dict entry (same formula as the Python side):
// conv/linear weights ~ sqrt(2/fan_in) * N-ish, BN weight ~ 1, running_var in [1, 1.2],
// biases and running_mean small. num_batches_tracked is left alone.
const char* const kPythonFill = R"(
import math
def fill(sd):
    for i, (k, v) in enumerate(sd.items()):
        if k.endswith('num_batches_tracked'):
            continue
        b = torch.sin(torch.arange(v.numel(), dtype=torch.float64) * 0.731 + 0.1 * i)
        if v.dim() >= 2:
            t = b * math.sqrt(4.0 / (v.numel() // v.shape[0]))
        elif k.endswith('running_var'):
            t = 1 + 0.2 * b * b
        elif k.endswith('weight'):
            t = 1 + 0.1 * b
        else:
            t = 0.1 * b
        v.copy_(t.reshape(v.shape).float())
)";

void fill_deterministic(const std::vector<Entry>& state) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < state.size(); ++i) {
    const std::string& k = state[i].first;
    at::Tensor v = state[i].second;
    if (k.size() >= 19 && k.compare(k.size() - 19, 19, "num_batches_tracked") == 0) {
      continue;
    }
    const auto ends_with = [&](const std::string& s) {
      return k.size() >= s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0;
    };
    auto b = at::sin(at::arange(v.numel(), at::kDouble) * 0.731 + 0.1 * static_cast<double>(i));
    at::Tensor t;
    if (v.dim() >= 2) {
      t = b * std::sqrt(4.0 / static_cast<double>(v.numel() / v.size(0)));
    } else if (ends_with("running_var")) {
      t = 1 + 0.2 * b * b;
    } else if (ends_with("weight")) {
      t = 1 + 0.1 * b;
    } else {
      t = 0.1 * b;
    }
    v.copy_(t.reshape(v.sizes()).to(at::kFloat));
  }
}

const char* const kPythonInput = R"(
def make_input(n, h, w):
    x = torch.sin(torch.arange(n * 3 * h * w, dtype=torch.float64) * 0.0123)
    return x.reshape(n, 3, h, w).float()
)";

at::Tensor make_input(int64_t n, int64_t h, int64_t w) {
  const auto x = at::sin(at::arange(n * 3 * h * w, at::kDouble) * 0.0123);
  return x.reshape({n, 3, h, w}).to(at::kFloat);
}

struct Reference {
  std::vector<KeyShape> keys;   ///< state_dict keys and shapes, in order
  std::vector<double> output;   ///< flattened model(x) when an input was asked for
};

// Runs torchvision's `builder` (e.g. "resnet50(weights=None)") in /usr/bin/python3 and reads
// back its state_dict keys and shapes; with `input_hw` > 0 also fills the deterministic
// weights and returns the eval-mode output for make_input(1, input_hw, input_hw).
Reference torchvision_reference(const std::string& builder, int64_t input_hw = 0) {
  TempDir dir;
  std::string script = "import torch, torchvision\n";
  script += kPythonFill;
  script += kPythonInput;
  script += "torch.set_grad_enabled(False)\n";
  script += "m = torchvision.models." + builder + ".eval()\n";
  script += "sd = m.state_dict()\n";
  script += "for k, v in sd.items():\n";
  script += "    print('K', k, ','.join(str(d) for d in v.shape))\n";
  if (input_hw > 0) {
    const std::string hw = std::to_string(input_hw);
    script += "fill(sd)\n";
    script += "y = m(make_input(1, " + hw + ", " + hw + "))\n";
    script += "print('O', ' '.join(repr(float(v)) for v in y.flatten()))\n";
  }
  const auto result = test::run_python(dir, script);
  INFO("python output:\n" << result.output);
  REQUIRE(result.exit_code == 0);

  Reference ref;
  std::istringstream lines(result.output);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string tag;
    fields >> tag;
    if (tag == "K") {
      std::string key, shape;
      fields >> key >> shape;  // shape is empty for 0-dim tensors
      std::vector<int64_t> dims;
      std::istringstream ds(shape);
      std::string d;
      while (std::getline(ds, d, ',')) {
        dims.push_back(std::stoll(d));
      }
      ref.keys.emplace_back(key, dims);
    } else if (tag == "O") {
      std::string v;
      while (fields >> v) {
        ref.output.push_back(std::stod(v));
      }
    }
  }
  REQUIRE(!ref.keys.empty());
  return ref;
}

void check_same_keys(const torch::nn::Module& module, const std::vector<KeyShape>& expected) {
  const auto ours = keys_and_shapes(state_of(module));
  CHECK(ours.size() == expected.size());
  const size_t n = std::min(ours.size(), expected.size());
  for (size_t i = 0; i < n; ++i) {
    INFO("entry " << i << ": ostrov " << ours[i].first << " " << shape_string(ours[i].second)
                  << " vs torchvision " << expected[i].first << " "
                  << shape_string(expected[i].second));
    REQUIRE(ours[i].first == expected[i].first);
    REQUIRE(ours[i].second == expected[i].second);
  }
  if (ours.size() > n) {
    FAIL("ostrov has extra entry " << ours[n].first);
  }
  if (expected.size() > n) {
    FAIL("ostrov lacks torchvision's entry " << expected[n].first);
  }
}

std::vector<int64_t> shape(const at::Tensor& t) { return t.sizes().vec(); }

// Lists for use inside Catch's macros (which split braced lists at their commas).
template <typename... T>
std::vector<int64_t> dims(T... d) {
  return {static_cast<int64_t>(d)...};
}
template <typename... T>
std::vector<std::string> names(T... n) {
  return {std::string(n)...};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Output and stage shapes

TEST_CASE("AlexNet gives [N,1000] logits and its stages have the documented shapes",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  models::AlexNet net;  // default options: torchvision's alexnet()
  net->eval();
  const auto x = at::randn({1, 3, 224, 224});
  CHECK(shape(net->forward(x)) == dims(1, 1000));

  const auto f = net->forward_features(x);
  REQUIRE(f.keys() == net->stage_names());
  REQUIRE(f.keys() == names("relu1", "pool1", "relu2", "pool2", "relu3",
                                               "relu4", "relu5", "pool5"));
  CHECK(shape(f["relu1"]) == dims(1, 64, 55, 55));
  CHECK(shape(f["pool1"]) == dims(1, 64, 27, 27));
  CHECK(shape(f["relu2"]) == dims(1, 192, 27, 27));
  CHECK(shape(f["pool2"]) == dims(1, 192, 13, 13));
  CHECK(shape(f["relu5"]) == dims(1, 256, 13, 13));
  CHECK(shape(f["pool5"]) == dims(1, 256, 6, 6));
  CHECK(at::equal(f["pool5"], net->features->forward(x)));
  for (const auto& item : f) {
    CHECK(item.value().size(1) == net->stage_channels(item.key()));
  }
  CHECK(net->stage_index("pool5") == 12);

  const auto some = net->forward_features(x, {"pool2", "relu1"});
  CHECK(some.keys() == names("relu1", "pool2"));
  CHECK(at::equal(some["pool2"], f["pool2"]));
  CHECK_THROWS_AS(net->forward_features(x, {"conv9"}), c10::Error);
  CHECK_THROWS_AS(net->forward(at::randn({1, 4, 64, 64})), c10::Error);

  models::AlexNet small(models::AlexNetOptions().num_classes(10));
  small->eval();
  CHECK(shape(small->forward(at::randn({2, 3, 64, 64}))) == dims(2, 10));
}

TEST_CASE("VGG16-BN gives [N,1000] logits and pool1..pool5 halve the size",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  models::VGG net(models::VGGOptions(16).batch_norm(true));
  net->eval();
  const auto x = at::randn({1, 3, 224, 224});
  CHECK(shape(net->forward(x)) == dims(1, 1000));

  const auto f = net->forward_features(x);
  REQUIRE(f.keys() == net->stage_names());
  CHECK(f.size() == 13 + 5);
  const std::vector<int64_t> channels = {64, 128, 256, 512, 512};
  for (int b = 1; b <= 5; ++b) {
    const auto pool = "pool" + std::to_string(b);
    INFO(pool);
    REQUIRE(f.contains(pool));
    CHECK(shape(f[pool]) == dims(1, channels[b - 1], 224 >> b, 224 >> b));
    const auto first = "relu" + std::to_string(b) + "_1";
    REQUIRE(f.contains(first));
    CHECK(shape(f[first]) ==
          dims(1, channels[b - 1], 224 >> (b - 1), 224 >> (b - 1)));
  }
  CHECK(f.contains("relu4_3"));
  CHECK(!f.contains("relu4_4"));
  for (const auto& item : f) {
    CHECK(item.value().size(1) == net->stage_channels(item.key()));
  }
  CHECK(net->stage_index("relu4_3") == 32);  // vgg16_bn: conv 30, bn 31, relu 32
  CHECK(net->stage_index("pool5") == 43);
  CHECK(at::equal(f["pool5"], net->features->forward(x)));
}

TEST_CASE("VGG without batch norm: vgg16 indices as torchvision, vgg19 stages for Gatys",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  models::VGG vgg16(16);
  CHECK(vgg16->stage_index("relu4_3") == 22);
  CHECK(vgg16->stage_index("pool4") == 23);
  CHECK(vgg16->stage_index("pool5") == 30);

  models::VGG vgg19(models::VGGOptions(19).num_classes(7));
  vgg19->eval();
  const auto x = at::randn({1, 3, 64, 64});
  CHECK(shape(vgg19->forward(x)) == dims(1, 7));
  const auto f = vgg19->forward_features(x, {"relu1_1", "relu2_1", "relu3_1", "relu4_1",
                                             "relu4_2", "relu5_1"});
  CHECK(f.keys() == names("relu1_1", "relu2_1", "relu3_1", "relu4_1",
                                             "relu4_2", "relu5_1"));
  CHECK(shape(f["relu5_1"]) == dims(1, 512, 4, 4));
  CHECK(vgg19->stage_names().size() == 16 + 5);
  CHECK_THROWS_AS(models::VGG(models::VGGOptions(17)), c10::Error);
}

TEST_CASE("ResNet-18 and ResNet-50 give [N,1000] logits and stem, layer1..layer4",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  const auto x = at::randn({1, 3, 224, 224});
  for (const int64_t depth : {18, 50}) {
    INFO("depth " << depth);
    auto net = models::ResNet(models::ResNetOptions(depth));
    net->eval();
    CHECK(shape(net->forward(x)) == dims(1, 1000));
    const auto f = net->forward_features(x);
    REQUIRE(f.keys() ==
            names("stem", "layer1", "layer2", "layer3", "layer4"));
    const int64_t e = depth == 50 ? 4 : 1;
    CHECK(net->expansion() == e);
    CHECK(shape(f["stem"]) == dims(1, 64, 56, 56));
    CHECK(shape(f["layer1"]) == dims(1, 64 * e, 56, 56));
    CHECK(shape(f["layer2"]) == dims(1, 128 * e, 28, 28));
    CHECK(shape(f["layer3"]) == dims(1, 256 * e, 14, 14));
    CHECK(shape(f["layer4"]) == dims(1, 512 * e, 7, 7));
    for (const auto& item : f) {
      CHECK(item.value().size(1) == net->stage_channels(item.key()));
      CHECK(224 / item.value().size(2) == net->stage_stride(item.key()));
    }
    const auto logits = net->fc->forward(net->avgpool->forward(f["layer4"]).flatten(1));
    CHECK(at::allclose(logits, net->forward(x)));
  }
}

TEST_CASE("ResNet base_channels scales every stage and a quarter of the multiply-adds",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  const auto x = at::randn({1, 3, 64, 64});
  auto full = models::ResNet(models::ResNetOptions(18));
  auto half = models::ResNet(models::ResNetOptions(18).base_channels(32));
  half->eval();
  const auto f = half->forward_features(x);
  CHECK(shape(f["stem"]) == dims(1, 32, 16, 16));
  CHECK(shape(f["layer1"]) == dims(1, 32, 16, 16));
  CHECK(shape(f["layer2"]) == dims(1, 64, 8, 8));
  CHECK(shape(f["layer3"]) == dims(1, 128, 4, 4));
  CHECK(shape(f["layer4"]) == dims(1, 256, 2, 2));
  for (const auto& item : f) CHECK(item.value().size(1) == half->stage_channels(item.key()));
  CHECK(shape(half->forward(x)) == dims(1, 1000));
  CHECK(shape(half->fc->weight) == dims(1000, 256));
  CHECK(shape(half->layer2[0]->as<torch::nn::Module>()->named_parameters()["downsample.0.weight"]) ==
        dims(64, 32, 1, 1));
  // Same keys as torchvision's resnet18; every conv weight has a quarter of the entries
  // (the stem's half: its 3 input channels stay).
  const auto fp = full->named_parameters(), hp = half->named_parameters();
  REQUIRE(fp.keys() == hp.keys());
  for (const auto& item : fp) {
    if (item.value().dim() == 4) {
      INFO(item.key());
      CHECK(hp[item.key()].numel() * (item.key() == "conv1.weight" ? 2 : 4) ==
            item.value().numel());
    }
  }
  CHECK_THROWS_WITH(models::ResNet(models::ResNetOptions(18).base_channels(0)),
                    Catch::Contains("base_channels"));
}

TEST_CASE("ResNet-50 with replace_stride_with_dilation {false,true,true} keeps stride 8",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  models::ResNet net(
      models::ResNetOptions(50).replace_stride_with_dilation({false, true, true}));
  net->eval();
  const auto x = at::randn({1, 3, 224, 224});
  const auto f = net->forward_features(x, {"layer3", "layer4"});
  CHECK(f.keys() == names("layer3", "layer4"));
  CHECK(shape(f["layer3"]) == dims(1, 1024, 28, 28));
  CHECK(shape(f["layer4"]) == dims(1, 2048, 28, 28));
  CHECK(net->stage_stride("layer4") == 8);
  CHECK(shape(net->forward(x)) == dims(1, 1000));

  models::ResNet os16(models::ResNetOptions(50).replace_stride_with_dilation({false, false, true}));
  CHECK(os16->stage_stride("layer3") == 16);
  CHECK(os16->stage_stride("layer4") == 16);

  // Unlike torchvision, BasicBlock networks dilate too (see the nostride_dilate test below);
  // like torchvision, the option needs three entries.
  CHECK(models::ResNet(models::ResNetOptions(18).replace_stride_with_dilation({false, true, true}))
            ->stage_stride("layer4") == 8);
  CHECK_THROWS_AS(models::ResNet(models::ResNetOptions(50).replace_stride_with_dilation({true})),
                  c10::Error);
  CHECK_THROWS_AS(models::ResNet(models::ResNetOptions(42)), c10::Error);
}

// ---------------------------------------------------------------------------------------------
// torchvision's state_dict keys, in order, with shapes

TEST_CASE("AlexNet state_dict keys and shapes equal torchvision's alexnet",
          "[models][backbones][python]") {
  const auto ref = torchvision_reference("alexnet(weights=None)");
  models::AlexNet net;
  check_same_keys(*net, ref.keys);
}

TEST_CASE("VGG state_dict keys and shapes equal torchvision's vgg16_bn and vgg19",
          "[models][backbones][python]") {
  {
    const auto ref = torchvision_reference("vgg16_bn(weights=None)");
    models::VGG net(models::VGGOptions(16).batch_norm(true));
    check_same_keys(*net, ref.keys);
  }
  {
    const auto ref = torchvision_reference("vgg19(weights=None)");
    models::VGG net(models::VGGOptions(19));
    check_same_keys(*net, ref.keys);
  }
}

TEST_CASE("ResNet state_dict keys and shapes equal torchvision's resnet18, resnet50, resnext50",
          "[models][backbones][python]") {
  {
    const auto ref = torchvision_reference("resnet18(weights=None)");
    models::ResNet net(models::ResNetOptions(18));
    check_same_keys(*net, ref.keys);
  }
  {
    const auto ref = torchvision_reference("resnet50(weights=None)");
    models::ResNet net(models::ResNetOptions(50));
    check_same_keys(*net, ref.keys);
  }
  {
    const auto ref = torchvision_reference("resnext50_32x4d(weights=None, num_classes=10)");
    models::ResNet net(models::ResNetOptions(50).groups(32).width_per_group(4).num_classes(10));
    check_same_keys(*net, ref.keys);
  }
}

TEST_CASE("Dilated ResNet-50 computes what torchvision's computes with the same weights",
          "[models][backbones][python]") {
  const int64_t hw = 64;
  const auto ref = torchvision_reference(
      "resnet50(weights=None, num_classes=10, replace_stride_with_dilation=[False, True, True])",
      hw);
  models::ResNet net(models::ResNetOptions(50).num_classes(10).replace_stride_with_dilation(
      {false, true, true}));
  check_same_keys(*net, ref.keys);
  net->eval();
  fill_deterministic(state_of(*net));
  torch::NoGradGuard no_grad;
  const auto y = net->forward(make_input(1, hw, hw)).to(at::kDouble).flatten();
  REQUIRE(static_cast<size_t>(y.numel()) == ref.output.size());
  const auto expected = at::tensor(ref.output, at::kDouble);
  const double scale = expected.abs().max().item<double>();
  const double diff = (y - expected).abs().max().item<double>();
  INFO("max |ostrov - torchvision| = " << diff << ", max |torchvision| = " << scale);
  CHECK(scale > 0);
  CHECK(diff <= 1e-4 * scale + 1e-5);
}

// ---------------------------------------------------------------------------------------------
// Initialisation and cloning

TEST_CASE("VGG and ResNet use torchvision's initialisation", "[models][backbones]") {
  torch::NoGradGuard no_grad;
  models::VGG vgg(models::VGGOptions(11).batch_norm(true));
  for (const auto& m : vgg->modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      CHECK(conv->bias.abs().max().item<double>() == 0.0);
      // kaiming_normal_(fan_out, relu): std = sqrt(2 / (out * 3 * 3))
      const double expected = std::sqrt(2.0 / static_cast<double>(conv->weight.size(0) * 9));
      CHECK(conv->weight.std().item<double>() == Approx(expected).epsilon(0.1));
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      CHECK(at::all(bn->weight == 1).item<bool>());
      CHECK(at::all(bn->bias == 0).item<bool>());
    } else if (auto* linear = m->as<torch::nn::Linear>()) {
      CHECK(linear->bias.abs().max().item<double>() == 0.0);
      CHECK(linear->weight.std().item<double>() == Approx(0.01).epsilon(0.05));
    }
  }

  models::ResNet plain(models::ResNetOptions(50));
  const auto p = plain->named_parameters();
  CHECK(at::all(p["layer1.0.bn3.weight"] == 1).item<bool>());
  CHECK(at::all(p["layer1.0.bn1.bias"] == 0).item<bool>());
  CHECK(p["conv1.weight"].std().item<double>() ==
        Approx(std::sqrt(2.0 / (64 * 49))).epsilon(0.1));

  models::ResNet zero(models::ResNetOptions(50).zero_init_residual(true));
  const auto z = zero->named_parameters();
  CHECK(at::all(z["layer1.0.bn3.weight"] == 0).item<bool>());
  CHECK(at::all(z["layer4.2.bn3.weight"] == 0).item<bool>());
  CHECK(at::all(z["layer1.0.bn2.weight"] == 1).item<bool>());

  models::ResNet zero18(models::ResNetOptions(18).zero_init_residual(true));
  CHECK(at::all(zero18->named_parameters()["layer3.1.bn2.weight"] == 0).item<bool>());
  CHECK(at::all(zero18->named_parameters()["layer3.1.bn1.weight"] == 1).item<bool>());
}

TEST_CASE("Backbones clone deeply with equal parameters", "[models][backbones]") {
  models::ResNet net(models::ResNetOptions(18).num_classes(5));
  auto copy = std::dynamic_pointer_cast<models::ResNetImpl>(net->clone());
  REQUIRE(copy != nullptr);
  const auto a = state_of(*net);
  const auto b = state_of(*copy);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].first);
    CHECK(a[i].first == b[i].first);
    CHECK(at::equal(a[i].second, b[i].second));
    CHECK(a[i].second.data_ptr() != b[i].second.data_ptr());
  }

  models::VGG vgg(models::VGGOptions(11));
  auto vgg_copy = std::dynamic_pointer_cast<models::VGGImpl>(vgg->clone());
  REQUIRE(vgg_copy != nullptr);
  CHECK(vgg_copy->stage_names() == vgg->stage_names());
}

// ------------------------------------------------------------------- the Backbone interface

namespace {

// PSPNet's original way of dilating a BasicBlock layer (as the CSAIL/DeepLab code's
// _nostride_dilate): the strided 3x3 conv and the 1x1 downsample lose their stride, the strided
// conv is dilated by d/2 and every other 3x3 conv by d. The reference for ResNet's own
// BasicBlock dilation.
void nostride_dilate(torch::nn::Sequential& layer, int64_t d) {
  for (const auto& module : layer->modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      auto& o = conv->options;
      const bool strided = (*o.stride())[0] == 2;
      if (strided) o.stride(1);
      if ((*o.kernel_size())[0] == 3) {
        const int64_t dilation = strided ? d / 2 : d;
        o.dilation(dilation);
        o.padding(torch::ExpandingArray<2>(dilation));
      }
    }
  }
}

}  // namespace

TEST_CASE("Backbone: ResNet, VGG and AlexNet behind one interface, without their heads",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  const auto x = at::randn({1, 3, 64, 64});
  CHECK(models::backbone_names() ==
        std::vector<std::string>{"resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                 "vgg16", "alexnet", "mobilenet_v3_large", "mobilenet_v3_small",
                                 "mobilenet_v2"});
  // Each family's own output strides and widths (the table of make_backbone).
  CHECK_THROWS_WITH(models::make_backbone(models::BackboneOptions("mobilenet_v2").output_stride(16)),
                    Catch::Contains("mobilenet_v2") && Catch::Contains("32 only") &&
                        Catch::Contains("got 16"));
  CHECK_THROWS_WITH(models::make_backbone(models::BackboneOptions("mobilenet_v3_small").output_stride(8)),
                    Catch::Contains("must be 32 or 16"));
  CHECK_THROWS_WITH(models::make_backbone(models::BackboneOptions("mobilenet_v2").channels(32)),
                    Catch::Contains("backbone_channels must be 64"));
  {
    auto v2 = models::as_backbone(models::make_backbone(models::BackboneOptions("mobilenet_v2")));
    CHECK(v2->stage_names().size() == 19);
    CHECK(v2->stage_channels("13") == 96);
    CHECK(v2->stage_stride("13") == 16);
    CHECK(v2->stage_stride("14") == 32);
    CHECK(v2->out_channels() == 1280);
    const auto f = v2->forward_features(x, {"3", "18"});
    CHECK(f["3"].sizes() == at::IntArrayRef({1, 24, 16, 16}));
    CHECK(f["18"].sizes() == at::IntArrayRef({1, 1280, 2, 2}));
  }
  struct Expect {
    std::string name;
    std::string last;
    int64_t channels, stride, side;
  };
  for (const auto& e : {Expect{"resnet18", "layer4", 512, 32, 2}, Expect{"resnet50", "layer4", 2048, 32, 2},
                        Expect{"vgg16", "pool5", 512, 32, 2}, Expect{"alexnet", "pool5", 256, 32, 1}}) {
    CAPTURE(e.name);
    auto module = models::make_backbone(e.name);
    auto b = models::as_backbone(module);
    CHECK(b->stage_names().back() == e.last);
    CHECK(b->out_channels() == e.channels);
    CHECK(b->stage_stride(e.last) == e.stride);
    const auto f = b->forward_features(x, {e.last});
    CHECK(f[e.last].sizes() == at::IntArrayRef({1, e.channels, e.side, e.side}));
    for (const auto& item : module->named_parameters()) {  // no classifier head
      CHECK(item.key().rfind("fc.", 0) != 0);
      CHECK(item.key().rfind("classifier.", 0) != 0);
    }
  }
  CHECK(models::as_backbone(models::make_backbone(models::BackboneOptions("vgg16")))->stage_stride("relu4_3") == 8);
  CHECK(models::as_backbone(models::make_backbone(models::BackboneOptions("alexnet")))->stage_stride("relu3") == 16);
  // Output stride 16 and 8: the last stages dilated instead of strided.
  auto r50 = models::as_backbone(models::make_backbone(models::BackboneOptions("resnet50").output_stride(16)));
  CHECK(r50->stage_stride("layer3") == 16);
  CHECK(r50->stage_stride("layer4") == 16);
  CHECK(r50->forward_features(x, {"layer4"})["layer4"].size(2) == 4);
  auto r18 = models::as_backbone(models::make_backbone(models::BackboneOptions("resnet18").output_stride(8).channels(16)));
  CHECK(r18->stage_stride("layer4") == 8);
  CHECK(r18->out_channels() == 128);
  CHECK(r18->forward_features(x, {"layer4"})["layer4"].sizes() == at::IntArrayRef({1, 128, 8, 8}));

  CHECK_THROWS_WITH(models::make_backbone(models::BackboneOptions("resnet19")), Catch::Contains("unknown backbone \"resnet19\""));
  CHECK_THROWS_WITH(models::make_backbone(models::BackboneOptions("vgg16").channels(32)),
                    Catch::Contains("backbone_channels must be 64"));
  CHECK_THROWS_WITH(models::make_backbone(models::BackboneOptions("resnet18").output_stride(4)),
                    Catch::Contains("output_stride must be 32, 16 or 8"));
  CHECK_THROWS_WITH(models::make_backbone(models::BackboneOptions("alexnet"))->as<models::AlexNetImpl>()->forward(x),
                    Catch::Contains("backbone without a classifier"));
  CHECK_THROWS_WITH(models::as_backbone(std::make_shared<torch::nn::Module>()),
                    Catch::Contains("not an ostrov backbone"));
}

TEST_CASE("Backbone::load_torchvision takes a classifier's file without its head",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  // A torchvision-layout ResNet-18 with 10 classes: its body loads, its fc is ignored.
  models::ResNet classifier(models::ResNetOptions(18).num_classes(10));
  const auto state = io::module_state_dict(*classifier);
  auto backbone = models::make_backbone(models::BackboneOptions("resnet18"));
  models::as_backbone(backbone)->load_torchvision(state, "r18.pth");
  CHECK(at::equal(backbone->named_parameters()["layer3.1.conv2.weight"],
                  classifier->layer3[1]->named_parameters()["conv2.weight"]));
  // A classifier with another head keeps its own fc.
  models::ResNet other(models::ResNetOptions(18).num_classes(3));
  const auto fc_before = other->fc->weight.clone();
  other->load_torchvision(state, "r18.pth");
  CHECK(at::equal(other->fc->weight, fc_before));
  CHECK(at::equal(other->conv1->weight, classifier->conv1->weight));
  // VGG and AlexNet: features.* must match, classifier.* is ignored.
  models::VGG vgg(models::VGGOptions(16).num_classes(7));
  auto vgg_backbone = models::make_backbone(models::BackboneOptions("vgg16"));
  models::as_backbone(vgg_backbone)->load_torchvision(io::module_state_dict(*vgg), "vgg16.pth");
  CHECK(at::equal(vgg_backbone->named_parameters()["features.28.weight"],
                  vgg->named_parameters()["features.28.weight"]));
  // Another architecture is refused, naming the file and the keys.
  CHECK_THROWS_WITH(models::as_backbone(models::make_backbone(models::BackboneOptions("resnet34")))->load_torchvision(state, "r18.pth"),
                    Catch::Contains("r18.pth") && Catch::Contains("layer1.2.conv1.weight"));
  CHECK_THROWS_WITH(models::as_backbone(models::make_backbone(models::BackboneOptions("alexnet")))->load_torchvision(state, "r18.pth"),
                    Catch::Contains("r18.pth") && Catch::Contains("features.0.weight"));
}

TEST_CASE("ResNet-18/34 dilate as PSPNet's nostride_dilate does (output stride 8 and 16)",
          "[models][backbones]") {
  torch::NoGradGuard no_grad;
  const auto x = at::randn({2, 3, 45, 51});
  for (const int64_t stride : {8, 16}) {
    CAPTURE(stride);
    models::ResNet reference(models::ResNetOptions(18));
    if (stride == 8) nostride_dilate(reference->layer3, 2);
    nostride_dilate(reference->layer4, stride == 8 ? 4 : 2);
    reference->eval();
    models::ResNet dilated(models::ResNetOptions(18).replace_stride_with_dilation({false, stride == 8, true}));
    dilated->load_torchvision(io::module_state_dict(*reference), "reference");
    dilated->eval();
    CHECK(dilated->stage_stride("layer4") == stride);
    const auto want = reference->forward_features(x, {"layer4"})["layer4"];
    const auto got = dilated->forward_features(x, {"layer4"})["layer4"];
    REQUIRE(got.sizes() == want.sizes());
    CHECK(at::allclose(got, want, 1e-5, 1e-6));
  }
}
