#pragma once
// Crash-safe training checkpoints.
//
// A checkpoint is a zip with three records: `payload` (a torch::serialize archive holding the
// model's parameters and buffers, the optimizer state and the RNG state), `meta.json`
// (format version, step, epoch, the config, user fields) and `checksum` (CRC-32 of payload
// and meta.json). It is written to a temporary file in the destination folder, fsynced,
// renamed over the destination and the folder fsynced, so a crash at any moment leaves
// either the old file or the new one, never a partial one.

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

namespace torch::optim {
class Optimizer;
}

namespace ostrov::io {

/// What a checkpoint records besides tensors.
struct CheckpointMeta {
  int64_t step = 0;   ///< optimizer steps done when saved
  int64_t epoch = 0;  ///< epoch a resume continues in (Trainer: the next one after a full epoch)
  nlohmann::json config = nlohmann::json::object();  ///< the run's config
  nlohmann::json extra = nlohmann::json::object();   ///< anything else (best metric, ...)
};

/// Writes model (+ optimizer, + torch's CPU RNG state and each CUDA device's) atomically to
/// `path`.
/// Throws ostrov::IoError naming the path; on failure the previous file is untouched.
void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointMeta& meta);

/// Reads a checkpoint into `model` (and `optimizer`, when given and present), restores the RNG
/// state when `restore_rng`, and returns its meta. Every parameter and buffer is checked by
/// name and shape (the error lists all mismatches) and the checksum is verified, so a
/// truncated, bit-flipped or other-model file is an ostrov::IoError naming the path; the
/// model is left unchanged on error.
CheckpointMeta load_checkpoint(const std::string& path, torch::nn::Module& model,
                               torch::optim::Optimizer* optimizer = nullptr,
                               bool restore_rng = false);

/// Reads only the meta of a checkpoint (verifies the checksum).
CheckpointMeta read_checkpoint_meta(const std::string& path);

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename, fsync
/// folder). Throws ostrov::IoError naming the path.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace ostrov::io
