#pragma once
// The LibTorch API differences ostrov meets between the versions it builds against — Debian
// 12's LibTorch 1.13.1 and Debian 13's 2.6.0 (docs/architecture.md "Platforms"). Internal:
// not part of ostrov's API. Each entry names the versions it covers.

#include <variant>

#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <torch/version.h>

#if __has_include(<c10/util/variant.h>)
#include <c10/util/variant.h>
#endif

namespace ostrov::compat {

/// The module options' variants (Conv2dOptions::padding(), padding_mode()) are c10::variant in
/// LibTorch 1.13 and std::variant in 2.x (2.6 tested). Overload resolution picks the get_if /
/// get that matches the argument; c10's exists only where its header does.
template <typename T, typename Variant>
auto get_if(Variant* variant) {
  using std::get_if;
#if __has_include(<c10/util/variant.h>)
  using c10::get_if;
#endif
  return get_if<T>(variant);
}

template <typename T, typename Variant>
decltype(auto) get(Variant&& variant) {
  using std::get;
#if __has_include(<c10/util/variant.h>)
  using c10::get;
#endif
  return get<T>(std::forward<Variant>(variant));
}

}  // namespace ostrov::compat

// ---- autocast --------------------------------------------------------------------------------
// LibTorch 1.13 to 2.3 have one function per device type (set_cpu_enabled and
// set_autocast_cpu_dtype for the CPU, set_enabled and set_autocast_gpu_dtype for CUDA); 2.4 made
// them take the device type and deprecated the old ones (2.6 tested). Only CPU and CUDA are
// handled: train::parse_precision rejects other device types.

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define OSTROV_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace ostrov::compat {

/// Whether autocast is on for `device` (kCPU or kCUDA).
inline bool autocast_enabled(c10::DeviceType device) {
#ifdef OSTROV_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(device);
#else
  return device == c10::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

/// The lower-precision type autocast casts to on `device` (kCPU or kCUDA).
inline c10::ScalarType autocast_dtype(c10::DeviceType device) {
#ifdef OSTROV_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(device);
#else
  return device == c10::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                              : at::autocast::get_autocast_cpu_dtype();
#endif
}

/// Turns autocast on or off for `device` (kCPU or kCUDA), casting to `dtype`.
inline void set_autocast(c10::DeviceType device, bool enabled, c10::ScalarType dtype) {
#ifdef OSTROV_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(device, dtype);
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == c10::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

}  // namespace ostrov::compat

// ---- c10d process groups -----------------------------------------------------------------
// LibTorch 1.13's ProcessGroupGloo and ProcessGroupNCCL derive from c10d::ProcessGroup; from
// 2.0 they derive from c10d::Backend (ProcessGroup became a front over backends; 2.6 tested).
// Both bases declare the collectives ostrov calls (broadcast, allreduce, barrier). Declared
// here only: the c10d headers stay in the files that use them.

namespace c10d {
class Backend;
class ProcessGroup;
}  // namespace c10d

namespace ostrov::compat {

#if TORCH_VERSION_MAJOR >= 2
using CollectiveGroup = c10d::Backend;
#else
using CollectiveGroup = c10d::ProcessGroup;
#endif

}  // namespace ostrov::compat
