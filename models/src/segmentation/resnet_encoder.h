#pragma once
// Internal: what the segmentation networks built on a torchvision ResNet (PSPNet, ResNetUNet)
// share — a deep copy rebuilt from the options, then every parameter and buffer copied.

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <torch/nn/module.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>
#include <torch/utils.h>


namespace ostrov::models::detail {

/// A deep copy of `self`: a new Impl rebuilt from `self.options`, then every parameter and
/// buffer copied (moved to `device` if given), whatever the members' own clone() does.
template <typename Impl>
std::shared_ptr<torch::nn::Module> rebuild_clone(const Impl& self,
                                                 const c10::optional<torch::Device>& device) {
  torch::NoGradGuard no_grad;
  auto copy = std::make_shared<Impl>(self.options);
  const auto copy_from = [&](const torch::OrderedDict<std::string, at::Tensor>& from,
                             torch::OrderedDict<std::string, at::Tensor> to) {
    for (const auto& item : from) {
      at::Tensor* target = to.find(item.key());
      TORCH_CHECK(target != nullptr, self.name(), "::clone: the copy lacks ", item.key());
      const at::Tensor& t = item.value();
      target->set_data(device && t.device() != *device ? t.to(*device) : t.clone());
    }
  };
  copy_from(self.named_parameters(), copy->named_parameters());
  copy_from(self.named_buffers(), copy->named_buffers());
  copy->train(self.is_training());
  return copy;
}

}  // namespace ostrov::models::detail
