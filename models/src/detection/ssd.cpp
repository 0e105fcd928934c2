#include "ostrov/models/detection/ssd.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include <algorithm>
#include <functional>
#include <utility>

#include "ostrov/models/backbones/mobilenet_v3.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/ops/box_coder.h"
#include "ostrov/ops/boxes.h"
#include "ostrov/ops/nms.h"
#include "../backbone_keys.h"
#include "postprocess.h"

namespace ostrov::models {

namespace {

namespace nn = torch::nn;

/// `init_weight` on the weight and zero on the bias of every Conv2d in `module`.
template <typename InitWeight>
void init_convs(nn::Module& module, InitWeight init_weight) {
  torch::NoGradGuard no_grad;
  for (const auto& m : module.modules(/*include_self=*/true)) {
    if (auto* conv = m->as<nn::Conv2d>()) {
      init_weight(conv->weight);
      if (conv->bias.defined()) {
        nn::init::constant_(conv->bias, 0.0);
      }
    }
  }
}

/// torchvision's _xavier_init: xavier_uniform_ weights and zero biases of every Conv2d.
void xavier_init(nn::Module& module) {
  init_convs(module, [](at::Tensor& w) { nn::init::xavier_uniform_(w); });
}

/// A Sequential that can sit inside another Sequential (a non-template forward, as AnyModule
/// needs); its children are named "0", "1", ... like a Sequential's.
class NestedSequentialImpl : public nn::SequentialImpl {
 public:
  using nn::SequentialImpl::SequentialImpl;
  at::Tensor forward(const at::Tensor& x) { return nn::SequentialImpl::forward(x); }
};
TORCH_MODULE(NestedSequential);

nn::ReLU relu() { return nn::ReLU(nn::ReLUOptions(/*inplace=*/true)); }

/// torchvision's _normal_init: normal(0, 0.03) weights and zero biases of every Conv2d
/// (SSDLite's backbone without ImageNet weights, extra stages and heads).
void normal_init(nn::Module& module) {
  init_convs(module, [](at::Tensor& w) { nn::init::normal_(w, 0.0, 0.03); });
}

/// SSDLite's BatchNorm2d: eps 0.001, momentum 0.03 (torchvision's ssdlite320 norm_layer).
constexpr double kLiteBnEps = 0.001;
constexpr double kLiteBnMomentum = 0.03;

/// torchvision's Conv2dNormActivation with ReLU6 as SSDLite builds it: "0" Conv2d (no bias,
/// padding (k - 1) / 2), "1" BatchNorm2d, "2" ReLU6.
NestedSequential conv_bn_relu6(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                               int64_t groups) {
  return NestedSequential(
      nn::Conv2d(nn::Conv2dOptions(in, out, kernel)
                     .stride(stride)
                     .padding((kernel - 1) / 2)
                     .groups(groups)
                     .bias(false)),
      nn::BatchNorm2d(nn::BatchNorm2dOptions(out).eps(kLiteBnEps).momentum(kLiteBnMomentum)),
      nn::ReLU6(nn::ReLU6Options(/*inplace=*/true)));
}

/// Output side of a 3x3 stride-2 padding-1 conv or pool (also ResNet's 7x7/2/3 conv1).
int64_t halve(int64_t side) { return (side - 1) / 2 + 1; }

void check_maps(const std::vector<at::Tensor>& maps, size_t expected, const char* who) {
  TORCH_CHECK(maps.size() == expected, who, " expects ", expected, " feature maps, got ",
              maps.size());
}

}  // namespace

// ---------------------------------------------------------------------------------- options

SSDOptions SSDOptions::ssd300_vgg16(int64_t num_classes) { return SSDOptions(num_classes); }

SSDOptions SSDOptions::ssdlite320_mobilenet_v3_large(int64_t num_classes) {
  SSDOptions o(num_classes);
  o.backbone("mobilenet_v3_large")
      .head("ssdlite")
      .image_size(320)
      .box_options(ops::DefaultBoxOptions(std::vector<std::vector<double>>(6, {2, 3}))
                       .min_ratio(0.2)
                       .max_ratio(0.95))
      .image_mean({0.5, 0.5, 0.5})
      .image_std({0.5, 0.5, 0.5})
      .postprocess(SSDPostprocessOptions()
                       .score_threshold(0.001)
                       .nms_threshold(0.55)
                       .topk_candidates(300)
                       .detections_per_image(300));
  return o;
}

SSDOptions SSDOptions::light(int64_t num_classes, int64_t image_size) {
  SSDOptions o(num_classes);
  o.backbone("resnet18")
      .image_size(image_size)
      .num_extra(3)
      .box_options(
          ops::DefaultBoxOptions({{2}, {2, 3}, {2, 3}, {2}, {2}}).min_ratio(0.1).max_ratio(0.9))
      .image_mean({0.485, 0.456, 0.406})
      .image_std({0.229, 0.224, 0.225});
  return o;
}

// ------------------------------------------------------------------------------ VGG backbone

SSDVGGBackboneImpl::SSDVGGBackboneImpl() { reset(); }

void SSDVGGBackboneImpl::reset() {
  // VGG-16's `features` as torchvision's make_layers (config D) with its initialisation
  // (kaiming_normal_ fan_out / relu, zero bias), built here rather than through VGG so the
  // 120M-parameter classifier is never allocated. Max-pools sit at 4, 9, 16, 23, 30.
  nn::Sequential layers;
  {
    torch::NoGradGuard no_grad;
    int64_t in = 3;
    const int64_t pool = 0;
    for (const int64_t v : {64L, 64L, pool, 128L, 128L, pool, 256L, 256L, 256L, pool, 512L, 512L,
                            512L, pool, 512L, 512L, 512L}) {
      if (v == pool) {
        // maxpool3 (index 16) with ceil_mode, as torchvision patches it for the paper's sizes.
        layers->push_back(
            nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2).ceil_mode(layers->size() == 16)));
        continue;
      }
      nn::Conv2d conv(nn::Conv2dOptions(in, v, 3).padding(1));
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      nn::init::constant_(conv->bias, 0.0);
      layers->push_back(conv);
      layers->push_back(relu());
      in = v;
    }
  }
  TORCH_INTERNAL_ASSERT(layers->size() == 30, "VGG-16 features has ", layers->size(), " layers");

  scale_weight = register_parameter("scale_weight", torch::ones({512}) * 20.0);

  features = nn::Sequential();
  for (size_t i = 0; i < 23; ++i) {  // up to relu4_3 (maxpool4 excluded)
    features->push_back(*(layers->begin() + static_cast<std::ptrdiff_t>(i)));
  }
  features = register_module("features", features);

  NestedSequential fc(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(1).padding(1)),         // pool5
                      nn::Conv2d(nn::Conv2dOptions(512, 1024, 3).padding(6).dilation(6)),  // fc6
                      relu(),                                                              //
                      nn::Conv2d(nn::Conv2dOptions(1024, 1024, 1)),                        // fc7
                      relu());
  xavier_init(*fc);
  nn::Sequential block0;
  for (size_t i = 23; i < 30; ++i) {  // maxpool4, conv5_1..conv5_3 (maxpool5 skipped)
    block0->push_back(*(layers->begin() + static_cast<std::ptrdiff_t>(i)));
  }
  block0->push_back(fc);

  auto extra_block = [](int64_t in, int64_t mid, int64_t out, bool stride2) {
    auto conv = nn::Conv2dOptions(mid, out, 3);
    if (stride2) {
      conv.stride(2).padding(1);
    }
    return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, mid, 1)), relu(), nn::Conv2d(conv),
                          relu());
  };
  nn::ModuleList extras;
  extras->push_back(extra_block(1024, 256, 512, true));  // conv8_2
  extras->push_back(extra_block(512, 128, 256, true));   // conv9_2
  extras->push_back(extra_block(256, 128, 256, false));  // conv10_2
  extras->push_back(extra_block(256, 128, 256, false));  // conv11_2
  xavier_init(*extras);

  nn::ModuleList all;
  all->push_back(block0);
  for (const auto& m : *extras) {
    all->push_back(m);
  }
  extra = register_module("extra", all);
}

