#include "ostrov/models/style/vgg_features.h"

#include <algorithm>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include "ostrov/core/error.h"
#include "ostrov/models/backbones/vgg.h"
#include "ostrov/core/image.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"

namespace ostrov::models {

namespace {

namespace nn = torch::nn;

using detail::kPool;

std::string join(const std::vector<std::string>& names, size_t limit = 1000) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < limit; ++i) {
    out += (i ? ", " : "") + names[i];
  }
  if (names.size() > limit) out += ", ...";
  return out;
}

}  // namespace

VGGFeaturesImpl::VGGFeaturesImpl(VGGFeaturesOptions options_) : options(std::move(options_)) {
  reset();
}

void VGGFeaturesImpl::reset() {
  TORCH_CHECK(options.pooling() == "max" || options.pooling() == "avg",
              "VGGFeatures pooling must be \"max\" or \"avg\", got \"", options.pooling(), "\"");
  // torchvision's make_layers(cfg) and initialisation (convs kaiming_normal_(fan_out, relu),
  // zero bias), with ReLUs that are not in-place (a conv layer's output must survive its ReLU)
  // and, for "avg", AvgPool2d(2,2) in place of MaxPool2d(2,2). Built here rather than taken
  // from VGG so the 120M-parameter classifier is never allocated.
  const int64_t depth = options.depth();
  TORCH_CHECK(depth == 11 || depth == 13 || depth == 16 || depth == 19,
              "VGGFeatures depth must be 11, 13, 16 or 19, got ", depth);
  const auto cfg = detail::vgg_layer_config(depth);
  nn::Sequential seq;
  layers_.clear();
  int block = 1;
  int conv = 0;
  int64_t channels = 3;
  const auto add = [&](std::string name) {
    layers_.push_back({std::move(name), seq->size() - 1, channels});
  };
  for (const int64_t v : cfg) {
    if (v == kPool) {
      if (options.pooling() == "avg") {
        seq->push_back(nn::AvgPool2d(nn::AvgPool2dOptions(2).stride(2)));
      } else {
        seq->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
      }
      add("pool" + std::to_string(block));
      ++block;
      conv = 0;
      continue;
    }
    nn::Conv2d layer(nn::Conv2dOptions(channels, v, 3).padding(1));
    {
      torch::NoGradGuard no_grad;
      nn::init::kaiming_normal_(layer->weight, 0.0, torch::kFanOut, torch::kReLU);
      nn::init::constant_(layer->bias, 0.0);
    }
    channels = v;
    ++conv;
    seq->push_back(layer);
    add("conv" + std::to_string(block) + "_" + std::to_string(conv));
    seq->push_back(nn::ReLU());
    add("relu" + std::to_string(block) + "_" + std::to_string(conv));
  }
  features = register_module("features", seq);
  for (auto& p : parameters()) {
    p.set_requires_grad(false);
    if (options.channels_last() && p.dim() == 4) {
      p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
  eval();
}

torch::OrderedDict<std::string, at::Tensor> VGGFeaturesImpl::forward(
    const at::Tensor& x, const std::vector<std::string>& names) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3,
              "VGGFeatures expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  std::vector<bool> wanted(layers_.size(), false);
  size_t last = 0;
  for (const auto& name : names) {
    const Layer& l = layer(name);
    wanted[l.index] = true;  // layers_[i].index == i
    last = std::max(last, l.index);
  }
  torch::OrderedDict<std::string, at::Tensor> out;
  if (names.empty()) return out;
  at::Tensor y = x;
  if (options.normalize()) {
    const auto mean = at::tensor(core::kImageNetMean, x.options()).view({1, 3, 1, 1});
    const auto std = at::tensor(core::kImageNetStd, x.options()).view({1, 3, 1, 1});
    y = (y - mean) / std;
  }
  if (options.channels_last()) {
    y = y.contiguous(at::MemoryFormat::ChannelsLast);
  }
  size_t i = 0;
  for (auto& module : *features) {
    y = module.forward(y);
    if (wanted[i]) out.insert(layers_[i].name, y);
    if (i == last) break;
    ++i;
  }
  return out;
}

const VGGFeaturesImpl::Layer& VGGFeaturesImpl::layer(const std::string& name) const {
  const auto it =
      std::find_if(layers_.begin(), layers_.end(), [&](const Layer& l) { return l.name == name; });
  TORCH_CHECK(it != layers_.end(), "VGGFeatures (VGG", options.depth(), ") has no layer '", name,
              "'; its layers are: ", join(layer_names()));
  return *it;
}

std::vector<std::string> VGGFeaturesImpl::layer_names() const {
  std::vector<std::string> names;
  names.reserve(layers_.size());
  for (const auto& l : layers_) names.push_back(l.name);
  return names;
}

int64_t VGGFeaturesImpl::layer_index(const std::string& name) const {
  return static_cast<int64_t>(layer(name).index);
}

int64_t VGGFeaturesImpl::layer_channels(const std::string& name) const {
  return layer(name).channels;
}

void VGGFeaturesImpl::load_weights(const std::string& path) {
  const io::StateDict file = io::load_state_dict(path);
  io::StateDict state;
  std::vector<std::string> first_keys;
  for (const auto& item : file) {
    if (item.key().rfind("features.", 0) == 0) {
      state.insert(item.key(), item.value());
    } else if (first_keys.size() < 8) {
      first_keys.push_back(item.key());
    }
  }
  if (state.is_empty()) {
    throw IoError(path + ": no 'features.*' keys, so not a torchvision VGG state_dict (its keys: " +
                  join(first_keys, 8) + ")");
  }
  io::load_state_dict_into(*this, state, /*strict=*/true, path);
}

void VGGFeaturesImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::VGGFeatures(depth=" << options.depth() << ", pooling="
         << options.pooling() << ", normalize=" << (options.normalize() ? "true" : "false")
         << ", channels_last=" << (options.channels_last() ? "true" : "false") << ")";
}

}  // namespace ostrov::models
