#pragma once
// Process-wide runtime settings: seeding, threads, logging, versions.

#include <cstdint>
#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace ostrov::core {

/// Seeds torch's default CPU (and CUDA, when present) generators and the std generator that
/// ostrov's data code draws from (see `generator()`), so a run with the same seed repeats.
void seed_everything(uint64_t seed);

/// Sets LibTorch's intra-op threads. `n <= 0` means "the cores available to this process"
/// (sched_getaffinity), which is what users expect; Debian's LibTorch starts with 1.
/// Returns the number set.
int set_num_threads(int n = 0);

/// Cores available to this process (respects CPU affinity and cgroup-limited sets).
int available_cores();

/// The spdlog logger named "ostrov" (created on first use, coloured stderr sink).
std::shared_ptr<spdlog::logger> logger();

/// Versions and build facts for `ostrov info`: ostrov, LibTorch, OpenCV, BLAS, threads.
struct RuntimeInfo {
  std::string ostrov_version;
  std::string torch_version;
  std::string opencv_version;
  std::string blas;         ///< BLAS library libblas.so.3 resolves to at run time
  int intra_op_threads = 1;
  int available_cores = 1;
  bool cuda = false;
  int cuda_devices = 0;
  bool mkldnn = false;
  bool openmp = false;
};
RuntimeInfo runtime_info();

}  // namespace ostrov::core
