#include "ostrov/models/segmentation/fc_densenet.h"

#include <numeric>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>

#include "ostrov/nn/upsample.h"

namespace ostrov::models {

namespace {

namespace tnn = torch::nn;

/// BN -> ReLU -> 3x3 conv (-> growth) -> dropout: the paper's dense "layer" (table 1).
class DenseLayerImpl : public tnn::Cloneable<DenseLayerImpl> {
 public:
  DenseLayerImpl(int64_t in, int64_t growth, double dropout)
      : in_(in), growth_(growth), dropout_(dropout) {
    reset();
  }
  void reset() override {
    norm = register_module("norm", tnn::BatchNorm2d(in_));
    conv = register_module("conv", tnn::Conv2d(tnn::Conv2dOptions(in_, growth_, 3).padding(1)));
    drop = register_module("drop", tnn::Dropout(dropout_));
  }
  at::Tensor forward(const at::Tensor& x) {
    return drop->forward(conv->forward(at::relu(norm->forward(x))));
  }
  tnn::BatchNorm2d norm{nullptr};
  tnn::Conv2d conv{nullptr};
  tnn::Dropout drop{nullptr};

 private:
  int64_t in_;
  int64_t growth_;
  double dropout_;
};
TORCH_MODULE(DenseLayer);

/// What a dense block computed: its new maps (cat of every layer's output) and the
/// concatenation of its input with them.
struct DenseBlockOutput {
  at::Tensor stack;
  at::Tensor new_features;
};

/// `layers` dense layers; layer i sees cat(input, outputs of layers 0..i-1).
class DenseBlockImpl : public tnn::Cloneable<DenseBlockImpl> {
 public:
  DenseBlockImpl(int64_t in, int64_t growth, int64_t layers, double dropout)
      : in_(in), growth_(growth), count_(layers), dropout_(dropout) {
    reset();
  }
  void reset() override {
    layers = register_module("layers", tnn::ModuleList());
    for (int64_t i = 0; i < count_; ++i) {
      layers->push_back(DenseLayer(in_ + i * growth_, growth_, dropout_));
    }
  }
  DenseBlockOutput forward(const at::Tensor& x) {
    auto stack = x;
    std::vector<at::Tensor> fresh;
    fresh.reserve(layers->size());
    for (const auto& layer : *layers) {
      auto y = layer->as<DenseLayer>()->forward(stack);
      stack = at::cat({stack, y}, 1);
      fresh.push_back(y);
    }
    return {stack, at::cat(fresh, 1)};
  }
  int64_t new_channels() const { return count_ * growth_; }
  tnn::ModuleList layers{nullptr};

 private:
  int64_t in_;
  int64_t growth_;
  int64_t count_;
  double dropout_;
};
TORCH_MODULE(DenseBlock);

/// BN -> ReLU -> 1x1 conv (m -> m) -> dropout -> 2x2 max-pool.
class TransitionDownImpl : public tnn::Cloneable<TransitionDownImpl> {
 public:
  TransitionDownImpl(int64_t channels, double dropout) : channels_(channels), dropout_(dropout) {
    reset();
  }
  void reset() override {
    norm = register_module("norm", tnn::BatchNorm2d(channels_));
    conv = register_module("conv", tnn::Conv2d(tnn::Conv2dOptions(channels_, channels_, 1)));
    drop = register_module("drop", tnn::Dropout(dropout_));
  }
  at::Tensor forward(const at::Tensor& x) {
    return at::max_pool2d(drop->forward(conv->forward(at::relu(norm->forward(x)))), {2, 2},
                          {2, 2});
  }
  tnn::BatchNorm2d norm{nullptr};
  tnn::Conv2d conv{nullptr};
  tnn::Dropout drop{nullptr};

