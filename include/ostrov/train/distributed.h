#pragma once
// Data-parallel training over PyTorch's c10d (ProcessGroupGloo: CPU tensors, and CUDA tensors
// where LibTorch has CUDA) with torchrun's
// conventions: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT and a TCPStore on rank 0.
//
//   auto env = DistributedEnv::from_environment();   // world_size 1 when the variables are unset
//   DataParallel dp(env);
//   dp.broadcast_module(*model);                     // same start on every rank
//   loss.backward(); dp.average_gradients(*model); optimizer.step();

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <torch/nn/module.h>

namespace ostrov::train {

/// Where this process sits in the job.
struct DistributedEnv {
  int rank = 0;                           ///< this process, 0..world_size-1 (RANK)
  int world_size = 1;                     ///< number of processes (WORLD_SIZE)
  int local_rank = 0;                     ///< rank on this machine (LOCAL_RANK); unused by ostrov
  std::string master_addr = "127.0.0.1";  ///< host of rank 0's TCPStore (MASTER_ADDR)
  int master_port = 29500;                ///< port of rank 0's TCPStore (MASTER_PORT)
  /// Reads torchrun's variables; missing ones keep the defaults above (a missing LOCAL_RANK
  /// becomes RANK). ostrov::ConfigError for values that do not parse or are inconsistent
  /// (rank >= world_size), naming the variable.
  static DistributedEnv from_environment();
};

/// The device of this rank. A CUDA device asked for without an index ("cuda", "auto") becomes
/// cuda:(local_rank mod cuda_devices) when world_size > 1, torchrun's one process per GPU; an
/// explicit "cuda:N", the CPU and a single process keep `device`. `requested` is the config's
/// string, `device` its parse (core::parse_device); cuda_devices < 0 asks LibTorch.
c10::Device rank_device(const c10::Device& device, const std::string& requested,
                        const DistributedEnv& env, int64_t cuda_devices = -1);

/// A c10d Gloo process group and the collectives a trainer needs. With world_size 1 every
/// call is a no-op, so single-process code needs no branches.
class DataParallel {
 public:
  /// Connects to the TCPStore at master_addr:master_port (rank 0 hosts it) and creates the
  /// group. Every collective fails with an error instead of hanging once `timeout` passes
  /// (e.g. when another rank died).
  explicit DataParallel(const DistributedEnv& env,
                        std::chrono::milliseconds timeout = std::chrono::minutes(5));
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  /// This process's rank.
  int rank() const { return env_.rank; }
  /// Number of processes in the group.
  int world_size() const { return env_.world_size; }
  /// Whether this is rank 0 (where the Trainer writes checkpoints and logs).
  bool is_main() const { return env_.rank == 0; }

  /// Copies rank 0's parameters and buffers to every rank.
  void broadcast_module(torch::nn::Module& module);
  /// Averages the gradients of `module`'s parameters over ranks, flattening them into buckets
  /// of at most `bucket_bytes` so each bucket is one all-reduce (Gloo has no AVG: sum, divide).
  /// Parameters without a gradient contribute zeros so every rank reduces the same layout.
  void average_gradients(torch::nn::Module& module, size_t bucket_bytes = 25u << 20);
  /// Sums a CPU tensor over ranks in place (metrics, confusion matrices) and returns it.
  at::Tensor all_reduce_sum(at::Tensor tensor);
  /// Waits until every rank has called it (ostrov::Error when it fails or times out).
  void barrier();

 private:
  struct Impl;
  DistributedEnv env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ostrov::train
