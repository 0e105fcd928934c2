#pragma once
// Data-parallel training over PyTorch's c10d with torchrun's conventions: RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT and a TCPStore on rank 0. The collectives run on Gloo
// (CPU tensors, and CUDA tensors through the host) or on NCCL (CUDA tensors, GPU to GPU) where
// ostrov was built with it (nccl_available(); docs/architecture.md, "Data parallel").
//
//   auto env = DistributedEnv::from_environment();   // world_size 1 when the variables are unset
//   DataParallel dp(env, DataParallelOptions().backend(collective_backend("auto", device, "run"))
//                            .device(device));
//   dp.broadcast_module(*model);                     // same start on every rank
//   loss.backward(); dp.average_gradients(*model); optimizer.step();

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/arg.h>
#include <torch/nn/module.h>

namespace ostrov::train {

/// Where this process sits in the job.
struct DistributedEnv {
  int rank = 0;                           ///< this process, 0..world_size-1 (RANK)
  int world_size = 1;                     ///< number of processes (WORLD_SIZE)
  int local_rank = 0;                     ///< rank on this machine (LOCAL_RANK)
  /// processes on this machine (LOCAL_WORLD_SIZE; when unset, world_size: all of them)
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";  ///< host of rank 0's TCPStore (MASTER_ADDR)
  int master_port = 29500;                ///< port of rank 0's TCPStore (MASTER_PORT)
  /// Reads torchrun's variables; missing ones keep the defaults above (a missing LOCAL_RANK
  /// becomes RANK, a missing LOCAL_WORLD_SIZE WORLD_SIZE). ostrov::ConfigError for values that do not parse or are inconsistent
  /// (rank >= world_size), naming the variable.
  static DistributedEnv from_environment();
};

/// The device of this rank. A CUDA device asked for without an index ("cuda", "auto") becomes
/// cuda:(local_rank mod cuda_devices) when world_size > 1, torchrun's one process per GPU; an
/// explicit "cuda:N", the CPU and a single process keep `device`. `requested` is the config's
/// string, `device` its parse (core::parse_device); cuda_devices < 0 asks LibTorch.
c10::Device rank_device(const c10::Device& device, const std::string& requested,
                        const DistributedEnv& env, int64_t cuda_devices = -1);

/// Whether this build of ostrov can make NCCL process groups: LibTorch has CUDA and NCCL, and
/// NCCL's header was found when ostrov was configured (CMake option OSTROV_NCCL; `ostrov info`
/// prints it).
bool nccl_available();

/// Whether ranks of this job share a GPU: more than one process and either a config device
/// with an index ("cuda:0": every rank on it) or more processes on this machine than visible
/// CUDA devices (rank_device's modulo). `cuda_devices` < 0 asks LibTorch.
bool ranks_share_device(const std::string& requested, const DistributedEnv& env,
                        int64_t cuda_devices = -1);

/// ostrov::ConfigError naming `where` unless `name` is "auto", "gloo" or "nccl".
void check_backend_name(const std::string& name, const std::string& where);

/// The c10d backend for `name` on `device`: "gloo" or "nccl" as asked, "auto" is NCCL for a
/// CUDA device where nccl_available() and each rank has a GPU of its own (NCCL refuses two
/// ranks on one GPU; `shared_device`: ranks_share_device), Gloo otherwise. ostrov::ConfigError
/// naming `where` for another name, and for "nccl" on a device that is not CUDA, on a shared
/// GPU or in a build without NCCL.
std::string collective_backend(const std::string& name, const c10::Device& device,
                               const std::string& where, bool shared_device = false);

/// How a DataParallel group is made.
struct DataParallelOptions {
  /// Joining the group and every collective fail with an error instead of hanging once this
  /// passes (e.g. when another rank died).
  TORCH_ARG(std::chrono::milliseconds, timeout) = std::chrono::minutes(5);
  /// "gloo" or "nccl" (collective_backend() picks one from the device).
  TORCH_ARG(std::string, backend) = "gloo";
  /// This rank's device. NCCL reduces tensors on it: all_reduce_sum() and broadcast_module()
  /// copy tensors that are elsewhere (metrics on the host) there and back.
  TORCH_ARG(c10::Device, device) = c10::Device(c10::kCPU);
};

/// A c10d process group and the collectives a trainer needs. With world_size 1 every call is a
/// no-op, so single-process code needs no branches.
class DataParallel {
 public:
  /// Connects to the TCPStore at master_addr:master_port (rank 0 hosts it) and creates a Gloo
  /// group; see the other constructor.
  explicit DataParallel(const DistributedEnv& env,
                        std::chrono::milliseconds timeout = std::chrono::minutes(5));
  /// Connects to the TCPStore at master_addr:master_port (rank 0 hosts it) and creates the
  /// group of options.backend(). ostrov::Error naming the address when it cannot join in time,
  /// ostrov::ConfigError for a backend this build does not have.
  DataParallel(const DistributedEnv& env, const DataParallelOptions& options);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// This process's rank.
  int rank() const { return env_.rank; }
  /// Number of processes in the group.
  int world_size() const { return env_.world_size; }
  /// Whether this is rank 0 (where the Trainer writes checkpoints and logs).
  bool is_main() const { return env_.rank == 0; }
  /// The c10d backend: "gloo" or "nccl".
  const std::string& backend() const { return options_.backend(); }

  /// Copies rank 0's parameters and buffers to every rank.
  void broadcast_module(torch::nn::Module& module);
  /// Averages the gradients of `module`'s parameters over ranks, flattening them into buckets
  /// of at most `bucket_bytes` so each bucket is one all-reduce (a sum, then a division: Gloo
  /// has no AVG).
  /// Parameters without a gradient contribute zeros so every rank reduces the same layout.
  void average_gradients(torch::nn::Module& module, size_t bucket_bytes = 25u << 20);
  /// Sums a tensor over ranks in place (metrics, confusion matrices) and returns it.
  at::Tensor all_reduce_sum(at::Tensor tensor);
  /// Waits until every rank has called it (ostrov::Error when it fails or times out).
  void barrier();

 private:
  struct Impl;
  DistributedEnv env_;
  DataParallelOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ostrov::train
