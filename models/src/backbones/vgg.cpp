#include "ostrov/models/backbones/vgg.h"

#include <algorithm>

#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "without_head.h"

namespace ostrov::models {

namespace detail {

std::vector<int64_t> vgg_layer_config(int64_t depth) {
  switch (depth) {
    case 11:
      return {64, kPool, 128, kPool, 256, 256, kPool, 512, 512, kPool, 512, 512, kPool};
    case 13:
      return {64, 64, kPool, 128, 128, kPool, 256, 256, kPool, 512, 512, kPool, 512, 512, kPool};
    case 16:
      return {64,  64,  kPool, 128, 128, kPool, 256, 256, 256, kPool,
              512, 512, 512,   kPool, 512, 512, 512, kPool};
    case 19:
      return {64,  64,  kPool, 128, 128, kPool, 256, 256, 256, 256, kPool,
              512, 512, 512,   512, kPool, 512, 512, 512, 512, kPool};
    default:
      TORCH_CHECK(false, "VGG depth must be 11, 13, 16 or 19, got ", depth);
  }
}

}  // namespace detail

namespace {

using detail::kPool;

namespace nn = torch::nn;

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    out += out.empty() ? n : ", " + n;
  }
  return out;
}

void check_input(const torch::Tensor& x) {
  TORCH_CHECK(x.defined(), "VGG expects input [N,3,H,W], got an undefined tensor");
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "VGG expects input [N,3,H,W], got ", x.sizes());
}

}  // namespace

VGGImpl::VGGImpl(VGGOptions options) : options(std::move(options)) { reset(); }

void VGGImpl::reset() {
  TORCH_CHECK(options.num_classes() >= 0, "VGG num_classes must be >= 0, got ",
              options.num_classes());
  TORCH_CHECK(options.dropout() >= 0.0 && options.dropout() <= 1.0,
              "VGG dropout must be in [0,1], got ", options.dropout());
  const auto cfg = detail::vgg_layer_config(options.depth());

  // features: as torchvision's make_layers(cfg, batch_norm).
  stages_.clear();
  nn::Sequential layers;
  int64_t in_channels = 3;
  int block = 1;
  int conv_in_block = 0;
  for (const int64_t v : cfg) {
    if (v == kPool) {
      layers->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
      stages_.push_back({"pool" + std::to_string(block), layers->size() - 1, in_channels,
                         int64_t{1} << block});
      ++block;
      conv_in_block = 0;
    } else {
      layers->push_back(nn::Conv2d(nn::Conv2dOptions(in_channels, v, 3).padding(1)));
      if (options.batch_norm()) {
        layers->push_back(nn::BatchNorm2d(v));
      }
      layers->push_back(nn::ReLU(nn::ReLUOptions(/*inplace=*/true)));
      ++conv_in_block;
      stages_.push_back({"relu" + std::to_string(block) + "_" + std::to_string(conv_in_block),
                         layers->size() - 1, v, int64_t{1} << (block - 1)});
      in_channels = v;
    }
  }
  features = register_module("features", layers);
  if (options.num_classes() == 0) {  // a backbone: features only
    avgpool = nullptr;
    classifier = nullptr;
  } else {
    avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({7, 7})));
    classifier = register_module(
        "classifier",
        nn::Sequential(nn::Linear(512 * 7 * 7, 4096),                        // 0
                       nn::ReLU(nn::ReLUOptions(/*inplace=*/true)),          // 1
                       nn::Dropout(nn::DropoutOptions(options.dropout())),   // 2
                       nn::Linear(4096, 4096),                               // 3
                       nn::ReLU(nn::ReLUOptions(/*inplace=*/true)),          // 4
                       nn::Dropout(nn::DropoutOptions(options.dropout())),   // 5
                       nn::Linear(4096, options.num_classes())));            // 6
  }

  if (options.init_weights()) {
    torch::NoGradGuard no_grad;
    for (const auto& module : modules(/*include_self=*/false)) {
      if (auto* conv = module->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
        if (conv->bias.defined()) {
          nn::init::constant_(conv->bias, 0.0);
        }
      } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
        nn::init::constant_(bn->weight, 1.0);
        nn::init::constant_(bn->bias, 0.0);
      } else if (auto* linear = module->as<nn::Linear>()) {
        nn::init::normal_(linear->weight, 0.0, 0.01);
        nn::init::constant_(linear->bias, 0.0);
      }
    }
  }
}

torch::Tensor VGGImpl::forward(const torch::Tensor& x) {
  check_input(x);
  TORCH_CHECK(!classifier.is_empty(), "VGG built with num_classes 0 is a backbone without a "
              "classifier: use forward_features");
  auto y = features->forward(x);
  y = avgpool->forward(y);
  y = y.flatten(1);
  return classifier->forward(y);
}

torch::OrderedDict<std::string, torch::Tensor> VGGImpl::forward_features(const torch::Tensor& x) {
  return forward_features(x, stage_names());
}

torch::OrderedDict<std::string, torch::Tensor> VGGImpl::forward_features(
    const torch::Tensor& x, const std::vector<std::string>& names) {
  check_input(x);
  std::vector<bool> wanted(stages_.size(), false);
  size_t last = 0;
  for (const auto& name : names) {
    const Stage& s = stage(name);
    wanted[static_cast<size_t>(&s - stages_.data())] = true;
    last = std::max(last, s.index);
  }
  torch::OrderedDict<std::string, torch::Tensor> out;
  if (names.empty()) {
    return out;
  }
  auto y = x;
  size_t index = 0;
  size_t next = 0;  // next stage to look at; stages_ is ordered by index
  for (auto& module : *features) {
    y = module.forward(y);
    if (next < stages_.size() && stages_[next].index == index) {
      if (wanted[next]) {
        out.insert(stages_[next].name, y);
      }
      ++next;
    }
    if (index == last) {
      break;
    }
    ++index;
  }
  return out;
}

const VGGImpl::Stage& VGGImpl::stage(const std::string& name) const {
  const auto it =
      std::find_if(stages_.begin(), stages_.end(), [&](const Stage& s) { return s.name == name; });
  TORCH_CHECK(it != stages_.end(), "VGG", options.depth(), " has no stage '", name,
              "'; its stages are: ", join(stage_names()));
  return *it;
}

std::vector<std::string> VGGImpl::stage_names() const {
  std::vector<std::string> names;
  names.reserve(stages_.size());
  for (const auto& s : stages_) {
    names.push_back(s.name);
  }
  return names;
}

int64_t VGGImpl::stage_channels(const std::string& name) const { return stage(name).channels; }

int64_t VGGImpl::stage_stride(const std::string& name) const { return stage(name).stride; }

void VGGImpl::load_torchvision(const io::StateDict& state, const std::string& source) {
  detail::load_without_head(*this, state, "classifier.", source);
}

int64_t VGGImpl::stage_index(const std::string& name) const {
  return static_cast<int64_t>(stage(name).index);
}

void VGGImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::VGG(depth=" << options.depth()
         << ", batch_norm=" << (options.batch_norm() ? "true" : "false")
         << ", num_classes=" << options.num_classes() << ")";
}

}  // namespace ostrov::models
