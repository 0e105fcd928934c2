#pragma once
// Loading weights into modules by name, checking every name and shape.

#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "ostrov/io/state_dict.h"

namespace ostrov::io {

/// The parameters and buffers of `module` as a StateDict (names as in Python's state_dict();
/// buffers that torchvision saves, such as BatchNorm's num_batches_tracked, included).
StateDict module_state_dict(const torch::nn::Module& module);

/// How `state` differs from `module`: names `module` lacks, names `state` lacks, and names
/// present in both with different shapes ("name: file [a,b] vs model [c,d]").
struct StateDictDiff {
  std::vector<std::string> missing;     ///< in the module, not in the file
  std::vector<std::string> unexpected;  ///< in the file, not in the module
  std::vector<std::string> mismatched;  ///< in both, shapes differ
  /// True when `state` matches `module` in every name and shape.
  bool empty() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
};
StateDictDiff compare_state_dict(const torch::nn::Module& module, const StateDict& state);

/// Copies `state` into `module` (no_grad, converting dtype and device to the module's).
/// strict: every key must match in name and shape, otherwise ostrov::IoError lists every
/// missing, unexpected and wrong-shape key together with `source` (a path, for messages).
/// Non-strict: copies the names present in both with equal shapes and logs the rest.
void load_state_dict_into(torch::nn::Module& module, const StateDict& state, bool strict = true,
                          const std::string& source = "state dict");

/// Reads a torchvision/PyTorch `state_dict` file (see load_state_dict) into `module`.
/// Parameter names are torchvision's, so torchvision checkpoints load without renaming.
void load_weights(torch::nn::Module& module, const std::string& path, bool strict = true);

}  // namespace ostrov::io
