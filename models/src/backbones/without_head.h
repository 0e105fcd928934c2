#pragma once
// Internal to ostrov::models: loading a torchvision classifier's state_dict into a backbone
// without taking its head, shared by ResNet (fc.*), VGG and AlexNet (classifier.*).

#include <string>

#include <torch/nn/module.h>

#include "ostrov/io/state_dict.h"

namespace ostrov::models::detail {

/// Copies every entry of `state` outside `head_prefix` (e.g. "fc.") into `module`, strictly
/// (ostrov::IoError naming `source` and listing the keys otherwise); `module`'s own head
/// entries, if it has a head, keep their values.
void load_without_head(torch::nn::Module& module, const io::StateDict& state,
                       const std::string& head_prefix, const std::string& source);

}  // namespace ostrov::models::detail
