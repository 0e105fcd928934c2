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

/// Makes LibTorch run the calling thread's operations on that thread alone, leaving the
/// intra-op threads (set_num_threads) to the thread that computes the model. For helper
/// threads such as data::DataLoader's workers: without it each one runs its parallel regions
/// on a team of its own, more threads than cores, and the model's threads wait for the
/// preempted ones at every barrier. Affects only the calling thread.
void use_one_thread_here();

/// Makes glibc's malloc keep freed tensor buffers for reuse instead of handing them back to the
/// kernel: blocks up to 32 MiB come from the heap (not one mmap each) and the heap is trimmed
/// only above 1 GiB of free space. A training or inference loop allocates the same activations
/// every iteration; with glibc's defaults a fresh process maps and page-faults them anew each
/// time (measured: a 1x1 convolution 1024->1024 on 64x64 46-50 -> 33 ms, GEMM 2048³ 420 ->
/// 290 ms on 2 cores). Costs: freed memory stays with the process, up to its peak use. The
/// `ostrov` programs call it at start; call it once at the start of your own program to get
/// the same effect (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ in the environment do the
/// same without code). Returns false (and changes nothing) where the C library is not glibc or
/// malloc is not glibc's (AddressSanitizer's allocator replaces it and ignores mallopt).
bool tune_allocator();

/// Cores available to this process (respects CPU affinity and cgroup-limited sets).
int available_cores();

/// The spdlog logger named "ostrov" (created on first use, coloured stderr sink).
std::shared_ptr<spdlog::logger> logger();

/// Versions and build facts for `ostrov info`: ostrov, LibTorch, OpenCV, BLAS, threads.
struct RuntimeInfo {
  std::string ostrov_version;  ///< ostrov's version (kVersion)
  std::string torch_version;   ///< LibTorch version ostrov was compiled against (TORCH_VERSION)
  std::string opencv_version;  ///< OpenCV version ostrov was compiled against (CV_VERSION)
  std::string blas;         ///< BLAS library libblas.so.3 resolves to at run time
  int intra_op_threads = 1; ///< LibTorch's current intra-op thread count
  int available_cores = 1;  ///< cores available to this process (see available_cores())
  bool cuda = false;        ///< whether LibTorch can use CUDA here
  int cuda_devices = 0;     ///< number of CUDA devices (0 without CUDA)
  bool mkldnn = false;      ///< whether LibTorch was built with MKL-DNN (oneDNN)
  bool openmp = false;      ///< whether LibTorch was built with OpenMP
};
RuntimeInfo runtime_info();

}  // namespace ostrov::core
