#include "ostrov/train/distributed.h"

#include <cstdlib>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/cuda.h>
#include <torch/types.h>

#include "nccl.h"
#include "ostrov/core/error.h"

namespace ostrov::train {

namespace {

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  char* end = nullptr;
  const long parsed = std::strtol(value, &end, 10);
  if (end == value || *end != '\0') {
    throw ConfigError(std::string("environment variable ") + name + "=\"" + value +
                      "\" is not an integer");
  }
  return static_cast<int>(parsed);
}

/// Whether TCPStoreOptions has `useLibUV` (LibTorch >= 2.3; not in 1.13).
template <typename Options, typename = void>
struct HasUseLibUV : std::false_type {};
template <typename Options>
struct HasUseLibUV<Options, std::void_t<decltype(std::declval<Options&>().useLibUV)>>
    : std::true_type {};

/// The TCPStore. LibTorch >= 2.3 asks for its libuv backend by default, which fails at once
/// where LibTorch was built without libuv (Debian 13's 2.6; official builds have it): there
/// the store is made again with the classic backend, which speaks the same protocol
/// (docs/architecture.md, "Platforms").
template <typename Options>
c10::intrusive_ptr<c10d::TCPStore> make_store(const std::string& host, Options options) {
  try {
    return c10::make_intrusive<c10d::TCPStore>(host, options);
  } catch (const c10::Error& e) {
    if constexpr (HasUseLibUV<Options>::value) {
      if (options.useLibUV && std::string(e.what()).find("libuv") != std::string::npos) {
        options.useLibUV = false;
        return c10::make_intrusive<c10d::TCPStore>(host, options);
      }
    }
    throw;
  }
}

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv env;
  env.world_size = env_int("WORLD_SIZE", 1);
  env.rank = env_int("RANK", 0);
  env.local_rank = env_int("LOCAL_RANK", env.rank);
  env.local_world_size = env_int("LOCAL_WORLD_SIZE", env.world_size);
  env.master_port = env_int("MASTER_PORT", env.master_port);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') {
    env.master_addr = addr;
  }
  if (env.world_size < 1) throw ConfigError("WORLD_SIZE must be >= 1, got " + std::to_string(env.world_size));
  if (env.rank < 0 || env.rank >= env.world_size) {
    throw ConfigError("RANK=" + std::to_string(env.rank) + " is outside [0, WORLD_SIZE=" +
                      std::to_string(env.world_size) + ")");
  }
  if (env.local_world_size < 1 || env.local_world_size > env.world_size) {
    throw ConfigError("LOCAL_WORLD_SIZE=" + std::to_string(env.local_world_size) +
                      " is outside [1, WORLD_SIZE=" + std::to_string(env.world_size) + "]");
  }
  if (env.master_port <= 0 || env.master_port > 65535) {
    throw ConfigError("MASTER_PORT=" + std::to_string(env.master_port) + " is not a port");
  }
  return env;
}

c10::Device rank_device(const c10::Device& device, const std::string& requested,
                        const DistributedEnv& env, int64_t cuda_devices) {
  const bool indexed = requested.find(':') != std::string::npos;
  if (env.world_size == 1 || !device.is_cuda() || indexed) return device;
  if (cuda_devices < 0) cuda_devices = static_cast<int64_t>(torch::cuda::device_count());
  if (cuda_devices <= 0) return device;
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank % cuda_devices));
}

bool nccl_available() { return detail::nccl_compiled(); }

void check_backend_name(const std::string& name, const std::string& where) {
  if (name != "auto" && name != "gloo" && name != "nccl") {
    throw ConfigError(where + ": unknown backend \"" + name + "\" (auto, gloo or nccl)");
  }
}

bool ranks_share_device(const std::string& requested, const DistributedEnv& env,
                        int64_t cuda_devices) {
  if (env.world_size == 1) return false;
  if (requested.find(':') != std::string::npos) return true;
  if (cuda_devices < 0) cuda_devices = static_cast<int64_t>(torch::cuda::device_count());
  return env.local_world_size > cuda_devices;
}

std::string collective_backend(const std::string& name, const c10::Device& device,
                               const std::string& where, bool shared_device) {
  check_backend_name(name, where);
  if (name == "auto") {
    return device.is_cuda() && !shared_device && nccl_available() ? "nccl" : "gloo";
  }
  if (name == "nccl") {
    if (!device.is_cuda()) {
      throw ConfigError(where + ": backend \"nccl\" needs a CUDA device, the device is " +
                        device.str() + " (use \"gloo\" or \"auto\")");
    }
    if (shared_device) {
      throw ConfigError(where + ": backend \"nccl\" needs a GPU per process, and ranks here "
                        "share one (an indexed train.device, or more processes than GPUs); "
                        "use \"gloo\" or \"auto\"");
    }
    if (!nccl_available()) {
      throw ConfigError(where + ": backend \"nccl\": this build of ostrov has no NCCL (`ostrov "
                        "info` prints nccl: false); use \"gloo\" or \"auto\"");
    }
  }
  return name;
}

