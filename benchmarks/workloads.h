#pragma once
// Shared pieces of the ostrov benchmark programs (internal to benchmarks/).
//
// Every workload is a Google Benchmark named "<workload>" (no prefix), timed in real time in
// milliseconds. benchmarks/run.py runs each one alternately with the same work written in
// PyTorch-Python (benchmarks/reference/) and prints the ratio table; the names, sizes and
// inputs here and in benchmarks/reference/workloads.py must stay the same.

#include <cstdint>
#include <string>
#include <utility>

#include <ATen/core/Tensor.h>
#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

namespace ostrov::bench {

/// The `model` object of examples/configs/<config>.json (the models the configs ship), without
/// its `weights` / `backbone_weights` (workloads time freshly initialised models).
nlohmann::json model_config(const std::string& config);

/// A deterministic image [3,H,W] float in [0,1] that benchmarks/reference builds the same way:
/// value(c,y,x) = ((7c + 3y + 5x) mod 256) / 255.
at::Tensor pattern_image(int64_t height, int64_t width);

/// Deterministic random tensors from a seeded generator (the values do not have to match the
/// Python side, only the work does).
at::Tensor seeded_rand(at::IntArrayRef sizes, uint64_t seed);

/// Registers `fn` (callable with benchmark::State&) as workload `name`: real time,
/// milliseconds, one Google Benchmark thread (LibTorch uses its own intra-op threads, set by
/// the program's --threads).
template <class Fn>
benchmark::internal::Benchmark* add(const std::string& name, Fn&& fn) {
  return benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn))
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

}  // namespace ostrov::bench
