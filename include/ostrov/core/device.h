#pragma once
// Device selection from a user-facing string.

#include <string>

#include <c10/core/Device.h>

namespace ostrov::core {

/// Parses "cpu", "cuda", "cuda:N" or "auto" (CUDA when available, else CPU).
/// Throws ostrov::ConfigError for an unknown string, when CUDA is not available, or when
/// the index is beyond the visible devices; the message names the string.
c10::Device parse_device(const std::string& name);

/// True when LibTorch was built with CUDA and at least one device is visible.
bool cuda_available();

}  // namespace ostrov::core
