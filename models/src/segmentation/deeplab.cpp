#include "ostrov/models/segmentation/deeplab.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/pooling.h>

#include "ostrov/models/backbones/mobilenet_v3.h"
#include "resnet_encoder.h"

namespace ostrov::models {

namespace {

namespace tnn = torch::nn;

/// Bilinear, align_corners false: torchvision's F.interpolate(x, size, mode="bilinear").
at::Tensor resize(const at::Tensor& y, int64_t h, int64_t w) {
  if (y.size(2) == h && y.size(3) == w) return y;
  return at::upsample_bilinear2d(y, {h, w}, /*align_corners=*/false);
}

tnn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t dilation = 1, bool bias = false) {
  return tnn::Conv2d(tnn::Conv2dOptions(in, out, k)
                         .padding(k == 1 ? 0 : dilation)
                         .dilation(dilation)
                         .bias(bias));
}

/// ASPP's image-pooling branch: "1" 1x1 conv, "2" BN, then ReLU, broadcast back to h x w.
class ASPPPoolingImpl : public tnn::Cloneable<ASPPPoolingImpl> {
 public:
  ASPPPoolingImpl(int64_t in, int64_t out) : in_(in), out_(out) { reset(); }
  void reset() override {
    conv1 = register_module("1", conv(in_, out_, 1));
    bn = register_module("2", tnn::BatchNorm2d(out_));
  }
  at::Tensor forward(const at::Tensor& x) {
    TORCH_CHECK(!is_training() || x.size(0) > 1,
                "ASPP: the image-pooling branch's batch norm needs more than one value "
                "per channel in training mode; got a batch of ",
                x.size(0), " (use a batch of at least 2, or eval mode)");
    auto y = at::relu(bn->forward(conv1->forward(at::adaptive_avg_pool2d(x, {1, 1}))));
    // Up-sampling a 1x1 map bilinearly is a broadcast.
    return y.expand({y.size(0), y.size(1), x.size(2), x.size(3)});
  }
  tnn::Conv2d conv1{nullptr};
  tnn::BatchNorm2d bn{nullptr};

 private:
  int64_t in_, out_;
};
TORCH_MODULE(ASPPPooling);

/// ASPP: "convs" (1x1, one 3x3 per rate, pooling) concatenated, then "project".
class ASPPImpl : public tnn::Cloneable<ASPPImpl> {
 public:
  ASPPImpl(int64_t in, std::vector<int64_t> rates, int64_t out = 256)
      : in_(in), out_(out), rates_(std::move(rates)) {
    reset();
  }
  void reset() override {
    convs = register_module("convs", tnn::ModuleList());
    convs->push_back(tnn::Sequential(conv(in_, out_, 1), tnn::BatchNorm2d(out_), tnn::ReLU()));
    for (const int64_t rate : rates_) {
      convs->push_back(
          tnn::Sequential(conv(in_, out_, 3, rate), tnn::BatchNorm2d(out_), tnn::ReLU()));
    }
    convs->push_back(ASPPPooling(in_, out_));
    const auto branches = static_cast<int64_t>(convs->size());
    project = register_module("project",
                              tnn::Sequential(conv(branches * out_, out_, 1),
                                              tnn::BatchNorm2d(out_), tnn::ReLU(),
                                              tnn::Dropout(0.5)));
  }
  at::Tensor forward(const at::Tensor& x) {
    std::vector<at::Tensor> parts;
    for (size_t i = 0; i + 1 < convs->size(); ++i) {
      parts.push_back(convs[i]->as<tnn::Sequential>()->forward(x));
    }
    parts.push_back(convs[convs->size() - 1]->as<ASPPPooling>()->forward(x));
    return project->forward(at::cat(parts, 1));
  }
  tnn::ModuleList convs{nullptr};
  tnn::Sequential project{nullptr};

