#include "ostrov/models/backbones/mobilenet_v3.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/functional.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include "ostrov/io/weights.h"
#include "ostrov/nn/conv_bn_act.h"
#include "mobilenet_parts.h"
#include "without_head.h"

namespace ostrov::models {

namespace {

namespace tnn = torch::nn;

using detail::Act;
using detail::ConvNormAct;
using detail::ConvNormActImpl;
using detail::FeatureLayer;
using detail::make_divisible;

/// torchvision's Conv2dNormActivation with MobileNetV3's BatchNorm (eps 0.001).
ConvNormAct conv_norm_act(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                          int64_t dilation, Act act, double momentum) {
  return ConvNormAct(ConvNormActImpl::Spec{in, out, kernel, stride, groups, dilation, act, 0.001,
                                           momentum});
}

/// torchvision's SqueezeExcitation with a hard sigmoid: x * hardsigmoid(fc2(relu(fc1(mean(x))))).
/// Children "fc1", "fc2": 1x1 convs with bias.
class SqueezeExcitationImpl : public tnn::Cloneable<SqueezeExcitationImpl> {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze) : channels_(channels), squeeze_(squeeze) {
    reset();
  }

  void reset() override {
    fc1 = register_module("fc1", tnn::Conv2d(tnn::Conv2dOptions(channels_, squeeze_, 1)));
    fc2 = register_module("fc2", tnn::Conv2d(tnn::Conv2dOptions(squeeze_, channels_, 1)));
  }

  at::Tensor forward(const at::Tensor& x) {
    auto s = at::adaptive_avg_pool2d(x, {1, 1});
    s = at::hardsigmoid(fc2->forward(at::relu(fc1->forward(s))));
    return x * s;
  }

  tnn::Conv2d fc1{nullptr};
  tnn::Conv2d fc2{nullptr};

 private:
  int64_t channels_, squeeze_;
};
TORCH_MODULE(SqueezeExcitation);

/// torchvision's InvertedResidual: child "block", a Sequential of [1x1 expansion,] depthwise,
/// [squeeze-excitation,] 1x1 projection; the input is added back when stride is 1 and the
/// widths agree.
class InvertedResidualImpl : public tnn::Cloneable<InvertedResidualImpl>, public FeatureLayer {
 public:
  InvertedResidualImpl(const InvertedResidualConfig& c, double momentum)
      : config_(c), momentum_(momentum) {
    reset();
  }

  void reset() override {
    const auto& c = config_;
    TORCH_CHECK(c.stride == 1 || c.stride == 2, "MobileNetV3 block stride must be 1 or 2, got ",
                c.stride);
    const Act act = c.use_hardswish ? Act::kHardswish : Act::kReLU;
    tnn::Sequential seq;
    if (c.expanded_channels != c.input_channels) {
      seq->push_back(
          conv_norm_act(c.input_channels, c.expanded_channels, 1, 1, 1, 1, act, momentum_));
    }
    const int64_t stride = c.dilation > 1 ? 1 : c.stride;
    seq->push_back(conv_norm_act(c.expanded_channels, c.expanded_channels, c.kernel, stride,
                                 c.expanded_channels, c.dilation, act, momentum_));
    if (c.use_se) {
      seq->push_back(SqueezeExcitation(c.expanded_channels, make_divisible(
                                                                static_cast<double>(c.expanded_channels / 4))));
    }
    seq->push_back(
        conv_norm_act(c.expanded_channels, c.out_channels, 1, 1, 1, 1, Act::kNone, momentum_));
    block = register_module("block", seq);
    residual_ = c.stride == 1 && c.input_channels == c.out_channels;
  }

  at::Tensor forward(const at::Tensor& x) {
    auto y = block->forward(x);
    return residual_ ? y.add_(x) : y;  // y is the projection's own output
  }
  at::Tensor run(const at::Tensor& x) override { return forward(x); }

  tnn::Sequential block{nullptr};