std::vector<at::Tensor> SSDVGGBackboneImpl::forward_maps(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3,
              "SSD VGG backbone expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  auto y = features->forward(x);
  std::vector<at::Tensor> maps;
  namespace F = torch::nn::functional;
  maps.push_back(scale_weight.view({1, -1, 1, 1}) *
                 F::normalize(y, F::NormalizeFuncOptions().p(2.0).dim(1).eps(1e-12)));
  for (const auto& block : *extra) {
    y = block->as<nn::Sequential>()->forward(y);
    maps.push_back(y);
  }
  return maps;
}

std::vector<int64_t> SSDVGGBackboneImpl::out_channels() const {
  return {512, 1024, 512, 256, 256, 256};
}

std::vector<ops::GridSize> SSDVGGBackboneImpl::grid_sizes(int64_t /*image_size*/) const {
  return ops::ssd300_grid_sizes();  // SSD300 only takes 300x300 (SSDImpl checks)
}

std::string SSDVGGBackboneImpl::key_from_classifier(const std::string& key) const {
  // vgg16's features.0-22 stay, features.23-29 (pool4, conv5_x) become extra.0.0-6, as
  // torchvision's SSDFeatureExtractorVGG takes them; classifier.* has no place here.
  const std::string prefix = "features.";
  if (key.rfind(prefix, 0) != 0) return "";
  const auto dot = key.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const int64_t index = std::stoll(key.substr(prefix.size(), dot - prefix.size()));
  const std::string rest = key.substr(dot);
  return index < 23 ? prefix + std::to_string(index) + rest
                    : "extra.0." + std::to_string(index - 23) + rest;
}

