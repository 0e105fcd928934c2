#include "backbone_keys.h"

#include <algorithm>
#include <array>
#include <utility>

#include <c10/util/Exception.h>

#include "ostrov/core/error.h"
#include "ostrov/models/backbones/mobilenet_v3.h"

namespace ostrov::models::detail {

namespace {

template <typename T>
std::string join(const std::vector<T>& values) {
  std::string out;
  for (const auto& v : values) {
    std::string s;
    if constexpr (std::is_same_v<T, std::string>) {
      s = "\"" + v + "\"";
    } else {
      s = std::to_string(v);
    }
    out += (out.empty() ? "" : ", ") + s;
  }
  return out;
}

}  // namespace

std::vector<std::string> resnet_names() {
  return {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"};
}

BackboneOptions read_backbone(io::ConfigReader& r, const std::string& model,
                              BackboneOptions o, const BackboneChoices& choices) {
  o.name(r.get<std::string>("backbone", o.name()));
  const auto& names = choices.names;
  if (std::find(names.begin(), names.end(), o.name()) == names.end()) {
    throw ConfigError(r.where() + ": key " + r.path_of("backbone") + ": " + model + " takes " +
                      join(names) + ", got \"" + o.name() + "\"");
  }
  if (choices.channels) {
    o.channels(r.get<int64_t>("backbone_channels", o.channels()));
    if (o.channels() < 1) {
      throw ConfigError(r.where() + ": key " + r.path_of("backbone_channels") +
                        " must be positive, got " + std::to_string(o.channels()));
    }
  }
  if (!choices.output_strides.empty()) {
    o.output_stride(r.get<int64_t>("output_stride", o.output_stride()));
    const auto& strides = choices.output_strides;
    if (std::find(strides.begin(), strides.end(), o.output_stride()) == strides.end()) {
      throw ConfigError(r.where() + ": key " + r.path_of("output_stride") + ": " + model +
                        " takes " + join(strides) + ", got " + std::to_string(o.output_stride()));
    }
  }
  return o;
}

nn::LayerSpec conv(std::string name, int64_t k, int64_t stride, int64_t padding,
                   int64_t dilation) {
  return nn::LayerSpec{std::move(name), "conv", k, stride, padding, dilation};
}

nn::LayerSpec pool(std::string name, int64_t k, int64_t stride, int64_t padding) {
  return nn::LayerSpec{std::move(name), "pool", k, stride, padding, 1};
}

std::vector<nn::LayerSpec> resnet_layers(int64_t depth, int64_t output_stride) {
  std::array<int64_t, 4> blocks{};
  bool basic = false;
  switch (depth) {
    case 18:
      blocks = {2, 2, 2, 2};
      basic = true;
      break;
    case 34:
      blocks = {3, 4, 6, 3};
      basic = true;
      break;
    case 50:
      blocks = {3, 4, 6, 3};
      break;
    case 101:
      blocks = {3, 4, 23, 3};
      break;
    case 152:
      blocks = {3, 8, 36, 3};
      break;
    default:
      TORCH_CHECK(false, "ResNet depth must be 18, 34, 50, 101 or 152, got ", depth);
  }
  std::vector<nn::LayerSpec> layers{conv("conv1", 7, 2, 3), pool("maxpool", 3, 2, 1)};
  // Per layer: stride of its first block, dilation of the first block's strided 3x3 conv and
  // of every other 3x3 conv (layer3/layer4 dilated instead of strided).
  using Plan = std::array<std::array<int64_t, 3>, 4>;
  const Plan plan =
      output_stride == 8    ? Plan{{{1, 1, 1}, {2, 1, 1}, {1, 1, 2}, {1, 2, 4}}}
      : output_stride == 16 ? Plan{{{1, 1, 1}, {2, 1, 1}, {2, 1, 1}, {1, 1, 2}}}
                            : Plan{{{1, 1, 1}, {2, 1, 1}, {2, 1, 1}, {2, 1, 1}}};
  for (size_t l = 0; l < 4; ++l) {
    const auto [stride, first_dilation, dilation] = plan[l];
    for (int64_t b = 0; b < blocks[l]; ++b) {
      const std::string prefix = "layer" + std::to_string(l + 1) + "." + std::to_string(b) + ".";
      const int64_t d0 = b == 0 ? first_dilation : dilation;
      const int64_t s0 = b == 0 ? stride : 1;
      if (basic) {
        layers.push_back(conv(prefix + "conv1", 3, s0, d0, d0));
        layers.push_back(conv(prefix + "conv2", 3, 1, dilation, dilation));
      } else {
        layers.push_back(conv(prefix + "conv2", 3, s0, d0, d0));
      }
    }
  }
  return layers;
}

std::vector<nn::LayerSpec> mobilenet_v3_layers(const BackboneOptions& b) {
  const MobileNetV3Options o =
      MobileNetV3Options(b.name()).num_classes(0).dilated(b.output_stride() == 16);
  std::vector<nn::LayerSpec> layers{conv("0", 3, 2, 1)};
  int64_t index = 1;
  for (const auto& c : o.blocks()) {
    const int64_t stride = c.dilation > 1 ? 1 : c.stride;
    layers.push_back(conv(std::to_string(index++) + ".depthwise", c.kernel, stride,
                          (c.kernel - 1) / 2 * c.dilation, c.dilation));
  }
  return layers;
}

std::vector<nn::LayerSpec> backbone_layers(const BackboneOptions& b) {
  if (b.resnet_depth() != 0) return resnet_layers(b.resnet_depth(), b.output_stride());
  return mobilenet_v3_layers(b);
}

}  // namespace ostrov::models::detail