 private:
  InvertedResidualConfig config_;
  double momentum_;
  bool residual_ = false;
};
TORCH_MODULE(InvertedResidual);

/// A Sequential that can sit inside another Sequential (a non-template forward, as AnyModule
/// needs).
class NestedSequentialImpl : public tnn::SequentialImpl {
 public:
  using tnn::SequentialImpl::SequentialImpl;
  at::Tensor forward(const at::Tensor& x) { return tnn::SequentialImpl::forward(x); }
};
TORCH_MODULE(NestedSequential);

/// Appends a layer of MobileNetV3Features (one of the two layer types) to `seq` as `name`.
void push_layer(tnn::Sequential& seq, const std::string& name,
                const std::shared_ptr<torch::nn::Module>& layer) {
  if (auto conv = std::dynamic_pointer_cast<ConvNormActImpl>(layer)) {
    seq->push_back(std::string(name), ConvNormAct(conv));
  } else {
    auto block = std::dynamic_pointer_cast<InvertedResidualImpl>(layer);
    TORCH_INTERNAL_ASSERT(block, "MobileNetV3 layer ", name, " of an unknown type");
    seq->push_back(std::string(name), InvertedResidual(block));
  }
}

}  // namespace

std::string MobileNetV3Options::canonical_arch() const {
  if (arch_ == "large" || arch_ == "mobilenet_v3_large") return "large";
  if (arch_ == "small" || arch_ == "mobilenet_v3_small") return "small";
  TORCH_CHECK(false, "MobileNetV3 arch must be \"large\" or \"small\", got \"", arch_, "\"");
}

std::vector<InvertedResidualConfig> MobileNetV3Options::blocks() const {
  TORCH_CHECK(width_mult_ > 0.0, "MobileNetV3 width_mult must be positive, got ", width_mult_);
  const int64_t rd = reduced_tail_ ? 2 : 1;
  const int64_t d = dilated_ ? 2 : 1;
  // kernel, expanded, out, SE, hardswish, stride, dilation; input = the previous row's output.
  struct Row {
    int64_t k, exp, out;
    bool se, hs;
    int64_t stride, dilation;
  };
  const std::vector<Row> large = {
      {3, 16, 16, false, false, 1, 1},           {3, 64, 24, false, false, 2, 1},
      {3, 72, 24, false, false, 1, 1},           {5, 72, 40, true, false, 2, 1},
      {5, 120, 40, true, false, 1, 1},           {5, 120, 40, true, false, 1, 1},
      {3, 240, 80, false, true, 2, 1},           {3, 200, 80, false, true, 1, 1},
      {3, 184, 80, false, true, 1, 1},           {3, 184, 80, false, true, 1, 1},
      {3, 480, 112, true, true, 1, 1},           {3, 672, 112, true, true, 1, 1},
      {5, 672, 160 / rd, true, true, 2, d},      {5, 960 / rd, 160 / rd, true, true, 1, d},
      {5, 960 / rd, 160 / rd, true, true, 1, d},
  };
  const std::vector<Row> small = {
      {3, 16, 16, true, false, 2, 1},           {3, 72, 24, false, false, 2, 1},
      {3, 88, 24, false, false, 1, 1},          {5, 96, 40, true, true, 2, 1},
      {5, 240, 40, true, true, 1, 1},           {5, 240, 40, true, true, 1, 1},
      {5, 120, 48, true, true, 1, 1},           {5, 144, 48, true, true, 1, 1},
      {5, 288, 96 / rd, true, true, 2, d},      {5, 576 / rd, 96 / rd, true, true, 1, d},
      {5, 576 / rd, 96 / rd, true, true, 1, d},
  };
  const auto adjust = [&](int64_t c) { return make_divisible(static_cast<double>(c) * width_mult_); };
  std::vector<InvertedResidualConfig> out;
  int64_t in = 16;
  for (const Row& r : canonical_arch() == "large" ? large : small) {
    out.push_back({adjust(in), r.k, adjust(r.exp), adjust(r.out), r.se, r.hs, r.stride,
                   r.dilation});
    in = r.out;
  }
  return out;
}

