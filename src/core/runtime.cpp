#include "ostrov/core/runtime.h"

#include <dlfcn.h>
#include <link.h>
#include <sched.h>
#if defined(__linux__)
#include <malloc.h>  // mallopt (glibc)
#endif

#include <mutex>
#include <thread>

#if defined(OSTROV_HAVE_OPENMP)
#include <omp.h>
#endif

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <opencv2/core/version.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "ostrov/core/random.h"
#include "ostrov/version.h"

namespace ostrov::core {

std::mt19937_64& generator() {
  static std::mt19937_64 engine(0x05720f);
  return engine;
}

void seed_everything(uint64_t seed) {
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(seed);
  }
  if (torch::cuda::is_available()) torch::cuda::manual_seed_all(seed);
  generator().seed(seed);
}

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

int set_num_threads(int n) {
  if (n <= 0) n = available_cores();
  at::set_num_threads(n);
  return at::get_num_threads();
}

void use_one_thread_here() {
  // at::get_num_threads() first: it runs LibTorch's once-per-thread initialisation, which
  // would otherwise later reset this thread's OpenMP thread count to the global one.
  (void)at::get_num_threads();
#if defined(OSTROV_HAVE_OPENMP)  // LibTorch built with OpenMP (Debian's is)
  omp_set_num_threads(1);
#endif
}

bool tune_allocator() {
#if defined(__GLIBC__)
  constexpr int kMmapThreshold = 32 << 20;  // glibc's largest allowed value on 64-bit
  constexpr int kTrimThreshold = 1 << 30;
  return mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1;
#else
  return false;
#endif
}

std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto existing = spdlog::get("ostrov");
    if (existing) return existing;
    auto created = spdlog::stderr_color_mt("ostrov");
    created->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%^%l%$] %v");
    return created;
  }();
  return instance;
}

namespace {

// The file libblas.so.3 resolves to in this process (Debian's alternatives choose it).
std::string loaded_blas() {
  std::string found;
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        std::string name = info->dlpi_name ? info->dlpi_name : "";
        auto* out = static_cast<std::string*>(data);
        if (name.find("blas") != std::string::npos && out->empty()) *out = name;
        return 0;
      },
      &found);
  if (found.empty()) return "none loaded";
  char resolved[4096];
  if (realpath(found.c_str(), resolved) != nullptr) return resolved;
  return found;
}

}  // namespace

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.ostrov_version = kVersion;
  info.torch_version = TORCH_VERSION;
  info.opencv_version = CV_VERSION;
  info.blas = loaded_blas();
  info.intra_op_threads = at::get_num_threads();
  info.available_cores = available_cores();
  info.cuda = torch::cuda::is_available();
  info.cuda_devices = info.cuda ? static_cast<int>(torch::cuda::device_count()) : 0;
  info.mkldnn = at::hasMKLDNN();
  info.openmp = at::hasOpenMP();
  return info;
}

}  // namespace ostrov::core
