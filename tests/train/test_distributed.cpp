// Data-parallel training over c10d Gloo: 2 processes on 127.0.0.1 against 1 process on the
// concatenated batch. The worker processes are this test executable running the hidden test
// case "[.dp_worker]" with torchrun's environment variables.
#include "catch.h"

#include <cstdlib>
#include <fstream>
#include <random>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/activation.h>
#include <torch/optim/sgd.h>

#include "ostrov/core/error.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/train/distributed.h"
#include "support.h"

using namespace ostrov;

namespace {

torch::nn::Sequential small_net() {
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)),
                               torch::nn::ReLU(),
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 2, 1)));
}

// Global batch for `step`: 4 images, the same on every process.
std::pair<at::Tensor, at::Tensor> global_batch(int step) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  auto x = at::randn({4, 3, 8, 8}, gen);
  auto y = at::randn({4, 2, 8, 8}, gen);
  return {x, y};
}

// Trains 5 SGD steps on rows [begin, begin+count) of each global batch.
void train_steps(torch::nn::Sequential& net, train::DataParallel* dp, int64_t begin, int64_t count) {
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  for (int step = 0; step < 5; ++step) {
    auto [x, y] = global_batch(step);
    opt.zero_grad();
    auto loss = (net->forward(x.narrow(0, begin, count)) - y.narrow(0, begin, count)).pow(2).mean();
    loss.backward();
    if (dp != nullptr) dp->average_gradients(*net, /*bucket_bytes=*/512);  // several buckets
    opt.step();
  }
}

}  // namespace

TEST_CASE("data-parallel worker", "[.dp_worker]") {
  auto env = train::DistributedEnv::from_environment();
  train::DataParallel dp(env, std::chrono::seconds(60));
  at::manual_seed(100 + env.rank);  // different init per rank: broadcast must fix it
  auto net = small_net();
  dp.broadcast_module(*net);
  train_steps(net, &dp, 2 * env.rank, 2);
  auto total = dp.all_reduce_sum(at::full({1}, static_cast<double>(env.rank + 1)));
  REQUIRE(total.item<double>() == 3.0);
  io::save_state_dict(io::module_state_dict(*net), std::getenv("OSTROV_DP_OUT"));
}

TEST_CASE("2-process data parallel equals 1 process on the concatenated batch", "[train][distributed]") {
  test::TempDir dir;
  std::random_device rd;
  const int port = 20000 + static_cast<int>(rd() % 20000);
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string command;
  for (int rank = 0; rank < 2; ++rank) {
    command += "RANK=" + std::to_string(rank) + " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
               std::to_string(port) + " OSTROV_DP_OUT=" + (dir / ("rank" + std::to_string(rank) + ".pt")) +
               " " + exe + " '[.dp_worker]' > " + (dir / ("log" + std::to_string(rank))) + " 2>&1 & ";
  }
  command += "wait";
  REQUIRE(std::system(("bash -c " + test::quote(command)).c_str()) == 0);
  INFO(test::read_bytes(dir / "log0") + test::read_bytes(dir / "log1"));
  REQUIRE(std::filesystem::exists(dir / "rank0.pt"));
  REQUIRE(std::filesystem::exists(dir / "rank1.pt"));
  auto r0 = io::load_state_dict(dir / "rank0.pt");
  auto r1 = io::load_state_dict(dir / "rank1.pt");

  at::manual_seed(100);  // rank 0's init, which the broadcast gave both ranks
  auto reference = small_net();
  train_steps(reference, nullptr, 0, 4);
  for (const auto& item : io::module_state_dict(*reference)) {
    INFO(item.key());
    CHECK(at::equal(r0[item.key()], r1[item.key()]));
    CHECK((r0[item.key()] - item.value()).abs().max().item<double>() <= 1e-5);
  }
}

TEST_CASE("DistributedEnv reads torchrun variables and rejects bad ones", "[train][distributed]") {
  setenv("WORLD_SIZE", "4", 1);
  setenv("RANK", "2", 1);
  setenv("MASTER_PORT", "12345", 1);
  auto env = train::DistributedEnv::from_environment();
  CHECK(env.world_size == 4);
  CHECK(env.rank == 2);
  CHECK(env.local_rank == 2);
  CHECK(env.master_port == 12345);
  setenv("RANK", "4", 1);
  CHECK_THROWS_WITH(train::DistributedEnv::from_environment(), Catch::Contains("RANK=4"));
  setenv("RANK", "x", 1);
  CHECK_THROWS_WITH(train::DistributedEnv::from_environment(), Catch::Contains("RANK=\"x\""));
  unsetenv("WORLD_SIZE");
  unsetenv("RANK");
  unsetenv("MASTER_PORT");
  CHECK(train::DistributedEnv::from_environment().world_size == 1);
  train::DataParallel single(train::DistributedEnv{});
  auto t = at::ones({2});
  CHECK(at::equal(single.all_reduce_sum(t), at::ones({2})));
}

TEST_CASE("rank_device: one GPU per local rank unless the config names one", "[train][distributed]") {
  train::DistributedEnv env;
  env.world_size = 4;
  env.rank = 3;
  env.local_rank = 3;
  const c10::Device cuda0(c10::kCUDA, 0);
  CHECK(train::rank_device(cuda0, "cuda", env, 2) == c10::Device(c10::kCUDA, 1));  // 3 mod 2
  CHECK(train::rank_device(cuda0, "auto", env, 8) == c10::Device(c10::kCUDA, 3));
  CHECK(train::rank_device(c10::Device(c10::kCUDA, 5), "cuda:5", env, 8) ==
        c10::Device(c10::kCUDA, 5));  // an explicit index is kept
  CHECK(train::rank_device(c10::Device(c10::kCPU), "cpu", env, 8) == c10::Device(c10::kCPU));
  CHECK(train::rank_device(c10::Device(c10::kCPU), "auto", env, 0) == c10::Device(c10::kCPU));
  train::DistributedEnv single;
  CHECK(train::rank_device(cuda0, "cuda", single, 8) == cuda0);
}