bool SSDVGGBackboneImpl::ssd_only(const std::string& key) const {
  // The L2Norm scale, fc6/fc7 (extra.0.7) and the extra stages extra.1-4.
  return key == "scale_weight" || key.rfind("extra.0.7.", 0) == 0 ||
         (key.rfind("extra.", 0) == 0 && key.rfind("extra.0.", 0) != 0);
}

// --------------------------------------------------------------------------- ResNet backbone

SSDResNetBackboneImpl::SSDResNetBackboneImpl(int64_t num_extra, int64_t base_channels)
    : num_extra(num_extra), base_channels(base_channels) {
  reset();
}

void SSDResNetBackboneImpl::reset() {
  TORCH_CHECK(num_extra >= 0, "SSD ResNet backbone num_extra must be >= 0, got ", num_extra);
  ResNet resnet(ResNetOptions(18).num_classes(0).base_channels(base_channels));
  conv1 = register_module("conv1", resnet->conv1);
  bn1 = register_module("bn1", resnet->bn1);
  layer1 = register_module("layer1", resnet->layer1);
  layer2 = register_module("layer2", resnet->layer2);
  layer3 = register_module("layer3", resnet->layer3);
  layer4 = register_module("layer4", resnet->layer4);
  extra = nn::ModuleList();
  const int64_t squeeze = 2 * base_channels, out = 4 * base_channels;
  int64_t in = 8 * base_channels;
  for (int64_t i = 0; i < num_extra; ++i) {
    extra->push_back(nn::Sequential(
        nn::Conv2d(nn::Conv2dOptions(in, squeeze, 1).bias(false)), nn::BatchNorm2d(squeeze),
        relu(), nn::Conv2d(nn::Conv2dOptions(squeeze, out, 3).stride(2).padding(1).bias(false)),
        nn::BatchNorm2d(out), relu()));
    in = out;
  }
  extra = register_module("extra", extra);
}

std::vector<at::Tensor> SSDResNetBackboneImpl::forward_stages(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3,
              "SSD ResNet backbone expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  auto y = at::relu(bn1->forward(conv1->forward(x)));
  y = at::max_pool2d(y, {3, 3}, {2, 2}, {1, 1});
  std::vector<at::Tensor> stages;
  for (auto* layer : {&layer1, &layer2, &layer3, &layer4}) {
    y = (*layer)->forward(y);
    stages.push_back(y);
  }
  for (const auto& block : *extra) {
    y = block->as<nn::Sequential>()->forward(y);
    stages.push_back(y);
  }
  return stages;
}

std::vector<at::Tensor> SSDResNetBackboneImpl::forward_maps(const at::Tensor& x) {
  auto stages = forward_stages(x);
  return {stages.begin() + 2, stages.end()};
}

std::vector<int64_t> SSDResNetBackboneImpl::out_channels() const {
  std::vector<int64_t> channels{4 * base_channels, 8 * base_channels};
  channels.resize(static_cast<size_t>(2 + num_extra), 4 * base_channels);
  return channels;
}