int64_t MobileNetV3Options::last_channel() const {
  const int64_t rd = reduced_tail_ ? 2 : 1;
  const int64_t base = canonical_arch() == "large" ? 1280 : 1024;
  return make_divisible(static_cast<double>(base / rd) * width_mult_);
}

// ---------------------------------------------------------------------------------------------

MobileNetV3FeaturesImpl::MobileNetV3FeaturesImpl(MobileNetV3Options options)
    : options(std::move(options)) {
  reset();
}

void MobileNetV3FeaturesImpl::reset() {
  const auto blocks = options.blocks();  // checks arch and width
  layers.clear();
  channels_.clear();
  strides_.clear();
  const auto add = [&](std::shared_ptr<torch::nn::Module> layer, int64_t channels, int64_t stride) {
    layers.push_back(register_module(std::to_string(layers.size()), std::move(layer)));
    channels_.push_back(channels);
    strides_.push_back(stride);
  };
  const int64_t first = blocks.front().input_channels;
  const double momentum = options.bn_momentum();
  add(conv_norm_act(3, first, 3, 2, 1, 1, Act::kHardswish, momentum).ptr(), first, 2);
  for (const auto& c : blocks) {
    const int64_t stride = strides_.back() * (c.dilation > 1 ? 1 : c.stride);
    add(InvertedResidual(c, momentum).ptr(), c.out_channels, stride);
  }
  const int64_t last = 6 * blocks.back().out_channels;
  add(conv_norm_act(blocks.back().out_channels, last, 1, 1, 1, 1, Act::kHardswish, momentum).ptr(),
      last, strides_.back());
  detail::init_mobilenet(*this);
}

std::vector<std::string> MobileNetV3FeaturesImpl::stage_names() const {
  return detail::numbered_stage_names(layers.size());
}

size_t MobileNetV3FeaturesImpl::stage_position(const std::string& name) const {
  return detail::numbered_stage(name, layers.size(), "MobileNetV3");
}

int64_t MobileNetV3FeaturesImpl::stage_channels(const std::string& name) const {
  return channels_[stage_position(name)];
}

int64_t MobileNetV3FeaturesImpl::stage_stride(const std::string& name) const {
  return strides_[stage_position(name)];
}

std::string MobileNetV3FeaturesImpl::first_stage_with_stride(int64_t stride) const {
  for (size_t i = 0; i < strides_.size(); ++i) {
    if (strides_[i] == stride) return std::to_string(i);
  }
  TORCH_CHECK(false, "MobileNetV3 has no stage with stride ", stride);
}

at::Tensor MobileNetV3FeaturesImpl::run_layer(size_t position, const at::Tensor& x) {
  return dynamic_cast<FeatureLayer&>(*layers[position]).run(x);
}

at::Tensor MobileNetV3FeaturesImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3,
              "MobileNetV3 expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  auto y = x;
  for (size_t i = 0; i < layers.size(); ++i) y = run_layer(i, y);
  return y;
}

torch::OrderedDict<std::string, at::Tensor> MobileNetV3FeaturesImpl::forward_features(
    const at::Tensor& x, const std::vector<std::string>& names) {
  return detail::forward_numbered(x, names, layers.size(), "MobileNetV3",
                                  [this](size_t i, const at::Tensor& y) { return run_layer(i, y); });
}

void MobileNetV3FeaturesImpl::load_torchvision(const io::StateDict& state,
                                               const std::string& source) {
  detail::load_features(*this, state, source);
}

void MobileNetV3FeaturesImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::MobileNetV3Features(arch=" << options.canonical_arch()
         << ", width_mult=" << options.width_mult() << ", dilated="
         << (options.dilated() ? "true" : "false") << ")";
}

