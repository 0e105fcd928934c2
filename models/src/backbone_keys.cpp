#include "backbone_keys.h"

#include <algorithm>

#include "ostrov/core/error.h"

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

}  // namespace ostrov::models::detail
