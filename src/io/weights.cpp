#include "ostrov/io/weights.h"

#include <sstream>
#include <unordered_map>

#include <torch/types.h>
#include <torch/utils.h>

#include "ostrov/core/error.h"
#include "ostrov/core/runtime.h"
#include <spdlog/spdlog.h>

namespace ostrov::io {

namespace {

std::string shape_str(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void append_own(StateDict& out, const std::string& prefix, const torch::nn::Module& m) {
  for (const auto& p : m.named_parameters(/*recurse=*/false)) {
    out.insert(prefix + p.key(), p.value());
  }
  for (const auto& b : m.named_buffers(/*recurse=*/false)) {
    out.insert(prefix + b.key(), b.value());
  }
}

}  // namespace

StateDict module_state_dict(const torch::nn::Module& module) {
  // Python's order: each module's own parameters, then its own buffers, then its children
  // depth-first, which is also the order of torchvision's files.
  StateDict out;
  append_own(out, "", module);
  for (const auto& child : module.named_modules("", /*include_self=*/false)) {
    append_own(out, child.key() + ".", *child.value());
  }
  return out;
}

StateDictDiff compare_state_dict(const torch::nn::Module& module, const StateDict& state) {
  StateDictDiff diff;
  const StateDict own = module_state_dict(module);
  for (const auto& item : own) {
    const at::Tensor* found = state.find(item.key());
    if (found == nullptr) {
      diff.missing.push_back(item.key());
    } else if (found->sizes() != item.value().sizes()) {
      diff.mismatched.push_back(item.key() + ": file " + shape_str(*found) + " vs model " +
                                shape_str(item.value()));
    }
  }
  for (const auto& item : state) {
    if (own.find(item.key()) == nullptr) diff.unexpected.push_back(item.key());
  }
  return diff;
}

namespace {

std::string describe(const StateDictDiff& diff) {
  std::ostringstream os;
  auto list = [&os](const char* what, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    os << "\n  " << what << " (" << keys.size() << "):";
    for (const auto& k : keys) os << "\n    " << k;
  };
  list("missing keys", diff.missing);
  list("unexpected keys", diff.unexpected);
  list("wrong shapes", diff.mismatched);
  return os.str();
}

}  // namespace

void load_state_dict_into(torch::nn::Module& module, const StateDict& state, bool strict,
                          const std::string& source) {
  const StateDictDiff diff = compare_state_dict(module, state);
  if (strict && !diff.empty()) {
    throw IoError(source + ": does not match the model" + describe(diff));
  }
  if (!diff.empty()) {
    core::logger()->warn("{}: loaded non-strictly, skipped:{}", source, describe(diff));
  }
  torch::NoGradGuard no_grad;
  for (auto& item : module_state_dict(module)) {
    const at::Tensor* src = state.find(item.key());
    if (src == nullptr || src->sizes() != item.value().sizes()) continue;
    item.value().copy_(*src);
  }
}

void load_weights(torch::nn::Module& module, const std::string& path, bool strict) {
  load_state_dict_into(module, load_state_dict(path), strict, path);
}

}  // namespace ostrov::io