// ---------------------------------------------------------------------------------------------

MobileNetV3Impl::MobileNetV3Impl(MobileNetV3Options options) : options(std::move(options)) {
  reset();
}

void MobileNetV3Impl::reset() {
  TORCH_CHECK(options.num_classes() >= 0, "MobileNetV3 num_classes must be >= 0, got ",
              options.num_classes());
  TORCH_CHECK(options.dropout() >= 0.0 && options.dropout() < 1.0,
              "MobileNetV3 dropout must be in [0, 1), got ", options.dropout());
  features = register_module("features", MobileNetV3Features(options));
  if (options.num_classes() > 0) {
    const int64_t in = features->out_channels();
    const int64_t hidden = options.last_channel();
    classifier = register_module(
        "classifier", tnn::Sequential(tnn::Linear(in, hidden),
                                      tnn::Functional(static_cast<at::Tensor (*)(const at::Tensor&)>(
                                          at::hardswish)),
                                      tnn::Dropout(options.dropout()),
                                      tnn::Linear(hidden, options.num_classes())));
    torch::NoGradGuard no_grad;
    for (const auto& module : classifier->modules(/*include_self=*/false)) {
      if (auto* linear = module->as<tnn::Linear>()) {
        tnn::init::normal_(linear->weight, 0.0, 0.01);
        tnn::init::zeros_(linear->bias);
      }
    }
  } else {
    classifier = nullptr;
  }
}

at::Tensor MobileNetV3Impl::forward(const at::Tensor& x) {
  TORCH_CHECK(!classifier.is_empty(), "MobileNetV3 built with num_classes 0 is a backbone "
              "without a classifier: use forward_features");
  auto y = at::adaptive_avg_pool2d(features->forward(x), {1, 1}).flatten(1);
  return classifier->forward(y);
}

void MobileNetV3Impl::load_torchvision(const io::StateDict& state, const std::string& source) {
  detail::load_without_head(*this, state, "classifier.", source);
}

void MobileNetV3Impl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::MobileNetV3(arch=" << options.canonical_arch()
         << ", num_classes=" << options.num_classes() << ", width_mult=" << options.width_mult()
         << ", dilated=" << (options.dilated() ? "true" : "false") << ")";
}

MobileNetV3C4Split split_mobilenet_v3_at_c4(const MobileNetV3Options& options) {
  const auto blocks = options.blocks();
  MobileNetV3Features features(options);
  MobileNetV3C4Split split;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].stride > 1) split.c4_position = static_cast<int64_t>(i) + 1;  // features[0] is the stem
  }
  const auto c4 = static_cast<size_t>(split.c4_position);
  const auto& config = blocks[c4 - 1];
  TORCH_CHECK(config.expanded_channels != config.input_channels,
              "MobileNetV3 block ", c4, " has no expansion to split at");
  split.first_channels = config.expanded_channels;
  split.second_channels = features->stage_channels(std::to_string(features->layers.size() - 1));

  split.first = tnn::Sequential();
  for (size_t i = 0; i < c4; ++i) push_layer(split.first, std::to_string(i), features->layers[i]);
  auto residual = std::dynamic_pointer_cast<InvertedResidualImpl>(features->layers[c4]);
  TORCH_INTERNAL_ASSERT(residual, "MobileNetV3 layer ", c4, " is not an inverted residual");
  const auto names = residual->block->named_children().keys();
  NestedSequential rest;
  size_t j = 0;
  for (const auto& part : *residual->block) {
    if (j == 0) {
      split.first->push_back(std::to_string(c4), part);
    } else {
      rest->push_back(names[j], part);
    }
    ++j;
  }
  split.second = tnn::Sequential();
  split.second->push_back("0", rest);
  for (size_t i = c4 + 1; i < features->layers.size(); ++i) {
    push_layer(split.second, std::to_string(i - c4), features->layers[i]);
  }
  return split;
}

}  // namespace ostrov::models
