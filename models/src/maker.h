#pragma once
// Internal to ostrov::models: the "build" step of a registry entry's recipe.

#include <functional>
#include <memory>

#include <torch/nn/module.h>

namespace ostrov::models::detail {

/// A function that allocates `Impl(options)` as the module the registries hand out.
template <typename Impl, typename Options>
std::function<std::shared_ptr<torch::nn::Module>()> maker(Options options) {
  return [options] { return std::make_shared<Impl>(options); };
}

}  // namespace ostrov::models::detail