struct DataParallel::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<compat::CollectiveGroup> group;
  std::chrono::milliseconds timeout;
  // Where the group's tensors must be: the rank's CUDA device for NCCL; anywhere for Gloo.
  std::optional<c10::Device> device;

  // `tensor`, or a copy of it on the group's device (written back by unstage()).
  at::Tensor stage(const at::Tensor& tensor) const {
    return device && tensor.device() != *device ? tensor.to(*device) : tensor;
  }
  static void unstage(at::Tensor& tensor, const at::Tensor& staged) {
    if (!staged.is_same(tensor)) tensor.copy_(staged);
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      throw Error(std::string("distributed ") + what + " failed (another rank may have died): " +
                  e.what());
    }
  }
};

DataParallel::DataParallel(const DistributedEnv& env, std::chrono::milliseconds timeout)
    : DataParallel(env, DataParallelOptions().timeout(timeout)) {}

DataParallel::DataParallel(const DistributedEnv& env, const DataParallelOptions& options)
    : env_(env), options_(options), impl_(std::make_unique<Impl>()) {
  const auto timeout = options_.timeout();
  impl_->timeout = timeout;
  if (options_.backend() == "auto") {
    throw ConfigError("DataParallel: backend \"auto\": pick one with collective_backend()");
  }
  // Gloo as is; NCCL where the device and the build allow it (the same errors as the config's).
  const bool nccl = collective_backend(options_.backend(), options_.device(),
                                       "DataParallel") == "nccl";
  if (nccl) impl_->device = options_.device();
  if (env_.world_size == 1) return;
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(env_.master_port);
    options.isServer = env_.rank == 0;
    options.numWorkers = static_cast<size_t>(env_.world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    impl_->store = make_store(env_.master_addr, options);
    if (nccl) {
      impl_->group = detail::make_nccl_group(impl_->store, env_.rank, env_.world_size, timeout);
      return;
    }
    auto group_options = c10d::ProcessGroupGloo::Options::create(timeout);
    group_options->devices.push_back(
        c10d::ProcessGroupGloo::createDeviceForHostname(env_.master_addr == "localhost"
                                                            ? "127.0.0.1"
                                                            : env_.master_addr));
    group_options->threads = 2;
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env_.rank,
                                                               env_.world_size, group_options);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env_.rank) + ": cannot join the process group at " +
                env_.master_addr + ":" + std::to_string(env_.master_port) + " within " +
                std::to_string(timeout.count() / 1000) + " s (WORLD_SIZE=" +
                std::to_string(env_.world_size) + ", MASTER_ADDR=" + env_.master_addr +
                ", MASTER_PORT=" + std::to_string(env_.master_port) +
                "; every rank needs the same values and rank 0 must be running): " + e.what());
  }
}

DataParallel::~DataParallel() = default;

void DataParallel::broadcast_module(torch::nn::Module& module) {
  if (env_.world_size == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> tensors;
  for (auto& p : module.parameters()) tensors.push_back(p);
  for (auto& b : module.buffers()) tensors.push_back(b);
  for (auto& t : tensors) {
    at::Tensor data = t.data();
    std::vector<at::Tensor> one{impl_->stage(data)};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    impl_->wait(impl_->group->broadcast(one, options), "broadcast");
    Impl::unstage(data, one[0]);
  }
}

void DataParallel::average_gradients(torch::nn::Module& module, size_t bucket_bytes) {
  if (env_.world_size == 1) return;
  std::vector<at::Tensor> params;
  for (auto& p : module.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  size_t start = 0;
  while (start < params.size()) {
    // Gather a bucket of consecutive parameters of one dtype up to bucket_bytes.
    size_t end = start;
    size_t bytes = 0;
    const auto dtype = params[start].scalar_type();
    while (end < params.size() && params[end].scalar_type() == dtype &&
           (end == start || bytes + params[end].nbytes() <= bucket_bytes)) {
      bytes += params[end].nbytes();
      ++end;
    }
    std::vector<at::Tensor> grads;
    for (size_t i = start; i < end; ++i) {
      auto& p = params[i];
      grads.push_back(p.grad().defined() ? p.grad().reshape({-1}) : at::zeros({p.numel()}, p.options()));
    }
    std::vector<at::Tensor> flat{impl_->stage(at::cat(grads))};
    impl_->wait(impl_->group->allreduce(flat), "all-reduce");
    flat[0].div_(env_.world_size);
    flat[0] = flat[0].to(params[start].device());
    int64_t offset = 0;
    for (size_t i = start; i < end; ++i) {
      auto& p = params[i];
      auto slice = flat[0].narrow(0, offset, p.numel()).view_as(p);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slice);
      } else {
        p.mutable_grad() = slice.clone();
      }
      offset += p.numel();
    }
    start = end;
  }
}

at::Tensor DataParallel::all_reduce_sum(at::Tensor tensor) {
  if (env_.world_size == 1) return tensor;
  std::vector<at::Tensor> one{impl_->stage(tensor)};
  impl_->wait(impl_->group->allreduce(one), "all-reduce");
  Impl::unstage(tensor, one[0]);
  return tensor;
}

void DataParallel::barrier() {
  if (env_.world_size == 1) return;
  impl_->wait(impl_->group->barrier(), "barrier");
}

}  // namespace ostrov::train