 private:
  int64_t channels_;
  double dropout_;
};
TORCH_MODULE(TransitionDown);

}  // namespace

int64_t FCDenseNetOptions::effective_growth_rate() const {
  if (growth_rate_.has_value()) {
    return *growth_rate_;
  }
  return depth_ == 56 ? 12 : 16;
}

std::vector<int64_t> FCDenseNetOptions::effective_layers_per_block() const {
  if (layers_per_block_.has_value()) {
    return *layers_per_block_;
  }
  switch (depth_) {
    case 56:
      return std::vector<int64_t>(11, 4);
    case 67:
      return std::vector<int64_t>(11, 5);
    case 103:
      return {4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4};
    default:
      TORCH_CHECK(false, "FC-DenseNet depth must be 56, 67 or 103 (or give layers_per_block), got ",
                  depth_);
  }
}

FCDenseNetImpl::FCDenseNetImpl(FCDenseNetOptions options) : options(std::move(options)) {
  reset();
}

void FCDenseNetImpl::reset() {
  const auto& o = options;
  const int64_t k = o.effective_growth_rate();
  const auto blocks = o.effective_layers_per_block();
  TORCH_CHECK(o.num_classes() >= 1, "FC-DenseNet num_classes must be >= 1, got ",
              o.num_classes());
  TORCH_CHECK(o.in_channels() >= 1, "FC-DenseNet in_channels must be >= 1, got ",
              o.in_channels());
  TORCH_CHECK(k >= 1, "FC-DenseNet growth_rate must be >= 1, got ", k);
  TORCH_CHECK(o.first_channels() >= 1, "FC-DenseNet first_channels must be >= 1, got ",
              o.first_channels());
  TORCH_CHECK(blocks.size() % 2 == 1 && blocks.size() >= 3 && blocks.size() <= 17,
              "FC-DenseNet layers_per_block needs an odd count 2P+1 (P in [1, 8]), got ",
              blocks.size(), " entries: ", c10::Join(", ", blocks));
  for (const int64_t n : blocks) {
    TORCH_CHECK(n >= 1, "FC-DenseNet layers_per_block entries must be >= 1, got ",
                c10::Join(", ", blocks));
  }
  TORCH_CHECK(o.dropout() >= 0.0 && o.dropout() < 1.0,
              "FC-DenseNet dropout must be in [0, 1), got ", o.dropout());
  const size_t pools = blocks.size() / 2;

  first_conv = register_module(
      "first_conv", tnn::Conv2d(tnn::Conv2dOptions(o.in_channels(), o.first_channels(), 3).padding(1)));
  down_blocks = register_module("down_blocks", tnn::ModuleList());
  transitions_down = register_module("transitions_down", tnn::ModuleList());
  transitions_up = register_module("transitions_up", tnn::ModuleList());
  up_blocks = register_module("up_blocks", tnn::ModuleList());

  int64_t m = o.first_channels();
  std::vector<int64_t> skip_channels;
  for (size_t b = 0; b < pools; ++b) {
    down_blocks->push_back(DenseBlock(m, k, blocks[b], o.dropout()));
    m += k * blocks[b];
    skip_channels.push_back(m);
    transitions_down->push_back(TransitionDown(m, o.dropout()));
  }
  bottleneck = register_module("bottleneck", DenseBlock(m, k, blocks[pools], o.dropout()));
  int64_t previous_new = k * blocks[pools];
  int64_t last_stack = 0;
  for (size_t u = 0; u < pools; ++u) {
    transitions_up->push_back(nn::TransposedUpsample(
        nn::TransposedUpsampleOptions(previous_new, previous_new, 2).kernel_size(3)));
    const int64_t in = previous_new + skip_channels[pools - 1 - u];
    const int64_t n = blocks[pools + 1 + u];
    up_blocks->push_back(DenseBlock(in, k, n, o.dropout()));
    previous_new = k * n;
    last_stack = in + k * n;
  }
  head = register_module("head", tnn::Conv2d(tnn::Conv2dOptions(last_stack, o.num_classes(), 1)));

  torch::NoGradGuard no_grad;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<tnn::Conv2d>()) {
      tnn::init::kaiming_uniform_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
      tnn::init::zeros_(conv->bias);
    } else if (auto* deconv = module->as<tnn::ConvTranspose2d>()) {
      tnn::init::kaiming_uniform_(deconv->weight, 0.0, torch::kFanIn, torch::kReLU);
      tnn::init::zeros_(deconv->bias);
    }
  }
}

at::Tensor FCDenseNetImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == options.in_channels(),
              "FC-DenseNet expects input [N,", options.in_channels(), ",H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "FC-DenseNet needs H, W >= 1, got ", x.sizes());
  const size_t pools = down_blocks->size();
  const PaddedInput padded =
      pad_to_multiple(x, int64_t{1} << pools, options.input_padding());

  auto y = first_conv->forward(padded.tensor);
  std::vector<at::Tensor> skips;
  for (size_t b = 0; b < pools; ++b) {
    y = down_blocks[b]->as<DenseBlock>()->forward(y).stack;
    skips.push_back(y);
    y = transitions_down[b]->as<TransitionDown>()->forward(y);
  }
  auto block = bottleneck->as<DenseBlock>()->forward(y);
  for (size_t u = 0; u < pools; ++u) {
    auto up = transitions_up[u]->as<nn::TransposedUpsample>()->forward(block.new_features);
    block = up_blocks[u]->as<DenseBlock>()->forward(at::cat({up, skips[pools - 1 - u]}, 1));
  }
  return crop_to_input(head->forward(block.stack), padded);
}

void FCDenseNetImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::FCDenseNet(num_classes=" << options.num_classes()
         << ", in_channels=" << options.in_channels()
         << ", growth_rate=" << options.effective_growth_rate() << ", layers_per_block=["
         << c10::Join(", ", options.effective_layers_per_block()) << "], first_channels="
         << options.first_channels() << ", dropout=" << options.dropout()
         << ", input_padding=" << to_string(options.input_padding()) << ")";
}

}  // namespace ostrov::models
