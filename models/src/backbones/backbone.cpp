#include "ostrov/models/backbones/backbone.h"

#include <algorithm>
#include <functional>

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/alexnet.h"
#include "ostrov/models/backbones/mobilenet_v2.h"
#include "ostrov/models/backbones/mobilenet_v3.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/models/backbones/vgg.h"
#include "without_head.h"

namespace ostrov::models {

void detail::load_without_head(torch::nn::Module& module, const io::StateDict& state,
                               const std::string& head_prefix, const std::string& source) {
  io::StateDict body;
  for (const auto& item : state) {
    if (item.key().rfind(head_prefix, 0) != 0) body.insert(item.key(), item.value());
  }
  for (const auto& item : io::module_state_dict(module)) {
    if (item.key().rfind(head_prefix, 0) == 0) body.insert(item.key(), item.value());
  }
  io::load_state_dict_into(module, body, /*strict=*/true, source);
}

int64_t BackboneOptions::resnet_depth() const {
  if (name_.rfind("resnet", 0) != 0) return 0;
  for (const int64_t depth : {18, 34, 50, 101, 152}) {
    if (name_ == "resnet" + std::to_string(depth)) return depth;
  }
  return 0;
}

namespace {

/// A family of backbones make_backbone builds: its names, the output strides it can give,
/// whether it takes backbone_channels other than torchvision's, and how to build one.
struct BackboneKind {
  std::vector<std::string> names;
  std::vector<int64_t> output_strides;
  bool any_width;
  std::function<std::shared_ptr<torch::nn::Module>(const BackboneOptions&)> make;
};

const std::vector<BackboneKind>& backbone_kinds() {
  static const std::vector<BackboneKind> kinds = {
      {{"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}, {32, 16, 8}, true,
       [](const BackboneOptions& o) {
         const int64_t stride = o.output_stride();
         return std::make_shared<ResNetImpl>(ResNetOptions(o.resnet_depth())
                                                 .num_classes(0)
                                                 .base_channels(o.channels())
                                                 .replace_stride_with_dilation(
                                                     {false, stride == 8, stride <= 16}));
       }},
      {{"vgg16"}, {32}, false,
       [](const BackboneOptions&) {
         return std::make_shared<VGGImpl>(VGGOptions(16).num_classes(0));
       }},
      {{"alexnet"}, {32}, false,
       [](const BackboneOptions&) {
         return std::make_shared<AlexNetImpl>(AlexNetOptions().num_classes(0));
       }},
      {{"mobilenet_v3_large", "mobilenet_v3_small"}, {32, 16}, false,
       [](const BackboneOptions& o) {
         return std::make_shared<MobileNetV3FeaturesImpl>(
             MobileNetV3Options(o.name()).num_classes(0).dilated(o.output_stride() == 16));
       }},
      {{"mobilenet_v2"}, {32}, false,
       [](const BackboneOptions&) {
         return std::make_shared<MobileNetV2FeaturesImpl>(MobileNetV2Options().num_classes(0));
       }},
  };
  return kinds;
}

std::string describe_strides(const std::vector<int64_t>& strides) {
  if (strides.size() == 1) return std::to_string(strides[0]) + " only";
  std::string out = "must be ";
  for (size_t i = 0; i < strides.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == strides.size() ? " or " : ", ") + std::to_string(strides[i]);
  }
  return out;
}

}  // namespace

std::vector<std::string> backbone_names() {
  std::vector<std::string> names;
  for (const auto& kind : backbone_kinds()) names.insert(names.end(), kind.names.begin(), kind.names.end());
  return names;
}

std::shared_ptr<torch::nn::Module> make_backbone(const BackboneOptions& o) {
  for (const auto& kind : backbone_kinds()) {
    if (std::find(kind.names.begin(), kind.names.end(), o.name()) == kind.names.end()) continue;
    const int64_t stride = o.output_stride();
    const auto& strides = kind.output_strides;
    TORCH_CHECK(std::find(strides.begin(), strides.end(), stride) != strides.end(), "backbone ",
                o.name(), ": output_stride ", describe_strides(strides), " (16 and 8 dilate the "
                "last stages instead of striding them), got ", stride);
    TORCH_CHECK(kind.any_width || o.channels() == 64, "backbone ", o.name(),
                " has torchvision's widths only: backbone_channels must be 64, got ",
                o.channels());
    return kind.make(o);
  }
  TORCH_CHECK(false, "unknown backbone \"", o.name(), "\" (known: ",
              c10::Join(", ", backbone_names()), ")");
}

std::shared_ptr<Backbone> as_backbone(const std::shared_ptr<torch::nn::Module>& module) {
  auto backbone = std::dynamic_pointer_cast<Backbone>(module);
  TORCH_CHECK(backbone != nullptr, "as_backbone: ",
              module ? module->name() : std::string("null module"), " is not an ostrov backbone");
  return backbone;
}

}  // namespace ostrov::models