std::vector<ops::GridSize> SSDResNetBackboneImpl::grid_sizes(int64_t image_size) const {
  int64_t side = halve(halve(image_size));  // conv1, maxpool
  side = halve(halve(side));                // layer2, layer3
  std::vector<ops::GridSize> grids{{side, side}};
  for (int64_t i = 0; i <= num_extra; ++i) {  // layer4 and the extras
    side = halve(side);
    grids.push_back({side, side});
  }
  return grids;
}

std::string SSDResNetBackboneImpl::key_from_classifier(const std::string& key) const {
  return key.rfind("fc.", 0) == 0 ? "" : key;
}

bool SSDResNetBackboneImpl::ssd_only(const std::string& key) const {
  return key.rfind("extra.", 0) == 0;
}

// ------------------------------------------------------------------ MobileNetV3 (SSDLite)

SSDLiteMobileNetBackboneImpl::SSDLiteMobileNetBackboneImpl(bool reduced_tail)
    : reduced_tail(reduced_tail) {
  reset();
}

void SSDLiteMobileNetBackboneImpl::reset() {
  auto split = split_mobilenet_v3_at_c4(
      MobileNetV3Options("large").num_classes(0).reduced_tail(reduced_tail).bn_momentum(
          kLiteBnMomentum));
  c4_position_ = split.c4_position;
  features = nn::ModuleList(split.first, split.second);
  features = register_module("features", features);

  // torchvision's _extra_block: 1x1 to out/2, 3x3 stride-2 depthwise, 1x1 to out, all
  // conv-BN-ReLU6 (width_mult 1, min_depth 16 leave 512, 256, 256, 128 as they are).
  channels_ = {split.first_channels, split.second_channels};
  extra = nn::ModuleList();
  int64_t in = split.second_channels;
  for (const int64_t out : {512L, 256L, 256L, 128L}) {
    const int64_t mid = out / 2;
    extra->push_back(nn::Sequential(conv_bn_relu6(in, mid, 1, 1, 1),
                                    conv_bn_relu6(mid, mid, 3, 2, mid),
                                    conv_bn_relu6(mid, out, 1, 1, 1)));
    channels_.push_back(out);
    in = out;
  }
  extra = register_module("extra", extra);
  normal_init(*features);
  normal_init(*extra);
}

std::vector<at::Tensor> SSDLiteMobileNetBackboneImpl::forward_maps(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3,
              "SSDLite MobileNetV3 backbone expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  std::vector<at::Tensor> maps;
  auto y = x;
  for (const auto* list : {&features, &extra}) {
    for (const auto& block : **list) {
      y = block->as<nn::Sequential>()->forward(y);
      maps.push_back(y);
    }
  }
  return maps;
}

std::vector<int64_t> SSDLiteMobileNetBackboneImpl::out_channels() const { return channels_; }

std::vector<ops::GridSize> SSDLiteMobileNetBackboneImpl::grid_sizes(int64_t image_size) const {
  // Every strided layer is a k x k stride-2 conv padded (k - 1) / 2 (k = 3 or 5): four before
  // the C4 expansion (stride 16), then block 13's depthwise conv and the four extra stages.
  int64_t side = halve(halve(halve(halve(image_size))));
  std::vector<ops::GridSize> grids{{side, side}};
  for (int i = 0; i < 5; ++i) {
    side = halve(side);
    grids.push_back({side, side});
  }
  return grids;
}

std::string SSDLiteMobileNetBackboneImpl::key_from_classifier(const std::string& key) const {
  // features.i (i < c4) -> features.0.i; features.c4.block.0 -> features.0.c4;
  // features.c4.block.j -> features.1.0.j; features.i (i > c4) -> features.1.(i - c4).
  const std::string prefix = "features.";
  if (key.rfind(prefix, 0) != 0) return "";  // classifier.*
  const auto dot = key.find('.', prefix.size());
  if (dot == std::string::npos) return "";
  const int64_t index = std::stoll(key.substr(prefix.size(), dot - prefix.size()));
  const std::string rest = key.substr(dot);  // ".0.weight", ".block.1.0.weight", ...
  if (index < c4_position_) return "features.0." + std::to_string(index) + rest;
  if (index > c4_position_) return "features.1." + std::to_string(index - c4_position_) + rest;
  const std::string block = ".block.";
  if (rest.rfind(block, 0) != 0) return "";
  const auto part_end = rest.find('.', block.size());
  const std::string part = rest.substr(block.size(), part_end - block.size());
  const std::string tail = rest.substr(part_end);
  if (part == "0") return "features.0." + std::to_string(c4_position_) + tail;
  return "features.1.0." + part + tail;
}

