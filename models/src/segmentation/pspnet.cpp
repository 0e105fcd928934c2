#include "ostrov/models/segmentation/pspnet.h"

#include <tuple>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>

#include "ostrov/io/weights.h"
#include "resnet_encoder.h"

namespace ostrov::models {

namespace {

namespace tnn = torch::nn;
namespace F = torch::nn::functional;

at::Tensor upsample_to(const at::Tensor& y, int64_t h, int64_t w) {
  return F::interpolate(y, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{h, w})
                               .mode(torch::kBilinear)
                               .align_corners(true));
}

}  // namespace

PyramidPooling pyramid_pooling_from_string(const std::string& name) {
  if (name == "avg" || name == "ave" || name == "average") {
    return PyramidPooling::kAvg;
  }
  if (name == "max") {
    return PyramidPooling::kMax;
  }
  TORCH_CHECK(false, "unknown pyramid pooling \"", name, "\"; expected \"avg\" or \"max\"");
}

std::string to_string(PyramidPooling pooling) {
  return pooling == PyramidPooling::kAvg ? "avg" : "max";
}

PSPNetImpl::PSPNetImpl(PSPNetOptions options) : options(std::move(options)) { reset(); }

void PSPNetImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.num_classes() >= 1, "PSPNet num_classes must be >= 1, got ", o.num_classes());
  TORCH_CHECK(!o.bins().empty(), "PSPNet bins must not be empty");
  for (const int64_t b : o.bins()) {
    TORCH_CHECK(b >= 1, "PSPNet bins must be >= 1, got [", c10::Join(", ", o.bins()), "]");
  }
  TORCH_CHECK(o.head_channels() >= 1 && o.aux_channels() >= 1,
              "PSPNet head_channels and aux_channels must be >= 1, got ", o.head_channels(),
              " and ", o.aux_channels());
  TORCH_CHECK(o.dropout() >= 0.0 && o.dropout() < 1.0, "PSPNet dropout must be in [0, 1), got ",
              o.dropout());
  TORCH_CHECK(o.aux_weight() >= 0.0, "PSPNet aux_weight must be >= 0, got ", o.aux_weight());

  TORCH_CHECK(o.output_stride() == 8 || o.output_stride() == 16,
              "PSPNet output_stride must be 8 or 16, got ", o.output_stride());
  // Throws for an unsupported depth or width.
  backbone = register_module(
      "backbone", ResNet(ResNetOptions(o.backbone_depth())
                             .num_classes(0)
                             .base_channels(o.backbone_channels())
                             .replace_stride_with_dilation({false, o.output_stride() == 8, true})));

  const int64_t c4 = backbone->stage_channels("layer4");
  const int64_t c3 = backbone->stage_channels("layer3");
  const auto n_bins = static_cast<int64_t>(o.bins().size());
  const int64_t reduced = o.reduce_dimension() ? c4 / n_bins : c4;
  TORCH_CHECK(reduced >= 1, "PSPNet: ", n_bins, " bins leave no channels of layer4's ", c4);
  pyramid = register_module("pyramid", tnn::ModuleList());
  for (int64_t b = 0; b < n_bins; ++b) {
    pyramid->push_back(nn::ConvBnAct(nn::ConvBnActOptions(c4, reduced, 1)));
  }
  bottleneck = register_module(
      "bottleneck", nn::ConvBnAct(nn::ConvBnActOptions(c4 + n_bins * reduced, o.head_channels(), 3)));
  dropout = register_module("dropout", tnn::Dropout2d(o.dropout()));
  classifier = register_module(
      "classifier", tnn::Conv2d(tnn::Conv2dOptions(o.head_channels(), o.num_classes(), 1)));
  if (o.aux()) {
    aux_conv = register_module("aux_conv",
                               nn::ConvBnAct(nn::ConvBnActOptions(c3, o.aux_channels(), 3)));
    aux_classifier = register_module(
        "aux_classifier", tnn::Conv2d(tnn::Conv2dOptions(o.aux_channels(), o.num_classes(), 1)));
  } else {
    aux_conv = nullptr;
    aux_classifier = nullptr;
  }

  // New layers: He initialisation as the backbone's convolutions (torchvision's ResNet init).
  torch::NoGradGuard no_grad;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* block = module->as<nn::ConvBnAct>()) {
      tnn::init::kaiming_normal_(block->conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    }
  }
}

