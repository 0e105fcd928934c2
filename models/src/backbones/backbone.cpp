#include "ostrov/models/backbones/backbone.h"

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/alexnet.h"
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

std::vector<std::string> backbone_names() {
  return {"resnet18",  "resnet34", "resnet50", "resnet101", "resnet152", "vgg16", "alexnet",
          "mobilenet_v3_large", "mobilenet_v3_small"};
}

std::shared_ptr<torch::nn::Module> make_backbone(const BackboneOptions& o) {
  const int64_t stride = o.output_stride();
  if (const int64_t depth = o.resnet_depth()) {
    TORCH_CHECK(stride == 32 || stride == 16 || stride == 8,
                "backbone ", o.name(), ": output_stride must be 32, 16 or 8, got ", stride);
    return std::make_shared<ResNetImpl>(
        ResNetOptions(depth).num_classes(0).base_channels(o.channels()).replace_stride_with_dilation(
            {false, stride == 8, stride <= 16}));
  }
  const bool mobilenet = o.name() == "mobilenet_v3_large" || o.name() == "mobilenet_v3_small";
  TORCH_CHECK(mobilenet || o.name() == "vgg16" || o.name() == "alexnet", "unknown backbone \"",
              o.name(), "\" (known: ", c10::Join(", ", backbone_names()), ")");
  TORCH_CHECK(o.channels() == 64, "backbone ", o.name(),
              " has torchvision's widths only: backbone_channels must be 64, got ", o.channels());
  if (mobilenet) {
    TORCH_CHECK(stride == 32 || stride == 16, "backbone ", o.name(),
                ": output_stride must be 32, or 16 with the last stage dilated, got ", stride);
    return std::make_shared<MobileNetV3FeaturesImpl>(
        MobileNetV3Options(o.name()).num_classes(0).dilated(stride == 16));
  }
  TORCH_CHECK(stride == 32, "backbone ", o.name(), " has output stride 32 only, got ", stride);
  if (o.name() == "vgg16") return std::make_shared<VGGImpl>(VGGOptions(16).num_classes(0));
  return std::make_shared<AlexNetImpl>(AlexNetOptions().num_classes(0));
}

std::shared_ptr<Backbone> as_backbone(const std::shared_ptr<torch::nn::Module>& module) {
  auto backbone = std::dynamic_pointer_cast<Backbone>(module);
  TORCH_CHECK(backbone != nullptr, "as_backbone: ",
              module ? module->name() : std::string("null module"), " is not an ostrov backbone");
  return backbone;
}

}  // namespace ostrov::models