bool SSDLiteMobileNetBackboneImpl::ssd_only(const std::string& key) const {
  return key.rfind("extra.", 0) == 0;
}

// ---------------------------------------------------------------------------------- heads

SSDScoringHeadImpl::SSDScoringHeadImpl(std::vector<int64_t> in_channels,
                                       std::vector<int64_t> num_anchors, int64_t num_columns,
                                       bool separable)
    : in_channels(std::move(in_channels)),
      num_anchors(std::move(num_anchors)),
      num_columns(num_columns),
      separable(separable) {
  reset();
}

void SSDScoringHeadImpl::reset() {
  TORCH_CHECK(in_channels.size() == num_anchors.size(), "SSD head: ", in_channels.size(),
              " feature maps but ", num_anchors.size(), " anchor counts");
  TORCH_CHECK(num_columns > 0, "SSD head num_columns must be positive, got ", num_columns);
  module_list = nn::ModuleList();
  for (size_t i = 0; i < in_channels.size(); ++i) {
    const int64_t in = in_channels[i], out = num_anchors[i] * num_columns;
    if (separable) {  // torchvision's ssdlite _prediction_block
      module_list->push_back(nn::Sequential(conv_bn_relu6(in, in, 3, 1, in),
                                            nn::Conv2d(nn::Conv2dOptions(in, out, 1))));
    } else {
      module_list->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)));
    }
  }
  if (separable) {
    normal_init(*module_list);
  } else {
    xavier_init(*module_list);
  }
  module_list = register_module("module_list", module_list);
}

at::Tensor SSDScoringHeadImpl::forward(const std::vector<at::Tensor>& maps) {
  check_maps(maps, module_list->size(), "SSD head");
  std::vector<at::Tensor> results;
  results.reserve(maps.size());
  for (size_t i = 0; i < maps.size(); ++i) {
    const auto& layer = module_list->ptr(i);
    auto r = separable ? layer->as<nn::Sequential>()->forward(maps[i])
                       : layer->as<nn::Conv2d>()->forward(maps[i]);
    const int64_t n = r.size(0), h = r.size(2), w = r.size(3);
    // (N, A*K, H, W) -> (N, A, K, H, W) -> (N, H, W, A, K) -> (N, HWA, K), as torchvision.
    r = r.view({n, -1, num_columns, h, w}).permute({0, 3, 4, 1, 2}).reshape({n, -1, num_columns});
    results.push_back(r);
  }
  return at::cat(results, 1);
}

SSDHeadImpl::SSDHeadImpl(std::vector<int64_t> in_channels, std::vector<int64_t> num_anchors,
                         int64_t num_classes, bool separable)
    : in_channels(std::move(in_channels)),
      num_anchors(std::move(num_anchors)),
      num_classes(num_classes),
      separable(separable) {
  reset();
}

void SSDHeadImpl::reset() {
  classification_head = register_module(
      "classification_head", SSDScoringHead(in_channels, num_anchors, num_classes, separable));
  regression_head =
      register_module("regression_head", SSDScoringHead(in_channels, num_anchors, 4, separable));
}

// ------------------------------------------------------------------------ backbone table

namespace {

/// A backbone of the table below: checks the options, builds the module, lists its layers
/// for receptive-field tables.
struct SSDBackboneKind {
  const char* name;
  std::function<void(const SSDOptions&)> check;
  std::function<std::shared_ptr<nn::Module>(const SSDOptions&)> make;
  std::function<std::vector<ostrov::nn::LayerSpec>(const SSDOptions&)> layers;
};

/// `count` extra stages, each ending in a 3x3 stride-2 (padding 1) conv.
void add_strided_extras(std::vector<ostrov::nn::LayerSpec>& layers, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    layers.push_back(detail::conv("extra." + std::to_string(i), 3, 2, 1));
  }
}

