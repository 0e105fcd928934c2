#include "ostrov/core/device.h"

#include <torch/cuda.h>

#include "ostrov/core/error.h"

namespace ostrov::core {

bool cuda_available() { return torch::cuda::is_available(); }

c10::Device parse_device(const std::string& name) {
  if (name == "auto") {
    return cuda_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const c10::Error&) {
    throw ConfigError("unknown device \"" + name + "\": expected cpu, cuda, cuda:N or auto");
  }
  if (device.is_cpu()) {
    if (device.has_index() && device.index() != 0) {
      throw ConfigError("unknown device \"" + name + "\": the CPU has no index other than 0");
    }
    return c10::Device(c10::kCPU);
  }
  if (!device.is_cuda()) {
    throw ConfigError("unsupported device \"" + name + "\": expected cpu, cuda, cuda:N or auto");
  }
  if (!cuda_available()) {
    throw ConfigError("device \"" + name +
                      "\" requested but CUDA is not available (this LibTorch has no CUDA or no "
                      "GPU is visible); use \"cpu\"");
  }
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  const int64_t index = device.has_index() ? device.index() : 0;
  if (index >= count) {
    throw ConfigError("device \"" + name + "\" requested but only " + std::to_string(count) +
                      " CUDA device(s) are visible");
  }
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace ostrov::core
