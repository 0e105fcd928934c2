#include "ostrov/models/backbones/resnet.h"

#include <algorithm>
#include <array>
#include <memory>

#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/utils.h>

#include "ostrov/nn/conv_bn_act.h"
#include "without_head.h"

namespace ostrov::models {

namespace {

namespace nn = torch::nn;

constexpr std::array<const char*, 5> kStageNames = {"stem", "layer1", "layer2", "layer3", "layer4"};

/// 3x3 convolution, padding = dilation, no bias (torchvision's conv3x3).
nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t groups = 1,
                   int64_t dilation = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3)
                        .stride(stride)
                        .padding(dilation)
                        .groups(groups)
                        .dilation(dilation)
                        .bias(false));
}

/// 1x1 convolution, no bias (torchvision's conv1x1).
nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

/// Arguments of one residual block, as torchvision's BasicBlock/Bottleneck constructors.
struct BlockOptions {
  int64_t inplanes = 64;
  int64_t planes = 64;
  int64_t stride = 1;
  bool downsample = false;  ///< 1x1 conv (stride) + BN on the identity path
  int64_t groups = 1;
  int64_t base_width = 64;
  int64_t dilation = 1;
  /// BasicBlock's second 3x3 conv: the layer's new dilation in the first block of a dilated
  /// layer (whose strided conv keeps the previous one), else `dilation`.
  int64_t dilation2 = 1;
};

/// Identity path of a block: Sequential("0" conv1x1, "1" BatchNorm2d) when needed.
nn::Sequential make_downsample(const BlockOptions& o, int64_t out_channels) {
  return nn::Sequential(conv1x1(o.inplanes, out_channels, o.stride),
                        nn::BatchNorm2d(out_channels));
}

/// Two 3x3 convs (ResNet-18/34). x: [N,inplanes,H,W] -> [N,planes,H/stride,W/stride].
class BasicBlockImpl : public nn::Cloneable<BasicBlockImpl> {
 public:
  static constexpr int64_t kExpansion = 1;

  explicit BasicBlockImpl(BlockOptions options) : options(options) { reset(); }

  void reset() override {
    TORCH_CHECK(options.groups == 1 && options.base_width == 64,
                "ResNet BasicBlock (depth 18/34) only supports groups=1 and width_per_group=64, "
                "got groups=",
                options.groups, ", width_per_group=", options.base_width);
    conv1 = register_module("conv1", conv3x3(options.inplanes, options.planes, options.stride,
                                             /*groups=*/1, options.dilation));
    bn1 = register_module("bn1", nn::BatchNorm2d(options.planes));
    relu = register_module("relu", nn::ReLU(nn::ReLUOptions(/*inplace=*/true)));
    conv2 = register_module("conv2", conv3x3(options.planes, options.planes, /*stride=*/1,
                                             /*groups=*/1, options.dilation2));
    bn2 = register_module("bn2", nn::BatchNorm2d(options.planes));
    if (options.downsample) {
      downsample =
          register_module("downsample", make_downsample(options, options.planes * kExpansion));
    } else {
      downsample = nullptr;
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = relu->forward(ostrov::nn::conv_bn(conv1, bn1, x));
    out = ostrov::nn::conv_bn(conv2, bn2, out);
    out += downsample.is_empty() ? x : downsample->forward(x);
    return relu->forward(out);
  }

  BlockOptions options;
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  nn::ReLU relu{nullptr};
  nn::Conv2d conv2{nullptr};
  nn::BatchNorm2d bn2{nullptr};
  nn::Sequential downsample{nullptr};
};

/// 1x1 -> 3x3 (stride, groups, dilation) -> 1x1 (ResNet-50/101/152, stride on the 3x3 as
/// torchvision). x: [N,inplanes,H,W] -> [N,4*planes,H/stride,W/stride].
class BottleneckImpl : public nn::Cloneable<BottleneckImpl> {
 public:
  static constexpr int64_t kExpansion = 4;

  explicit BottleneckImpl(BlockOptions options) : options(options) { reset(); }

