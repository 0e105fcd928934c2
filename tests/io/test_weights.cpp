#include "catch.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include "ostrov/core/error.h"
#include "ostrov/io/weights.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {
torch::nn::Sequential conv_bn() {
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)),
                               torch::nn::BatchNorm2d(4));
}
}  // namespace

TEST_CASE("module_state_dict has Python's key order, buffers included", "[io][weights]") {
  auto net = conv_bn();
  std::vector<std::string> keys;
  for (const auto& item : io::module_state_dict(*net)) keys.push_back(item.key());
  CHECK(keys == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias",
                                         "1.running_mean", "1.running_var",
                                         "1.num_batches_tracked"});
}

TEST_CASE("load_state_dict_into copies values and converts dtype", "[io][weights]") {
  auto net = conv_bn();
  io::StateDict state;
  for (const auto& item : io::module_state_dict(*net)) {
    state.insert(item.key(), at::full_like(item.value(), 3).to(at::kDouble));
  }
  io::load_state_dict_into(*net, state);
  CHECK(net->named_parameters()["0.weight"].scalar_type() == at::kFloat);
  CHECK(at::all(net->named_parameters()["0.weight"] == 3).item<bool>());
  CHECK(at::all(net->named_buffers()["1.running_var"] == 3).item<bool>());
  CHECK_FALSE(net->named_parameters()["0.weight"].requires_grad() == false);
}

TEST_CASE("strict loading lists every missing, unexpected and wrong-shape key", "[io][weights]") {
  auto net = conv_bn();
  io::StateDict state;
  for (const auto& item : io::module_state_dict(*net)) state.insert(item.key(), item.value().clone());
  state.erase("1.running_var");
  state["0.weight"] = at::zeros({4, 3, 5, 5});
  state.insert("2.weight", at::zeros({1}));
  const auto before = net->named_parameters()["0.bias"].clone();
  try {
    io::load_state_dict_into(*net, state, true, "weights.pth");
    FAIL("expected an error");
  } catch (const IoError& e) {
    const std::string msg = e.what();
    CHECK_THAT(msg, Catch::Contains("weights.pth"));
    CHECK_THAT(msg, Catch::Contains("1.running_var"));
    CHECK_THAT(msg, Catch::Contains("2.weight"));
    CHECK_THAT(msg, Catch::Contains("0.weight: file [4, 3, 5, 5] vs model [4, 3, 3, 3]"));
  }
  CHECK(at::equal(net->named_parameters()["0.bias"], before));  // untouched on error

  // Non-strict: what matches loads, the rest is skipped.
  state["0.bias"] = at::full({4}, 7.0);
  io::load_state_dict_into(*net, state, /*strict=*/false);
  CHECK(at::all(net->named_parameters()["0.bias"] == 7).item<bool>());
}

TEST_CASE("load_weights reads a torch.save(state_dict) file and reports bad ones", "[io][weights]") {
  TempDir dir;
  const std::string good = dir / "good.pth";
  const std::string bad = dir / "bad_shape.pth";
  auto r = test::run_python(dir, R"(
import torch
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
net[1].running_mean.uniform_()
torch.save(net.state_dict(), ')" + good + R"(')
sd = net.state_dict()
sd['0.weight'] = torch.zeros(4, 3, 1, 1)
torch.save(sd, ')" + bad + R"(')
print(float(net[0].weight.sum()), float(net[1].running_mean.sum()))
)");
  REQUIRE(r.exit_code == 0);
  auto net = conv_bn();
  io::load_weights(*net, good);
  const double weight_sum = std::stod(r.output.substr(0, r.output.find(' ')));
  CHECK(net->named_parameters()["0.weight"].sum().item<double>() == Approx(weight_sum).epsilon(1e-6));
  CHECK_THROWS_WITH(io::load_weights(*net, bad),
                    Catch::Contains("bad_shape.pth") && Catch::Contains("0.weight"));
  CHECK_THROWS_WITH(io::load_weights(*net, dir / "none.pth"), Catch::Contains("none.pth"));
}