 private:
  int64_t in_, out_;
  std::vector<int64_t> rates_;
};
TORCH_MODULE(ASPP);

/// torchvision's FCNHead: 3x3 conv C -> C/4, BN, ReLU, dropout 0.1, 1x1 conv -> K.
tnn::Sequential fcn_head(int64_t in, int64_t num_classes) {
  const int64_t inter = in / 4;
  return tnn::Sequential(conv(in, inter, 3), tnn::BatchNorm2d(inter), tnn::ReLU(),
                         tnn::Dropout(0.1), conv(inter, num_classes, 1, 1, /*bias=*/true));
}

/// torchvision's DeepLabHead: ASPP, 3x3 conv 256 -> 256, BN, ReLU, 1x1 conv -> K.
tnn::Sequential deeplab_head(int64_t in, int64_t num_classes, const std::vector<int64_t>& rates) {
  return tnn::Sequential(ASPP(in, rates), conv(256, 256, 3), tnn::BatchNorm2d(256), tnn::ReLU(),
                         conv(256, num_classes, 1, 1, /*bias=*/true));
}

/// The Lite R-ASPP head (see LRASPPImpl).
class LRASPPHeadImpl : public tnn::Cloneable<LRASPPHeadImpl> {
 public:
  LRASPPHeadImpl(int64_t low, int64_t high, int64_t num_classes, int64_t inter)
      : low_(low), high_(high), classes_(num_classes), inter_(inter) {
    reset();
  }
  void reset() override {
    cbr = register_module("cbr", tnn::Sequential(conv(high_, inter_, 1), tnn::BatchNorm2d(inter_),
                                                 tnn::ReLU()));
    scale = register_module("scale", tnn::Sequential(tnn::AdaptiveAvgPool2d(1),
                                                     conv(high_, inter_, 1), tnn::Sigmoid()));
    low_classifier = register_module("low_classifier", conv(low_, classes_, 1, 1, true));
    high_classifier = register_module("high_classifier", conv(inter_, classes_, 1, 1, true));
  }
  at::Tensor forward(const at::Tensor& low, const at::Tensor& high) {
    auto x = cbr->forward(high) * scale->forward(high);
    x = resize(x, low.size(2), low.size(3));
    return low_classifier->forward(low) + high_classifier->forward(x);
  }
  tnn::Sequential cbr{nullptr};
  tnn::Sequential scale{nullptr};
  tnn::Conv2d low_classifier{nullptr};
  tnn::Conv2d high_classifier{nullptr};

 private:
  int64_t low_, high_, classes_, inter_;
};
TORCH_MODULE(LRASPPHead);

void check_input(const at::Tensor& x, const char* model) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3, model,
              " expects input [N,3,H,W], got ", x.defined() ? x.sizes() : at::IntArrayRef{});
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, model, " needs H, W >= 1, got ", x.sizes());
}

/// ASPP's rates: at least one, each >= 1.
void check_atrous_rates(const char* model, const std::vector<int64_t>& rates) {
  TORCH_CHECK(!rates.empty(), model, " atrous_rates must not be empty");
  for (const int64_t rate : rates) {
    TORCH_CHECK(rate >= 1, model, " atrous_rates must be >= 1, got [", c10::Join(", ", rates), "]");
  }
}

/// Builds the backbone and checks the output stride the model takes: ResNet 8 | 16,
/// MobileNetV3 16.
std::shared_ptr<torch::nn::Module> dense_backbone(const BackboneOptions& o, const char* model,
                                                  bool resnet_allowed) {
  const bool mobilenet = o.name().rfind("mobilenet_v3_", 0) == 0;
  TORCH_CHECK(mobilenet || (resnet_allowed && o.resnet_depth() != 0), model,
              ": backbone must be ",
              resnet_allowed ? "resnet18 ... resnet152, mobilenet_v3_large or mobilenet_v3_small"
                             : "mobilenet_v3_large or mobilenet_v3_small",
              ", got \"", o.name(), "\"");
  if (mobilenet) {
    TORCH_CHECK(o.output_stride() == 16, model, " over ", o.name(),
                " has output stride 16 (its last stage dilated), got ", o.output_stride());
  } else {
    TORCH_CHECK(o.output_stride() == 8 || o.output_stride() == 16, model,
                " output_stride must be 8 or 16, got ", o.output_stride());
  }
  return make_backbone(o);
}

/// The first stage at stride 4: ResNet's layer1, MobileNetV3's first stride-4 block.
std::string stride4_stage(torch::nn::Module& backbone) {
  if (auto* mobilenet = backbone.as<MobileNetV3FeaturesImpl>()) {
    return mobilenet->first_stage_with_stride(4);
  }
  return "layer1";
}