std::vector<ostrov::nn::LayerSpec> vgg_layers(const SSDOptions&) {
  // VGG-16 to conv5_3 (its pool5 replaced), fc6 (dilation 6), conv8_2 and conv9_2 (stride 2),
  // conv10_2 and conv11_2 (3x3 without padding).
  auto layers = ostrov::nn::vgg16_layers();
  layers.pop_back();
  layers.push_back(detail::pool("pool5", 3, 1, 1));
  layers.push_back(detail::conv("fc6", 3, 1, 6, 6));
  layers.push_back(detail::conv("extra.1", 3, 2, 1));
  layers.push_back(detail::conv("extra.2", 3, 2, 1));
  layers.push_back(detail::conv("extra.3", 3, 1, 0));
  layers.push_back(detail::conv("extra.4", 3, 1, 0));
  return layers;
}

std::vector<ostrov::nn::LayerSpec> mobilenet_layers(const SSDOptions&) {
  auto layers = detail::mobilenet_v3_layers(BackboneOptions("mobilenet_v3_large"));
  add_strided_extras(layers, 4);  // each extra's 3x3 depthwise conv
  return layers;
}

std::vector<ostrov::nn::LayerSpec> resnet_layers(const SSDOptions& o) {
  auto layers = detail::resnet_layers(18, 32);
  add_strided_extras(layers, o.num_extra());
  return layers;
}

void check_default_width(const SSDOptions& o) {
  TORCH_CHECK(o.backbone_channels() == 64, "SSD backbone_channels applies to the \"resnet18\" "
              "backbone only (", o.backbone(), " is fixed), got ", o.backbone_channels());
}

const std::vector<SSDBackboneKind>& ssd_backbones() {
  static const std::vector<SSDBackboneKind> kinds = {
      {"vgg16",
       [](const SSDOptions& o) {
         TORCH_CHECK(o.image_size() == 300, "SSD backbone \"vgg16\" is SSD300 and needs "
                     "image_size 300, got ", o.image_size());
         check_default_width(o);
       },
       [](const SSDOptions&) { return SSDVGGBackbone().ptr(); }, vgg_layers},
      {"mobilenet_v3_large", check_default_width,
       [](const SSDOptions& o) { return SSDLiteMobileNetBackbone(o.reduced_tail()).ptr(); },
       mobilenet_layers},
      {"resnet18", [](const SSDOptions&) {},
       [](const SSDOptions& o) {
         return SSDResNetBackbone(o.num_extra(), o.backbone_channels()).ptr();
       },
       resnet_layers},
  };
  return kinds;
}

const SSDBackboneKind& ssd_backbone(const std::string& name) {
  std::string known;
  for (const auto& k : ssd_backbones()) {
    if (name == k.name) return k;
    known += (known.empty() ? "\"" : ", \"") + std::string(k.name) + "\"";
  }
  TORCH_CHECK(false, "SSD backbone must be one of ", known, ", got \"", name, "\"");
}

}  // namespace

// ------------------------------------------------------------------------------------ SSD

SSDImpl::SSDImpl(SSDOptions options) : options(std::move(options)) { reset(); }

void SSDImpl::reset() {
  TORCH_CHECK(options.num_classes() >= 2,
              "SSD num_classes counts the background and must be >= 2, got ",
              options.num_classes());
  TORCH_CHECK(options.image_size() >= 32, "SSD image_size must be >= 32, got ",
              options.image_size());
  TORCH_CHECK(options.image_mean().size() == 3 && options.image_std().size() == 3,
              "SSD image_mean and image_std need 3 values, got ", options.image_mean().size(),
              " and ", options.image_std().size());
  TORCH_CHECK(options.head() == "ssd" || options.head() == "ssdlite",
              "SSD head must be \"ssd\" or \"ssdlite\", got \"", options.head(), "\"");
  const SSDBackboneKind& kind = ssd_backbone(options.backbone());
  kind.check(options);
  backbone = register_module("backbone", kind.make(options));
  backbone_maps_ = dynamic_cast<SSDBackbone*>(backbone.get());
  TORCH_INTERNAL_ASSERT(backbone_maps_ != nullptr, "SSD backbone ", kind.name,
                        " is not an SSDBackbone");
  generator_ = std::make_shared<ops::DefaultBoxGenerator>(options.box_options());
  const auto channels = backbone_maps_->out_channels();
  TORCH_CHECK(channels.size() == options.box_options().aspect_ratios().size(), "SSD backbone \"",
              options.backbone(), "\" gives ", channels.size(),
              " feature maps but box_options has aspect ratios for ",
              options.box_options().aspect_ratios().size());
  head = register_module("head", SSDHead(channels, generator_->num_anchors_per_location(),
                                         options.num_classes(), options.head() == "ssdlite"));
  cached_grids_.clear();
  cached_priors_ = at::Tensor();
}

