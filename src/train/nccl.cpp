// ProcessGroupNCCL's header compiles only with USE_C10D_NCCL, NCCL's nccl.h and CUDA's headers:
// src/CMakeLists.txt defines OSTROV_WITH_NCCL (and USE_C10D_NCCL) for this file alone where
// LibTorch has CUDA and nccl.h was found, so every other file builds without them.
#include "nccl.h"

#include "ostrov/core/error.h"

#ifdef OSTROV_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace ostrov::train::detail {

bool nccl_compiled() {
#ifdef OSTROV_WITH_NCCL
  return true;
#else
  return false;
#endif
}

c10::intrusive_ptr<compat::CollectiveGroup> make_nccl_group(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
    std::chrono::milliseconds timeout) {
#ifdef OSTROV_WITH_NCCL
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
#else
  (void)store, (void)rank, (void)size, (void)timeout;
  throw Error("this build of ostrov has no NCCL (configure with a CUDA LibTorch and NCCL's "
              "header; `ostrov info` prints nccl)");
#endif
}

}  // namespace ostrov::train::detail