  void reset() override {
    const int64_t width = options.planes * options.base_width / 64 * options.groups;
    const int64_t out_channels = options.planes * kExpansion;
    conv1 = register_module("conv1", conv1x1(options.inplanes, width));
    bn1 = register_module("bn1", nn::BatchNorm2d(width));
    conv2 = register_module(
        "conv2", conv3x3(width, width, options.stride, options.groups, options.dilation));
    bn2 = register_module("bn2", nn::BatchNorm2d(width));
    conv3 = register_module("conv3", conv1x1(width, out_channels));
    bn3 = register_module("bn3", nn::BatchNorm2d(out_channels));
    relu = register_module("relu", nn::ReLU(nn::ReLUOptions(/*inplace=*/true)));
    if (options.downsample) {
      downsample = register_module("downsample", make_downsample(options, out_channels));
    } else {
      downsample = nullptr;
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = relu->forward(ostrov::nn::conv_bn(conv1, bn1, x));
    out = relu->forward(ostrov::nn::conv_bn(conv2, bn2, out));
    out = ostrov::nn::conv_bn(conv3, bn3, out);
    out += downsample.is_empty() ? x : downsample->forward(x);
    return relu->forward(out);
  }

  BlockOptions options;
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  nn::Conv2d conv2{nullptr};
  nn::BatchNorm2d bn2{nullptr};
  nn::Conv2d conv3{nullptr};
  nn::BatchNorm2d bn3{nullptr};
  nn::ReLU relu{nullptr};
  nn::Sequential downsample{nullptr};
};

struct Architecture {
  bool bottleneck;
  std::array<int64_t, 4> blocks;
};

Architecture architecture(int64_t depth) {
  switch (depth) {
    case 18:
      return {false, {2, 2, 2, 2}};
    case 34:
      return {false, {3, 4, 6, 3}};
    case 50:
      return {true, {3, 4, 6, 3}};
    case 101:
      return {true, {3, 4, 23, 3}};
    case 152:
      return {true, {3, 8, 36, 3}};
    default:
      TORCH_CHECK(false, "ResNet depth must be 18, 34, 50, 101 or 152, got ", depth);
  }
}

/// Builds one layer as torchvision's ResNet._make_layer; updates `inplanes` and `dilation`.
template <typename Block>
nn::Sequential make_layer(const ResNetOptions& o, int64_t& inplanes, int64_t& dilation,
                          int64_t planes, int64_t blocks, int64_t stride, bool dilate) {
  const int64_t previous_dilation = dilation;
  if (dilate) {
    dilation *= stride;
    stride = 1;
  }
  nn::Sequential layer;
  BlockOptions first;
  first.inplanes = inplanes;
  first.planes = planes;
  first.stride = stride;
  first.downsample = stride != 1 || inplanes != planes * Block::kExpansion;
  first.groups = o.groups();
  first.base_width = o.width_per_group();
  first.dilation = previous_dilation;
  first.dilation2 = dilation;
  layer->push_back(std::make_shared<Block>(first));
  inplanes = planes * Block::kExpansion;
  for (int64_t i = 1; i < blocks; ++i) {
    BlockOptions next;
    next.inplanes = inplanes;
    next.planes = planes;
    next.groups = o.groups();
    next.base_width = o.width_per_group();
    next.dilation = dilation;
    next.dilation2 = dilation;
    layer->push_back(std::make_shared<Block>(next));
  }
  return layer;
}

void check_input(const torch::Tensor& x) {
  TORCH_CHECK(x.defined(), "ResNet expects input [N,3,H,W], got an undefined tensor");
  TORCH_CHECK(x.dim() == 4 && x.size(1) == 3, "ResNet expects input [N,3,H,W], got ",
              x.sizes());
}

std::string stage_list() {
  std::string out;
  for (const char* n : kStageNames) {
    out += out.empty() ? std::string(n) : ", " + std::string(n);
  }
  return out;
}

}  // namespace

ResNetImpl::ResNetImpl(ResNetOptions options) : options(std::move(options)) { reset(); }

void ResNetImpl::reset() {
  const Architecture arch = architecture(options.depth());
  const auto& dilate = options.replace_stride_with_dilation();
  TORCH_CHECK(dilate.size() == 3,
              "ResNet replace_stride_with_dilation must have 3 entries (layer2..layer4), got ",
              dilate.size());
  TORCH_CHECK(options.num_classes() >= 0, "ResNet num_classes must be >= 0, got ",
              options.num_classes());
  TORCH_CHECK(options.groups() > 0 && options.width_per_group() > 0,
              "ResNet groups and width_per_group must be positive, got groups=",
              options.groups(), ", width_per_group=", options.width_per_group());
  TORCH_CHECK(options.base_channels() > 0, "ResNet base_channels must be positive, got ",
              options.base_channels());

  const int64_t base = options.base_channels();
  int64_t inplanes = base;
  int64_t dilation = 1;
  conv1 = register_module(
      "conv1", nn::Conv2d(nn::Conv2dOptions(3, inplanes, 7).stride(2).padding(3).bias(false)));
  bn1 = register_module("bn1", nn::BatchNorm2d(inplanes));
  relu = register_module("relu", nn::ReLU(nn::ReLUOptions(/*inplace=*/true)));
  maxpool = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));

  const auto build = [&](int64_t planes, int64_t blocks, int64_t stride, bool dil) {
    if (arch.bottleneck) {
      return make_layer<BottleneckImpl>(options, inplanes, dilation, planes, blocks, stride, dil);
    }
    return make_layer<BasicBlockImpl>(options, inplanes, dilation, planes, blocks, stride, dil);
  };
  stage_strides_ = {4, 4};
  layer1 = register_module("layer1", build(base, arch.blocks[0], 1, false));
  std::array<nn::Sequential*, 3> later = {&layer2, &layer3, &layer4};
  for (size_t i = 0; i < 3; ++i) {
    *later[i] = register_module("layer" + std::to_string(i + 2),
                                build((2 * base) << i, arch.blocks[i + 1], 2, dilate[i]));
    stage_strides_.push_back(stage_strides_.back() * (dilate[i] ? 1 : 2));
  }
  if (options.num_classes() > 0) {
    avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})));
    fc = register_module("fc", nn::Linear(8 * base * expansion(), options.num_classes()));
  } else {  // a backbone: features only
    avgpool = nullptr;
    fc = nullptr;
  }

  torch::NoGradGuard no_grad;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
      nn::init::constant_(bn->weight, 1.0);
      nn::init::constant_(bn->bias, 0.0);
    }
  }
  if (options.zero_init_residual()) {
    for (const auto& module : modules(/*include_self=*/false)) {
      if (auto* block = module->as<BottleneckImpl>()) {
        nn::init::constant_(block->bn3->weight, 0.0);
      } else if (auto* basic = module->as<BasicBlockImpl>()) {
        nn::init::constant_(basic->bn2->weight, 0.0);
      }
    }
  }
}