std::vector<at::Tensor> SSDImpl::forward_maps(const at::Tensor& x) {
  return backbone_maps_->forward_maps(x);
}

SSDOutput SSDImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3, "SSD expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  return forward_heads(forward_maps(x), {x.size(2), x.size(3)});
}

SSDOutput SSDImpl::forward_heads(const std::vector<at::Tensor>& maps, ops::GridSize image_size) {
  TORCH_CHECK(!maps.empty(), "SSD::forward_heads: no feature maps");
  SSDOutput out;
  out.locations = head->regression_head->forward(maps);
  out.scores = head->classification_head->forward(maps);
  std::vector<ops::GridSize> grids;
  for (const auto& m : maps) {
    grids.push_back({m.size(2), m.size(3)});
  }
  out.image_size = image_size;
  out.priors = priors_for(grids, out.image_size, maps[0]);
  return out;
}

at::Tensor SSDImpl::priors_for(const std::vector<ops::GridSize>& grids, ops::GridSize image_size,
                               const at::Tensor& like) {
  if (!cached_priors_.defined() || grids != cached_grids_ || image_size != cached_image_size_) {
    cached_priors_ = generator_->forward(grids, image_size, at::kFloat);
    cached_grids_ = grids;
    cached_image_size_ = image_size;
  }
  if (cached_priors_.device() != like.device()) {
    cached_priors_ = cached_priors_.to(like.device());
  }
  return cached_priors_;
}

at::Tensor SSDImpl::priors() {
  const int64_t s = options.image_size();
  return priors_for(backbone_maps_->grid_sizes(s), {s, s}, at::empty({0}));
}

std::vector<int64_t> SSDImpl::num_anchors_per_location() const {
  return generator_->num_anchors_per_location();
}

at::Tensor SSDImpl::preprocess(const at::Tensor& images) const {
  return ssd_preprocess(images, options.image_size(), options.image_mean(), options.image_std());
}

std::vector<Detections> SSDImpl::postprocess(
    const SSDOutput& output, const std::vector<ops::GridSize>& original_sizes) const {
  return ssd_postprocess(output.locations, output.scores, output.priors, output.image_size,
                         original_sizes, options.postprocess());
}

void SSDImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::SSD(backbone=" << options.backbone() << ", head=" << options.head()
         << ", num_classes=" << options.num_classes() << ", image_size=" << options.image_size()
         << ")";
}

std::vector<ostrov::nn::LayerSpec> ssd_receptive_field_layers(const SSDOptions& options) {
  return ssd_backbone(options.backbone()).layers(options);
}

// ---------------------------------------------------------------------- pre/post-processing

at::Tensor ssd_preprocess(const at::Tensor& images, int64_t size, const std::vector<double>& mean,
                          const std::vector<double>& stddev) {
  TORCH_CHECK(images.defined() && (images.dim() == 3 || images.dim() == 4),
              "ssd_preprocess expects images [3,H,W] or [N,3,H,W], got ",
              images.defined() ? images.sizes() : at::IntArrayRef{});
  const auto x = images.dim() == 3 ? images.unsqueeze(0) : images;
  TORCH_CHECK(x.size(1) == 3, "ssd_preprocess expects 3 channels, got ", images.sizes());
  TORCH_CHECK(x.is_floating_point(), "ssd_preprocess expects a floating image in [0,1], got ",
              x.scalar_type());
  TORCH_CHECK(mean.size() == 3 && stddev.size() == 3,
              "ssd_preprocess needs 3 means and 3 stds, got ", mean.size(), " and ", stddev.size());
  TORCH_CHECK(size > 0, "ssd_preprocess size must be positive, got ", size);
  // As GeneralizedRCNNTransform: normalise (mean and std as tensors of the image's dtype),
  // then F.interpolate(size, mode="bilinear", align_corners=False).
  const auto m = at::tensor(mean, at::kDouble).to(x.options()).view({1, 3, 1, 1});
  const auto s = at::tensor(stddev, at::kDouble).to(x.options()).view({1, 3, 1, 1});
  const auto normalised = (x - m) / s;
  return at::upsample_bilinear2d(normalised, {size, size}, /*align_corners=*/false);
}

