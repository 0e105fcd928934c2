// Parity with torchvision: Debian's torchvision 0.14 saves model.state_dict() with random
// weights; ostrov's backbones load the file with no renaming and every tensor matches exactly.
#include "catch.h"

#include <ATen/ATen.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/alexnet.h"
#include "ostrov/models/backbones/resnet.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

// Saves torchvision `builder`'s state_dict (random init, BN stats randomised) to weights.pth,
// each tensor also as raw little-endian bytes for an exact comparison, and the model's output
// on a fixed input to out.bin.
void save_reference(const TempDir& dir, const std::string& builder, int64_t size) {
  auto r = test::run_python(dir, R"(
import torch, torchvision
torch.manual_seed(0)
m = torchvision.models.)" + builder + R"((weights=None).eval()
for name, b in m.named_buffers():
    if b.dtype.is_floating_point:
        b.uniform_(0.5, 1.5)
sd = m.state_dict()
torch.save(sd, 'weights.pth')
with open('keys.txt', 'w') as f:
    for k, v in sd.items():
        f.write(k + ' ' + str(v.dtype) + '\n')
        v.contiguous().numpy().tofile('t_' + k + '.bin')
x = torch.linspace(-1, 1, 3 * )" + std::to_string(size * size) + R"().view(1, 3, )" +
                                      std::to_string(size) + ", " + std::to_string(size) + R"()
with torch.no_grad():
    m(x).numpy().tofile('out.bin')
)");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

void check_exact(const TempDir& dir, torch::nn::Module& model, const std::string& path) {
  io::load_weights(model, path);
  const auto state = io::module_state_dict(model);
  size_t checked = 0;
  std::ifstream keys(dir / "keys.txt");
  std::string key, dtype;
  while (keys >> key >> dtype) {
    const at::Tensor* ours = state.find(key);
    INFO(key);
    REQUIRE(ours != nullptr);
    const std::string raw = test::read_bytes(dir / ("t_" + key + ".bin"));
    auto c = ours->contiguous();
    REQUIRE(raw.size() == c.nbytes());
    CHECK(std::memcmp(raw.data(), c.data_ptr(), raw.size()) == 0);
    ++checked;
  }
  CHECK(checked == state.size());
}

void check_output(const TempDir& dir, torch::nn::Module& model,
                  const std::function<at::Tensor(const at::Tensor&)>& forward, int64_t size) {
  torch::NoGradGuard no_grad;
  model.eval();
  auto x = at::linspace(-1, 1, 3 * size * size).view({1, 3, size, size});
  auto y = forward(x).contiguous();
  const std::string raw = test::read_bytes(dir / "out.bin");
  REQUIRE(raw.size() == y.nbytes());
  auto ref = at::from_blob(const_cast<char*>(raw.data()), y.sizes(), at::kFloat).clone();
  CHECK(at::allclose(y, ref, 1e-4, 1e-4));
}

}  // namespace

TEST_CASE("torchvision AlexNet state_dict loads into ostrov::models::AlexNet exactly", "[parity][models]") {
  TempDir dir;
  std::filesystem::current_path(dir.path());
  save_reference(dir, "alexnet", 224);
  models::AlexNet net;
  check_exact(dir, *net, dir / "weights.pth");
  check_output(dir, *net, [&](const at::Tensor& x) { return net->forward(x); }, 224);
}

TEST_CASE("torchvision ResNet18 state_dict loads into ostrov::models::ResNet exactly", "[parity][models]") {
  TempDir dir;
  std::filesystem::current_path(dir.path());
  save_reference(dir, "resnet18", 96);
  models::ResNet net(models::ResNetOptions(18));
  check_exact(dir, *net, dir / "weights.pth");
  check_output(dir, *net, [&](const at::Tensor& x) { return net->forward(x); }, 96);
}
