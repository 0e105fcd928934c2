#pragma once
// Internal: what the segmentation networks built on a torchvision ResNet (PSPNet, ResNetUNet)
// share — loading a classification checkpoint into the encoder without its `fc`, and a deep
// copy that survives the changes they make to the built ResNet (fc removed, dilation).

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <torch/nn/module.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>
#include <torch/utils.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/resnet.h"

namespace ostrov::models::detail {

/// Loads a torchvision ResNet state dict into `resnet` (whose `fc` was removed): `fc.*`
/// entries are ignored, everything else must match. Throws ostrov::IoError naming `source`
/// and every missing, unexpected or wrong-shape key.
void load_resnet_without_fc(ResNetImpl& resnet, const io::StateDict& state,
                            const std::string& source);

/// A deep copy of `self`: a new Impl rebuilt from `self.options`, then every parameter and
/// buffer copied (moved to `device` if given). Cloneable's default clone would call reset()
/// on a copy of the members and miss what the constructor changed after building them.
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