/// The stage torchvision's heads read besides the last: layer3 of a ResNet, the first
/// stride-8 stage of a MobileNetV3 (its "C2").
std::string shallow_stage(torch::nn::Module& backbone) {
  if (auto* mobilenet = backbone.as<MobileNetV3FeaturesImpl>()) {
    return mobilenet->first_stage_with_stride(8);
  }
  return "layer3";
}

}  // namespace

// ---------------------------------------------------------------------------------------------

DeepLabV3Impl::DeepLabV3Impl(DeepLabV3Options options) : options(std::move(options)) { reset(); }

void DeepLabV3Impl::reset() {
  const auto& o = options;
  const char* model = o.head() == DenseHead::kASPP ? "DeepLabV3" : "FCN";
  TORCH_CHECK(o.num_classes() >= 1, model, " num_classes must be >= 1, got ", o.num_classes());
  check_atrous_rates(model, o.atrous_rates());
  TORCH_CHECK(o.aux_weight() >= 0.0, model, " aux_weight must be >= 0, got ", o.aux_weight());
  backbone = register_module("backbone", dense_backbone(o.backbone(), model, true));
  features_ = as_backbone(backbone);
  main_stage_ = features_->stage_names().back();
  aux_stage_ = shallow_stage(*backbone);
  const int64_t c = features_->stage_channels(main_stage_);
  classifier = register_module("classifier", o.head() == DenseHead::kASPP
                                                 ? deeplab_head(c, o.num_classes(), o.atrous_rates())
                                                 : fcn_head(c, o.num_classes()));
  if (o.aux()) {
    aux_classifier = register_module(
        "aux_classifier", fcn_head(features_->stage_channels(aux_stage_), o.num_classes()));
  } else {
    aux_classifier = nullptr;
  }
}

SegmentationOutput DeepLabV3Impl::run(const at::Tensor& x, bool with_aux) {
  check_input(x, options.head() == DenseHead::kASPP ? "DeepLabV3" : "FCN");
  const bool aux = with_aux && options.aux();
  const auto stages = features_->forward_features(
      x, aux ? std::vector<std::string>{aux_stage_, main_stage_}
             : std::vector<std::string>{main_stage_});
  SegmentationOutput out;
  out.main = resize(classifier->forward(stages[main_stage_]), x.size(2), x.size(3));
  if (aux) {
    out.aux = resize(aux_classifier->forward(stages[aux_stage_]), x.size(2), x.size(3));
    out.aux_weight = options.aux_weight();
  }
  return out;
}

at::Tensor DeepLabV3Impl::forward(const at::Tensor& x) { return run(x, false).main; }

SegmentationOutput DeepLabV3Impl::forward_with_aux(const at::Tensor& x) { return run(x, true); }

void DeepLabV3Impl::load_backbone_weights(const io::StateDict& state, const std::string& source) {
  features_->load_torchvision(state, source);
}

std::shared_ptr<torch::nn::Module> DeepLabV3Impl::clone(
    const c10::optional<torch::Device>& device) const {
  return detail::rebuild_clone(*this, device);
}

void DeepLabV3Impl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "ostrov::models::DeepLabV3(num_classes=" << o.num_classes()
         << ", backbone=" << o.backbone().name() << ", output_stride=" << o.backbone().output_stride()
         << ", head=" << (o.head() == DenseHead::kASPP ? "aspp" : "fcn");
  if (o.head() == DenseHead::kASPP) stream << ", atrous_rates=[" << c10::Join(", ", o.atrous_rates()) << "]";
  stream << ", aux=" << (o.aux() ? "true" : "false") << ")";
}

// ---------------------------------------------------------------------------------------------

DeepLabV3PlusImpl::DeepLabV3PlusImpl(DeepLabV3PlusOptions options) : options(std::move(options)) {
  reset();
}

