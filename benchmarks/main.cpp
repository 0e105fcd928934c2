// ostrov_bench: Google Benchmark programs for ostrov's models, ops, metrics and data loader.
//
//   ostrov_bench [--threads N] [--glibc-malloc-defaults] [Google Benchmark flags, e.g.
//                --benchmark_filter=^nms_10k$]
//
// --threads sets LibTorch's intra-op threads (default: every available core); the Python
// reference side uses the same number. Like the `ostrov` programs, it calls
// core::tune_allocator() at start unless --glibc-malloc-defaults is given. `make bench` (benchmarks/run.py) is the usual entry.
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>

#include "ostrov/core/runtime.h"
#include "ostrov/io/json.h"
#include "workloads.h"

namespace ostrov::bench {

nlohmann::json model_config(const std::string& config) {
  const std::string path = std::string(OSTROV_SOURCE_DIR) + "/examples/configs/" + config + ".json";
  auto model = io::read_json(path).at("model");
  // Timed with fresh weights: the configs' starting files need not exist here.
  model.erase("weights");
  model.erase("backbone_weights");
  return model;
}

at::Tensor pattern_image(int64_t height, int64_t width) {
  auto c = at::arange(3, at::kLong).view({3, 1, 1});
  auto y = at::arange(height, at::kLong).view({1, height, 1});
  auto x = at::arange(width, at::kLong).view({1, 1, width});
  return (7 * c + 3 * y + 5 * x).remainder(256).to(at::kFloat).div_(255.0);
}

at::Tensor seeded_rand(at::IntArrayRef sizes, uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::rand(sizes, generator, at::TensorOptions().dtype(at::kFloat));
}

}  // namespace ostrov::bench

int main(int argc, char** argv) {
  int threads = 0;
  bool glibc_defaults = false;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--glibc-malloc-defaults") == 0) {
      glibc_defaults = true;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else {
      rest.push_back(argv[i]);
    }
  }
  ostrov::core::set_num_threads(threads);
  // What the ostrov programs do at start; --glibc-malloc-defaults measures without it.
  if (!glibc_defaults) ostrov::core::tune_allocator();
  benchmark::AddCustomContext("tuned_allocator", glibc_defaults ? "no" : "yes");
  benchmark::AddCustomContext("intra_op_threads", std::to_string(at::get_num_threads()));
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
