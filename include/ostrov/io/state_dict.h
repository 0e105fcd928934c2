#pragma once
// Reading PyTorch `torch.save` files without Python.

#include <string>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/ordered_dict.h>

namespace ostrov::io {

/// Parameter/buffer name -> tensor, in file order; the type of Module::named_parameters().
using StateDict = torch::OrderedDict<std::string, at::Tensor>;

/// Reads what Python's `torch.save(model.state_dict(), path)` writes (a collections.OrderedDict,
/// which `torch::pickle_load` rejects, see pytorch#36577) and plain `dict`s of tensors, from
/// the zip format of torch >= 1.6. Nested dicts (e.g. `{"model": state_dict, ...}`) are
/// flattened with dotted keys ("model.conv1.weight"). Tensors come back on the CPU with the
/// saved dtype, shape and strides (views of one storage share it, as in Python).
///
/// Throws ostrov::IoError naming the path: missing file, truncated or corrupt zip, legacy
/// (pre-1.6) format — with the Python line that re-saves it — or content that is not a
/// dict of tensors.
StateDict load_state_dict(const std::string& path);

/// Writes `state` as a zip that Python reads with `torch.load(path)` (a dict of tensors).
/// Atomic: written to a temporary file, fsynced and renamed. Throws ostrov::IoError.
void save_state_dict(const StateDict& state, const std::string& path);

}  // namespace ostrov::io