SegmentationOutput PSPNetImpl::run(const at::Tensor& x, bool with_aux) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3, "PSPNet expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "PSPNet needs H, W >= 1, got ", x.sizes());
  const PaddedInput padded =
      pad_to_multiple(x, options.output_stride(), options.input_padding(), /*remainder=*/1,
                      /*min_size=*/options.output_stride() + 1);
  const int64_t hp = padded.tensor.size(2);
  const int64_t wp = padded.tensor.size(3);

  const bool aux = with_aux && options.aux();
  const auto stages = backbone->forward_features(
      padded.tensor, aux ? std::vector<std::string>{"layer3", "layer4"}
                         : std::vector<std::string>{"layer4"});
  const at::Tensor& f = stages["layer4"];
  const int64_t h = f.size(2);
  const int64_t w = f.size(3);

  std::vector<at::Tensor> parts{f};
  for (size_t b = 0; b < pyramid->size(); ++b) {
    const int64_t bin = options.bins()[b];
    TORCH_CHECK(!is_training() || f.size(0) * bin * bin > 1,
                "PSPNet: the ", bin, "x", bin,
                " pyramid bin's batch norm needs more than one value per channel in training "
                "mode; got a batch of ",
                f.size(0), " (use a batch of at least 2, or eval mode)");
    const at::Tensor pooled = options.pooling() == PyramidPooling::kAvg
                                  ? at::adaptive_avg_pool2d(f, {bin, bin})
                                  : std::get<0>(at::adaptive_max_pool2d(f, {bin, bin}));
    parts.push_back(upsample_to(pyramid[b]->as<nn::ConvBnAct>()->forward(pooled), h, w));
  }
  auto y = bottleneck->forward(at::cat(parts, 1));
  y = classifier->forward(dropout->forward(y));

  SegmentationOutput out;
  out.main = crop_to_input(upsample_to(y, hp, wp), padded);
  if (aux) {
    auto a = aux_conv->forward(stages["layer3"]);
    a = aux_classifier->forward(dropout->forward(a));
    out.aux = crop_to_input(upsample_to(a, hp, wp), padded);
    out.aux_weight = options.aux_weight();
  }
  return out;
}

at::Tensor PSPNetImpl::forward(const at::Tensor& x) { return run(x, false).main; }

SegmentationOutput PSPNetImpl::forward_with_aux(const at::Tensor& x) { return run(x, true); }

void PSPNetImpl::load_backbone_weights(const std::string& path) {
  load_backbone_weights(io::load_state_dict(path), path);
}

void PSPNetImpl::load_backbone_weights(const io::StateDict& state, const std::string& source) {
  backbone->load_torchvision(state, source);
}

std::shared_ptr<torch::nn::Module> PSPNetImpl::clone(
    const c10::optional<torch::Device>& device) const {
  return detail::rebuild_clone(*this, device);
}

void PSPNetImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::PSPNet(num_classes=" << options.num_classes()
         << ", backbone=resnet" << options.backbone_depth();
  if (options.backbone_channels() != 64) stream << " (width " << options.backbone_channels() << ")";
  stream << ", output_stride=" << options.output_stride()
         << ", bins=[" << c10::Join(", ", options.bins())
         << "], pooling=" << to_string(options.pooling())
         << ", dropout=" << options.dropout() << ", aux=" << (options.aux() ? "true" : "false")
         << ", aux_weight=" << options.aux_weight()
         << ", input_padding=" << to_string(options.input_padding()) << ")";
}

}  // namespace ostrov::models