void DeepLabV3PlusImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.num_classes() >= 1, "DeepLabV3+ num_classes must be >= 1, got ", o.num_classes());
  check_atrous_rates("DeepLabV3+", o.atrous_rates());
  TORCH_CHECK(o.low_level_channels() >= 1 && o.decoder_channels() >= 1,
              "DeepLabV3+ low_level_channels and decoder_channels must be >= 1, got ",
              o.low_level_channels(), " and ", o.decoder_channels());
  backbone = register_module("backbone", dense_backbone(o.backbone(), "DeepLabV3+", true));
  features_ = as_backbone(backbone);
  high_stage_ = features_->stage_names().back();
  low_stage_ = stride4_stage(*backbone);
  const int64_t d = o.decoder_channels();
  aspp = register_module(
      "aspp", ASPP(features_->stage_channels(high_stage_), o.atrous_rates(), d).ptr());
  low_level = register_module(
      "low_level", tnn::Sequential(conv(features_->stage_channels(low_stage_),
                                        o.low_level_channels(), 1),
                                   tnn::BatchNorm2d(o.low_level_channels()), tnn::ReLU()));
  decoder = register_module(
      "decoder", tnn::Sequential(conv(d + o.low_level_channels(), d, 3), tnn::BatchNorm2d(d),
                                 tnn::ReLU(), conv(d, d, 3), tnn::BatchNorm2d(d), tnn::ReLU()));
  classifier = register_module("classifier", conv(d, o.num_classes(), 1, 1, /*bias=*/true));
}

at::Tensor DeepLabV3PlusImpl::forward(const at::Tensor& x) {
  check_input(x, "DeepLabV3+");
  const auto stages = features_->forward_features(x, {low_stage_, high_stage_});
  const at::Tensor low = low_level->forward(stages[low_stage_]);
  const at::Tensor high = aspp->as<ASPPImpl>()->forward(stages[high_stage_]);
  auto y = decoder->forward(at::cat({resize(high, low.size(2), low.size(3)), low}, 1));
  return resize(classifier->forward(y), x.size(2), x.size(3));
}

void DeepLabV3PlusImpl::load_backbone_weights(const io::StateDict& state,
                                              const std::string& source) {
  features_->load_torchvision(state, source);
}

std::shared_ptr<torch::nn::Module> DeepLabV3PlusImpl::clone(
    const c10::optional<torch::Device>& device) const {
  return detail::rebuild_clone(*this, device);
}

void DeepLabV3PlusImpl::pretty_print(std::ostream& stream) const {
  const auto& o = options;
  stream << "ostrov::models::DeepLabV3Plus(num_classes=" << o.num_classes()
         << ", backbone=" << o.backbone().name() << ", output_stride=" << o.backbone().output_stride()
         << ", atrous_rates=[" << c10::Join(", ", o.atrous_rates())
         << "], low_level_channels=" << o.low_level_channels()
         << ", decoder_channels=" << o.decoder_channels() << ")";
}

// ---------------------------------------------------------------------------------------------

LRASPPImpl::LRASPPImpl(LRASPPOptions options) : options(std::move(options)) { reset(); }

void LRASPPImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.num_classes() >= 1, "LRASPP num_classes must be >= 1, got ", o.num_classes());
  TORCH_CHECK(o.inter_channels() >= 1, "LRASPP inter_channels must be >= 1, got ",
              o.inter_channels());
  backbone = register_module("backbone", dense_backbone(o.backbone(), "LRASPP", false));
  features_ = as_backbone(backbone);
  high_stage_ = features_->stage_names().back();
  low_stage_ = shallow_stage(*backbone);
  classifier = register_module(
      "classifier", LRASPPHead(features_->stage_channels(low_stage_),
                               features_->stage_channels(high_stage_), o.num_classes(),
                               o.inter_channels())
                        .ptr());
}

at::Tensor LRASPPImpl::forward(const at::Tensor& x) {
  check_input(x, "LRASPP");
  const auto stages = features_->forward_features(x, {low_stage_, high_stage_});
  auto* head = classifier->as<LRASPPHeadImpl>();
  return resize(head->forward(stages[low_stage_], stages[high_stage_]), x.size(2), x.size(3));
}

void LRASPPImpl::load_backbone_weights(const io::StateDict& state, const std::string& source) {
  features_->load_torchvision(state, source);
}

std::shared_ptr<torch::nn::Module> LRASPPImpl::clone(
    const c10::optional<torch::Device>& device) const {
  return detail::rebuild_clone(*this, device);
}

void LRASPPImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::LRASPP(num_classes=" << options.num_classes()
         << ", backbone=" << options.backbone().name()
         << ", inter_channels=" << options.inter_channels() << ")";
}

}  // namespace ostrov::models
