// Convolutionalisation parity: torchvision AlexNet (Debian's torchvision 0.14, random weights
// saved with torch.save(model.state_dict())) loaded into the FCN by load_torchvision_alexnet;
// on a 224x224 image the FCN's fc6/fc7 maps are 1x1 and equal the classifier's activations.
#include "catch.h"

#include <filesystem>
#include <string>

#include <ATen/ATen.h>
#include <torch/types.h>

#include "ostrov/core/error.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/models/segmentation/fcn.h"
#include "support.h"

using namespace ostrov;
using Catch::Contains;
using ostrov::test::TempDir;

namespace {

at::Tensor read_reference(const TempDir& dir, const std::string& name, at::IntArrayRef shape) {
  const std::string raw = test::read_bytes(dir / name);
  REQUIRE(raw.size() == static_cast<size_t>(c10::multiply_integers(shape)) * sizeof(float));
  return at::from_blob(const_cast<char*>(raw.data()), shape, at::kFloat).clone();
}

void check_close(const at::Tensor& ours, const at::Tensor& reference) {
  REQUIRE(ours.sizes() == reference.sizes());
  const double scale = reference.abs().max().item<double>();
  REQUIRE(scale > 0.0);
  const double diff = (ours - reference).abs().max().item<double>();
  INFO("max |diff| " << diff << " vs max |ref| " << scale);
  CHECK(diff <= 1e-4 * scale);
}

}  // namespace

TEST_CASE("FCN fc6/fc7 as convolutions equal torchvision AlexNet's classifier activations", "[parity][models][segmentation]") {
  TempDir dir;
  const auto r = test::run_python(dir, R"(
import os, torch, torchvision
os.chdir(os.path.dirname(os.path.abspath(__file__)))
torch.manual_seed(0)
m = torchvision.models.alexnet(weights=None).eval()
torch.save(m.state_dict(), 'alexnet.pth')
x = torch.sin(torch.arange(3 * 224 * 224, dtype=torch.float64) * 0.0123).reshape(1, 3, 224, 224).float()
with torch.no_grad():
    f = torch.flatten(m.avgpool(m.features(x)), 1)
    m.classifier[:3](f).numpy().tofile('fc6.bin')   # Dropout, Linear, ReLU
    m.classifier[:6](f).numpy().tofile('fc7.bin')   # ... Dropout, Linear, ReLU
)");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto fc6_ref = read_reference(dir, "fc6.bin", {1, 4096});
  const auto fc7_ref = read_reference(dir, "fc7.bin", {1, 4096});

  torch::NoGradGuard no_grad;
  const auto x = at::sin(at::arange(3 * 224 * 224, at::kDouble) * 0.0123)
                     .reshape({1, 3, 224, 224})
                     .to(at::kFloat);
  models::FCN net(models::FCNOptions(21).variant("8s"));
  net->eval();
  // Before loading the weights differ (the comparison can fail).
  CHECK((net->forward_fc7(x).flatten(1) - fc7_ref).abs().max().item<double>() > 1e-3);

  net->load_torchvision_alexnet(dir / "alexnet.pth");
  const auto fc6 = at::relu(net->fc6->forward(net->features->forward(x)));
  REQUIRE(fc6.sizes() == at::IntArrayRef({1, 4096, 1, 1}));
  check_close(fc6.flatten(1), fc6_ref);
  const auto fc7 = net->forward_fc7(x);
  REQUIRE(fc7.sizes() == at::IntArrayRef({1, 4096, 1, 1}));
  check_close(fc7.flatten(1), fc7_ref);
  CHECK(net->forward(x).sizes() == at::IntArrayRef({1, 21, 224, 224}));

  // A checkpoint that is not AlexNet's, and an FCN that cannot take its classifier: an
  // AlexNet state_dict rebuilt in memory from the loaded FCN (no second 244 MB read).
  io::StateDict state;
  for (const auto& p : net->features->named_parameters()) {
    state.insert("features." + p.key(), p.value());
  }
  state.insert("classifier.1.weight", net->fc6->weight.reshape({4096, 9216}));
  state.insert("classifier.1.bias", net->fc6->bias);
  state.insert("classifier.4.weight", net->fc7->weight.reshape({4096, 4096}));
  state.insert("classifier.4.bias", net->fc7->bias);
  io::StateDict no_fc7;
  for (const auto& item : state) {
    if (item.key() != "classifier.4.weight") {
      no_fc7.insert(item.key(), item.value());
    }
  }
  CHECK_THROWS_AS(net->load_torchvision_alexnet(no_fc7, "cut.pth"), IoError);
  CHECK_THROWS_WITH(net->load_torchvision_alexnet(no_fc7, "cut.pth"),
                    Contains("cut.pth") && Contains("classifier.4.weight"));
  models::FCN narrow(models::FCNOptions(21).fc_channels(64));
  CHECK_THROWS_WITH(narrow->load_torchvision_alexnet(state, "alexnet.pth"),
                    Contains("alexnet.pth") && Contains("weight"));
}
