#include "ostrov/models/detection/fpn.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

namespace ostrov::models {

namespace F = torch::nn::functional;

FeaturePyramidNetworkImpl::FeaturePyramidNetworkImpl(FeaturePyramidNetworkOptions options_)
    : options(std::move(options_)) {
  reset();
}

void FeaturePyramidNetworkImpl::reset() {
  TORCH_CHECK(!options.in_channels_list().empty(),
              "FeaturePyramidNetwork: in_channels_list is empty");
  TORCH_CHECK(options.out_channels() >= 1, "FeaturePyramidNetwork: out_channels must be >= 1, got ",
              options.out_channels());
  inner_blocks = register_module("inner_blocks", torch::nn::ModuleList());
  layer_blocks = register_module("layer_blocks", torch::nn::ModuleList());
  const int64_t out = options.out_channels();
  for (const int64_t in : options.in_channels_list()) {
    TORCH_CHECK(in >= 1, "FeaturePyramidNetwork: in_channels_list holds ", in);
    inner_blocks->push_back(
        torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1))));
    layer_blocks->push_back(torch::nn::Sequential(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1))));
  }
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_uniform_(conv->weight, /*a=*/1.0);
      torch::nn::init::constant_(conv->bias, 0.0);
    }
  }
}

std::vector<at::Tensor> FeaturePyramidNetworkImpl::forward(const std::vector<at::Tensor>& x) {
  const auto levels = static_cast<int64_t>(options.in_channels_list().size());
  TORCH_CHECK(static_cast<int64_t>(x.size()) == levels, "FeaturePyramidNetwork: expected ", levels,
              " levels, got ", x.size());
  for (int64_t i = 0; i < levels; ++i) {
    TORCH_CHECK(x[i].dim() == 4 && x[i].size(1) == options.in_channels_list()[i],
                "FeaturePyramidNetwork: level ", i, " should be [N,",
                options.in_channels_list()[i], ",h,w], got ", x[i].sizes());
  }
  const auto inner = [&](int64_t i, const at::Tensor& t) {
    return inner_blocks[i]->as<torch::nn::Sequential>()->forward(t);
  };
  const auto layer = [&](int64_t i, const at::Tensor& t) {
    return layer_blocks[i]->as<torch::nn::Sequential>()->forward(t);
  };
  std::vector<at::Tensor> results(levels);
  at::Tensor last_inner = inner(levels - 1, x[levels - 1]);
  results[levels - 1] = layer(levels - 1, last_inner);
  for (int64_t i = levels - 2; i >= 0; --i) {
    const auto lateral = inner(i, x[i]);
    const auto top_down = F::interpolate(
        last_inner, F::InterpolateFuncOptions()
                        .size(std::vector<int64_t>{lateral.size(2), lateral.size(3)})
                        .mode(torch::kNearest));
    last_inner = lateral + top_down;
    results[i] = layer(i, last_inner);
  }
  if (options.last_level_max_pool()) {
    results.push_back(at::max_pool2d(results.back(), {1, 1}, {2, 2}, {0, 0}));
  }
  return results;
}

BackboneWithFPNImpl::BackboneWithFPNImpl(BackboneWithFPNOptions options_)
    : options(std::move(options_)) {
  reset();
}

void BackboneWithFPNImpl::reset() {
  TORCH_CHECK(options.backbone().output_stride() == 32,
              "BackboneWithFPN: the body must have output stride 32, got ",
              options.backbone().output_stride());
  TORCH_CHECK(!options.stages().empty(), "BackboneWithFPN: no stages");
  body = register_module("body", make_backbone(options.backbone()));
  const auto backbone = as_backbone(body);
  std::vector<int64_t> channels;
  for (const auto& stage : options.stages()) channels.push_back(backbone->stage_channels(stage));
  fpn = register_module(
      "fpn", FeaturePyramidNetwork(FeaturePyramidNetworkOptions(channels, options.out_channels())));

  if (options.backbone().resnet_depth() > 0) {
    // torchvision's _resnet_fpn_extractor: parameters outside the last k layers are frozen.
    const int64_t k = options.trainable_layers();
    TORCH_CHECK(k >= 0 && k <= 5, "BackboneWithFPN: trainable_layers must be in [0, 5], got ", k);
    std::vector<std::string> train_prefixes = {"layer4", "layer3", "layer2", "layer1", "conv1"};
    train_prefixes.resize(static_cast<size_t>(k));
    if (k == 5) train_prefixes.emplace_back("bn1");
    for (auto& item : body->named_parameters()) {
      const bool trainable =
          std::any_of(train_prefixes.begin(), train_prefixes.end(), [&](const std::string& p) {
            return item.key().rfind(p, 0) == 0;
          });
      if (!trainable) item.value().set_requires_grad(false);
    }
  } else {
    TORCH_CHECK(options.trainable_layers() == 5,
                "BackboneWithFPN: trainable_layers applies to ResNet bodies only");
  }
  if (options.frozen_batch_norm()) {
    for (auto& module : body->modules(/*include_self=*/false)) {
      if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
        if (bn->weight.defined()) bn->weight.set_requires_grad(false);
        if (bn->bias.defined()) bn->bias.set_requires_grad(false);
      }
    }
  }
  train(is_training());
}

void BackboneWithFPNImpl::train(bool on) {
  torch::nn::Module::train(on);
  if (!options.frozen_batch_norm()) return;
  for (auto& module : body->modules(/*include_self=*/false)) {
    if (module->as<torch::nn::BatchNorm2d>() != nullptr) module->eval();
  }
}

torch::OrderedDict<std::string, at::Tensor> BackboneWithFPNImpl::forward(const at::Tensor& x) {
  const auto stages = as_backbone(body)->forward_features(x, options.stages());
  std::vector<at::Tensor> levels;
  levels.reserve(stages.size());
  for (const auto& item : stages) levels.push_back(item.value());
  const auto pyramid = fpn->forward(levels);
  torch::OrderedDict<std::string, at::Tensor> out;
  for (size_t i = 0; i < pyramid.size(); ++i) {
    out.insert(i < levels.size() ? std::to_string(i) : std::string("pool"), pyramid[i]);
  }
  return out;
}

std::vector<int64_t> BackboneWithFPNImpl::strides() const {
  const auto backbone = as_backbone(body);
  std::vector<int64_t> s;
  for (const auto& stage : options.stages()) s.push_back(backbone->stage_stride(stage));
  if (fpn->options.last_level_max_pool()) s.push_back(s.back() * 2);
  return s;
}

void BackboneWithFPNImpl::load_backbone(const io::StateDict& state, const std::string& source) {
  as_backbone(body)->load_torchvision(state, source);
}

}  // namespace ostrov::models
