#pragma once
// The NCCL process group (internal to ostrov_core's train/). Compiled with NCCL where CMake
// found it (OSTROV_NCCL; docs/architecture.md, "Data parallel"); elsewhere make_nccl_group
// throws and nccl_available() is false.

#include <chrono>

#include <c10/util/intrusive_ptr.h>

#include "ostrov/core/compat.h"

namespace c10d {
class Store;
}  // namespace c10d

namespace ostrov::train::detail {

/// Whether ostrov was compiled with ProcessGroupNCCL.
bool nccl_compiled();

/// A ProcessGroupNCCL of `size` ranks over `store`; collectives time out after `timeout`.
c10::intrusive_ptr<compat::CollectiveGroup> make_nccl_group(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
    std::chrono::milliseconds timeout);

}  // namespace ostrov::train::detail