int64_t ResNetImpl::expansion() const {
  return architecture(options.depth()).bottleneck ? BottleneckImpl::kExpansion
                                                  : BasicBlockImpl::kExpansion;
}

torch::Tensor ResNetImpl::run_stage(size_t position, const torch::Tensor& x) {
  switch (position) {
    case 0:
      return maxpool->forward(relu->forward(ostrov::nn::conv_bn(conv1, bn1, x)));
    case 1:
      return layer1->forward(x);
    case 2:
      return layer2->forward(x);
    case 3:
      return layer3->forward(x);
    default:
      return layer4->forward(x);
  }
}

torch::Tensor ResNetImpl::forward(const torch::Tensor& x) {
  check_input(x);
  TORCH_CHECK(!fc.is_empty(), "ResNet built with num_classes 0 is a backbone without a "
              "classifier: use forward_features");
  auto y = x;
  for (size_t k = 0; k < kStageNames.size(); ++k) {
    y = run_stage(k, y);
  }
  y = avgpool->forward(y).flatten(1);
  return fc->forward(y);
}

torch::OrderedDict<std::string, torch::Tensor> ResNetImpl::forward_features(
    const torch::Tensor& x) {
  return forward_features(x, stage_names());
}

torch::OrderedDict<std::string, torch::Tensor> ResNetImpl::forward_features(
    const torch::Tensor& x, const std::vector<std::string>& names) {
  check_input(x);
  std::array<bool, kStageNames.size()> wanted{};
  size_t last = 0;
  for (const auto& name : names) {
    const size_t k = stage_position(name);
    wanted[k] = true;
    last = std::max(last, k);
  }
  torch::OrderedDict<std::string, torch::Tensor> out;
  if (names.empty()) {
    return out;
  }
  auto y = x;
  for (size_t k = 0; k <= last; ++k) {
    y = run_stage(k, y);
    if (wanted[k]) {
      out.insert(kStageNames[k], y);
    }
  }
  return out;
}

size_t ResNetImpl::stage_position(const std::string& name) const {
  for (size_t k = 0; k < kStageNames.size(); ++k) {
    if (name == kStageNames[k]) {
      return k;
    }
  }
  TORCH_CHECK(false, "ResNet has no stage '", name, "'; its stages are: ", stage_list());
}

std::vector<std::string> ResNetImpl::stage_names() const {
  return {kStageNames.begin(), kStageNames.end()};
}

int64_t ResNetImpl::stage_channels(const std::string& name) const {
  const size_t k = stage_position(name);
  const int64_t base = options.base_channels();
  return k == 0 ? base : (base << (k - 1)) * expansion();
}

int64_t ResNetImpl::stage_stride(const std::string& name) const {
  return stage_strides_.at(stage_position(name));
}

void ResNetImpl::load_torchvision(const io::StateDict& state, const std::string& source) {
  detail::load_without_head(*this, state, "fc.", source);
}

void ResNetImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::ResNet(depth=" << options.depth();
  if (options.num_classes() > 0) {
    stream << ", num_classes=" << options.num_classes();
  } else {
    stream << ", backbone";
  }
  if (options.groups() != 1 || options.width_per_group() != 64) {
    stream << ", groups=" << options.groups() << ", width_per_group=" << options.width_per_group();
  }
  if (options.base_channels() != 64) stream << ", base_channels=" << options.base_channels();
  stream << ")";
}

}  // namespace ostrov::models
