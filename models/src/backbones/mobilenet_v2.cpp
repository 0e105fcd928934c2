#include "ostrov/models/backbones/mobilenet_v2.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

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

/// torchvision's Conv2dNormActivation with ReLU6 (or none) and PyTorch's default BatchNorm.
ConvNormAct conv_bn_relu6(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                          int64_t groups = 1) {
  return ConvNormAct(ConvNormActImpl::Spec{in, out, kernel, stride, groups, 1, Act::kReLU6});
}

/// torchvision's MobileNetV2 InvertedResidual: child "conv", a Sequential of [1x1 expansion
/// conv-BN-ReLU6,] 3x3 depthwise conv-BN-ReLU6, 1x1 projection conv, BatchNorm2d (a linear
/// bottleneck: no activation); the input is added back when stride is 1 and the widths agree.
class InvertedResidualImpl : public tnn::Cloneable<InvertedResidualImpl>, public FeatureLayer {
 public:
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio)
      : in_(in), out_(out), stride_(stride), expand_ratio_(expand_ratio) {
    reset();
  }

  void reset() override {
    TORCH_CHECK(stride_ == 1 || stride_ == 2, "MobileNetV2 block stride must be 1 or 2, got ",
                stride_);
    const auto hidden = static_cast<int64_t>(std::lround(static_cast<double>(in_ * expand_ratio_)));
    tnn::Sequential seq;
    if (expand_ratio_ != 1) seq->push_back(conv_bn_relu6(in_, hidden, 1));
    seq->push_back(conv_bn_relu6(hidden, hidden, 3, stride_, hidden));
    seq->push_back(tnn::Conv2d(tnn::Conv2dOptions(hidden, out_, 1).bias(false)));
    seq->push_back(tnn::BatchNorm2d(out_));
    conv = register_module("conv", seq);
    residual_ = stride_ == 1 && in_ == out_;
  }

  at::Tensor forward(const at::Tensor& x) {
    auto y = conv->forward(x);
    return residual_ ? y.add_(x) : y;  // y is the projection's own output
  }
  at::Tensor run(const at::Tensor& x) override { return forward(x); }

  tnn::Sequential conv{nullptr};

 private:
  int64_t in_, out_, stride_, expand_ratio_;
  bool residual_ = false;
};
TORCH_MODULE(InvertedResidual);

}  // namespace

int64_t MobileNetV2Options::last_channel() const {
  return make_divisible(1280.0 * std::max(1.0, width_mult_));
}

// ---------------------------------------------------------------------------------------------

MobileNetV2FeaturesImpl::MobileNetV2FeaturesImpl(MobileNetV2Options options)
    : options(std::move(options)) {
  reset();
}

void MobileNetV2FeaturesImpl::reset() {
  const double w = options.width_mult();
  TORCH_CHECK(w > 0.0, "MobileNetV2 width_mult must be positive, got ", w);
  layers.clear();
  channels_.clear();
  strides_.clear();
  const auto add = [&](std::shared_ptr<torch::nn::Module> layer, int64_t channels, int64_t stride) {
    layers.push_back(register_module(std::to_string(layers.size()), std::move(layer)));
    channels_.push_back(channels);
    strides_.push_back(stride);
  };
  int64_t in = make_divisible(32.0 * w);
  add(conv_bn_relu6(3, in, 3, 2).ptr(), in, 2);
  // The paper's table 2: expansion t, channels c, repeats n, stride s of the first repeat.
  struct Row {
    int64_t t, c, n, s;
  };
  for (const Row& r : {Row{1, 16, 1, 1}, Row{6, 24, 2, 2}, Row{6, 32, 3, 2}, Row{6, 64, 4, 2},
                       Row{6, 96, 3, 1}, Row{6, 160, 3, 2}, Row{6, 320, 1, 1}}) {
    const int64_t out = make_divisible(static_cast<double>(r.c) * w);
    for (int64_t i = 0; i < r.n; ++i) {
      const int64_t stride = i == 0 ? r.s : 1;
      add(InvertedResidual(in, out, stride, r.t).ptr(), out, strides_.back() * stride);
      in = out;
    }
  }
  const int64_t last = options.last_channel();
  add(conv_bn_relu6(in, last, 1).ptr(), last, strides_.back());
  detail::init_mobilenet(*this);
}

std::vector<std::string> MobileNetV2FeaturesImpl::stage_names() const {
  return detail::numbered_stage_names(layers.size());
}

int64_t MobileNetV2FeaturesImpl::stage_channels(const std::string& name) const {
  return channels_[detail::numbered_stage(name, layers.size(), "MobileNetV2")];
}

int64_t MobileNetV2FeaturesImpl::stage_stride(const std::string& name) const {
  return strides_[detail::numbered_stage(name, layers.size(), "MobileNetV2")];
}

at::Tensor MobileNetV2FeaturesImpl::run_layer(size_t position, const at::Tensor& x) {
  return dynamic_cast<FeatureLayer&>(*layers[position]).run(x);
}

at::Tensor MobileNetV2FeaturesImpl::forward(const at::Tensor& x) {
  const auto last = std::to_string(layers.size() - 1);
  return forward_features(x, {last})[last];
}

torch::OrderedDict<std::string, at::Tensor> MobileNetV2FeaturesImpl::forward_features(
    const at::Tensor& x, const std::vector<std::string>& names) {
  return detail::forward_numbered(x, names, layers.size(), "MobileNetV2",
                                  [this](size_t i, const at::Tensor& y) { return run_layer(i, y); });
}

void MobileNetV2FeaturesImpl::load_torchvision(const io::StateDict& state,
                                               const std::string& source) {
  detail::load_features(*this, state, source);
}

void MobileNetV2FeaturesImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::MobileNetV2Features(width_mult=" << options.width_mult() << ")";
}

// ---------------------------------------------------------------------------------------------

MobileNetV2Impl::MobileNetV2Impl(MobileNetV2Options options) : options(std::move(options)) {
  reset();
}

void MobileNetV2Impl::reset() {
  TORCH_CHECK(options.num_classes() >= 0, "MobileNetV2 num_classes must be >= 0, got ",
              options.num_classes());
  TORCH_CHECK(options.dropout() >= 0.0 && options.dropout() < 1.0,
              "MobileNetV2 dropout must be in [0, 1), got ", options.dropout());
  features = register_module("features", MobileNetV2Features(options));
  if (options.num_classes() > 0) {
    tnn::Linear linear(options.last_channel(), options.num_classes());
    {
      torch::NoGradGuard no_grad;
      tnn::init::normal_(linear->weight, 0.0, 0.01);
      tnn::init::zeros_(linear->bias);
    }
    classifier =
        register_module("classifier", tnn::Sequential(tnn::Dropout(options.dropout()), linear));
  } else {
    classifier = nullptr;
  }
}

at::Tensor MobileNetV2Impl::forward(const at::Tensor& x) {
  TORCH_CHECK(!classifier.is_empty(), "MobileNetV2 built with num_classes 0 is a backbone "
              "without a classifier: use forward_features");
  auto y = at::adaptive_avg_pool2d(features->forward(x), {1, 1}).flatten(1);
  return classifier->forward(y);
}

void MobileNetV2Impl::load_torchvision(const io::StateDict& state, const std::string& source) {
  detail::load_without_head(*this, state, "classifier.", source);
}

void MobileNetV2Impl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::MobileNetV2(num_classes=" << options.num_classes()
         << ", width_mult=" << options.width_mult() << ")";
}

}  // namespace ostrov::models
