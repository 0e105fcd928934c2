#include "ostrov/models/backbones/alexnet.h"

#include <algorithm>

#include <c10/util/Exception.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>

#include "without_head.h"

namespace ostrov::models {

namespace {

namespace nn = torch::nn;

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    out += out.empty() ? n : ", " + n;
  }
  return out;
}

void check_input(const torch::Tensor& x) {
  TORCH_CHECK(x.defined(), "AlexNet expects input [N,3,H,W], got an undefined tensor");
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "AlexNet expects input [N,3,H,W], got ",
              x.sizes());
}

}  // namespace

AlexNetImpl::AlexNetImpl(AlexNetOptions options) : options(std::move(options)) { reset(); }

void AlexNetImpl::reset() {
  TORCH_CHECK(options.num_classes() >= 0, "AlexNet num_classes must be >= 0, got ",
              options.num_classes());
  TORCH_CHECK(options.dropout() >= 0.0 && options.dropout() <= 1.0,
              "AlexNet dropout must be in [0,1], got ", options.dropout());
  const auto relu = [] { return nn::ReLU(nn::ReLUOptions(/*inplace=*/true)); };
  const auto pool = [] { return nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2)); };

  features = register_module(
      "features",
      nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 64, 11).stride(4).padding(2)),    // 0
                     relu(),                                                             // 1
                     pool(),                                                             // 2
                     nn::Conv2d(nn::Conv2dOptions(64, 192, 5).padding(2)),              // 3
                     relu(),                                                             // 4
                     pool(),                                                             // 5
                     nn::Conv2d(nn::Conv2dOptions(192, 384, 3).padding(1)),             // 6
                     relu(),                                                             // 7
                     nn::Conv2d(nn::Conv2dOptions(384, 256, 3).padding(1)),             // 8
                     relu(),                                                             // 9
                     nn::Conv2d(nn::Conv2dOptions(256, 256, 3).padding(1)),             // 10
                     relu(),                                                             // 11
                     pool()));                                                           // 12
  if (options.num_classes() == 0) {  // a backbone: features only
    avgpool = nullptr;
    classifier = nullptr;
  } else {
    avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({6, 6})));
    classifier = register_module(
        "classifier",
        nn::Sequential(nn::Dropout(nn::DropoutOptions(options.dropout())),                 // 0
                       nn::Linear(256 * 6 * 6, 4096),                                      // 1
                       relu(),                                                             // 2
                       nn::Dropout(nn::DropoutOptions(options.dropout())),                 // 3
                       nn::Linear(4096, 4096),                                             // 4
                       relu(),                                                             // 5
                       nn::Linear(4096, options.num_classes())));                          // 6
  }

  stages_ = {{"relu1", 1, 64, 4},   {"pool1", 2, 64, 8},   {"relu2", 4, 192, 8},
             {"pool2", 5, 192, 16}, {"relu3", 7, 384, 16}, {"relu4", 9, 256, 16},
             {"relu5", 11, 256, 16}, {"pool5", 12, 256, 32}};
}

torch::Tensor AlexNetImpl::forward(const torch::Tensor& x) {
  check_input(x);
  TORCH_CHECK(!classifier.is_empty(), "AlexNet built with num_classes 0 is a backbone without a "
              "classifier: use forward_features");
  auto y = features->forward(x);
  y = avgpool->forward(y);
  y = y.flatten(1);
  return classifier->forward(y);
}

torch::OrderedDict<std::string, torch::Tensor> AlexNetImpl::forward_features(
    const torch::Tensor& x) {
  return forward_features(x, stage_names());
}

torch::OrderedDict<std::string, torch::Tensor> AlexNetImpl::forward_features(
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

std::vector<std::string> AlexNetImpl::stage_names() const {
  std::vector<std::string> names;
  names.reserve(stages_.size());
  for (const auto& s : stages_) {
    names.push_back(s.name);
  }
  return names;
}

const AlexNetImpl::Stage& AlexNetImpl::stage(const std::string& name) const {
  const auto it =
      std::find_if(stages_.begin(), stages_.end(), [&](const Stage& s) { return s.name == name; });
  TORCH_CHECK(it != stages_.end(), "AlexNet has no stage '", name, "'; its stages are: ",
              join(stage_names()));
  return *it;
}

int64_t AlexNetImpl::stage_channels(const std::string& name) const {
  return stage(name).channels;
}

int64_t AlexNetImpl::stage_stride(const std::string& name) const { return stage(name).stride; }

void AlexNetImpl::load_torchvision(const io::StateDict& state, const std::string& source) {
  detail::load_without_head(*this, state, "classifier.", source);
}

int64_t AlexNetImpl::stage_index(const std::string& name) const {
  return static_cast<int64_t>(stage(name).index);
}

void AlexNetImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::AlexNet(num_classes=" << options.num_classes()
         << ", dropout=" << options.dropout() << ")";
}

}  // namespace ostrov::models