std::vector<Detections> ssd_postprocess(const at::Tensor& locations, const at::Tensor& logits,
                                        const at::Tensor& priors, ops::GridSize image_size,
                                        const std::vector<ops::GridSize>& original_sizes,
                                        const SSDPostprocessOptions& options) {
  TORCH_CHECK(locations.defined() && locations.dim() == 3 && locations.size(2) == 4,
              "ssd_postprocess: locations should be [N,P,4], got ",
              locations.defined() ? locations.sizes() : at::IntArrayRef{});
  TORCH_CHECK(logits.defined() && logits.dim() == 3 && logits.size(0) == locations.size(0) &&
                  logits.size(1) == locations.size(1) && logits.size(2) >= 2,
              "ssd_postprocess: logits should be [N,P,C] with C >= 2 matching locations ",
              locations.sizes(), ", got ", logits.defined() ? logits.sizes() : at::IntArrayRef{});
  TORCH_CHECK(priors.defined() && priors.dim() == 2 && priors.size(0) == locations.size(1) &&
                  priors.size(1) == 4,
              "ssd_postprocess: priors should be [", locations.size(1), ",4], got ",
              priors.defined() ? priors.sizes() : at::IntArrayRef{});
  const int64_t n = locations.size(0);
  TORCH_CHECK(original_sizes.empty() || static_cast<int64_t>(original_sizes.size()) == n,
              "ssd_postprocess: ", original_sizes.size(), " original sizes for ", n, " images");
  TORCH_CHECK(options.topk_candidates() > 0 && options.detections_per_image() > 0,
              "ssd_postprocess: topk_candidates and detections_per_image must be positive, got ",
              options.topk_candidates(), " and ", options.detections_per_image());

  const ops::BoxCoder coder({10.0, 10.0, 5.0, 5.0});
  const auto probabilities = at::softmax(logits, -1);
  std::vector<Detections> detections;
  detections.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    auto boxes = coder.decode(locations[i], priors);
    boxes = ops::clip_boxes_to_image(boxes, image_size[0], image_size[1]);
    // Label 0 is the background: the candidates are the other columns.
    detections.push_back(detail::select_detections(
        boxes, probabilities[i].slice(1, 1), options, image_size,
        original_sizes.empty() ? nullptr : &original_sizes[static_cast<size_t>(i)]));
  }
  return detections;
}

namespace detail {

Detections select_detections(const at::Tensor& boxes, const at::Tensor& scores,
                             const SSDPostprocessOptions& options, ops::GridSize input,
                             const ops::GridSize* original) {
  std::vector<at::Tensor> image_boxes, image_scores, image_labels;
  for (int64_t column = 0; column < scores.size(1); ++column) {
    auto score = scores.select(1, column);
    const auto keep = score > options.score_threshold();
    score = score.index({keep});
    auto box = boxes.index({keep});
    const int64_t k = std::min(options.topk_candidates(), score.size(0));
    auto top = score.topk(k);
    image_boxes.push_back(box.index_select(0, std::get<1>(top)));
    image_scores.push_back(std::get<0>(top));
    image_labels.push_back(at::full({k}, column + 1, score.options().dtype(at::kLong)));
  }
  const auto all_boxes = at::cat(image_boxes, 0);
  const auto all_scores = at::cat(image_scores, 0);
  const auto all_labels = at::cat(image_labels, 0);
  auto keep = ops::batched_nms(all_boxes, all_scores, all_labels, options.nms_threshold());
  keep = keep.slice(0, 0, options.detections_per_image());
  Detections d{all_boxes.index_select(0, keep), all_scores.index_select(0, keep),
               all_labels.index_select(0, keep)};
  if (original != nullptr) {
    // torchvision's resize_boxes: float32 ratios new / old, one multiply per coordinate.
    const float ratio_h = static_cast<float>((*original)[0]) / static_cast<float>(input[0]);
    const float ratio_w = static_cast<float>((*original)[1]) / static_cast<float>(input[1]);
    const auto c = d.boxes.unbind(1);
    d.boxes = at::stack({c[0] * ratio_w, c[1] * ratio_h, c[2] * ratio_w, c[3] * ratio_h}, 1);
  }
  return d;
}

}  // namespace detail

}  // namespace ostrov::models
