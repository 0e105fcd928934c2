#include "ostrov/models/instance/ssd_mask.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "ostrov/nn/conv_bn_act.h"
#include "ostrov/ops/instance.h"
#include "ostrov/ops/roi_align.h"
#include "detector_counting.h"

namespace ostrov::models {

// ------------------------------------------------------------------------------- MaskHead

MaskHeadImpl::MaskHeadImpl(MaskHeadOptions options) : options(std::move(options)) { reset(); }

void MaskHeadImpl::reset() {
  TORCH_CHECK(options.in_channels() >= 1 && options.channels() >= 1 && options.num_convs() >= 0,
              "MaskHead: in_channels and channels must be >= 1 and num_convs >= 0");
  TORCH_CHECK(options.num_classes() >= 2, "MaskHead: num_classes must be >= 2 (background "
              "included), got ", options.num_classes());
  convs = register_module("convs", torch::nn::Sequential());
  int64_t in = options.in_channels();
  for (int64_t i = 0; i < options.num_convs(); ++i) {
    convs->push_back(nn::ConvBnAct(nn::ConvBnActOptions(in, options.channels(), 3)));
    in = options.channels();
  }
  deconv = register_module(
      "deconv", torch::nn::ConvTranspose2d(
                    torch::nn::ConvTranspose2dOptions(in, options.channels(), 2).stride(2)));
  predictor = register_module(
      "predictor",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(options.channels(), options.num_classes(), 1)));
}

at::Tensor MaskHeadImpl::forward(const at::Tensor& rois) {
  TORCH_CHECK(rois.dim() == 4 && rois.size(1) == options.in_channels(),
              "MaskHead expects [R,", options.in_channels(), ",S,S], got ", rois.sizes());
  auto y = options.num_convs() > 0 ? convs->forward(rois) : rois;
  return predictor->forward(at::relu(deconv->forward(y)));
}

// ------------------------------------------------------------------------------- SSDMask

SSDOptions SSDMaskOptions::detector_options() const {
  return SSDOptions::light(num_classes(), image_size())
      .num_extra(num_extra())
      .backbone_channels(backbone_channels())
      .postprocess(postprocess());
}

SSDMaskImpl::SSDMaskImpl(SSDMaskOptions options) : options(std::move(options)) { reset(); }

void SSDMaskImpl::reset() {
  TORCH_CHECK(options.feature_channels() >= 1, "SSDMask: feature_channels must be >= 1");
  TORCH_CHECK(options.roi_size() >= 1, "SSDMask: roi_size must be >= 1, got ",
              options.roi_size());
  TORCH_CHECK(options.mask_threshold() > 0 && options.mask_threshold() < 1,
              "SSDMask: mask_threshold must lie in (0, 1), got ", options.mask_threshold());
  detector = register_module("detector", SSD(options.detector_options()));
  const int64_t f = options.feature_channels();
  lateral = register_module("lateral", torch::nn::ModuleList());
  const int64_t b = options.backbone_channels();
  for (const int64_t in : {b, 2 * b, 4 * b}) {  // ResNet-18's layer1, layer2, layer3
    lateral->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, f, 1)));
  }
  smooth = register_module("smooth", torch::nn::Sequential(nn::ConvBnAct(f, f, 3)));
  mask_head = register_module(
      "mask_head", MaskHead(MaskHeadOptions(f, options.num_classes())
                                .channels(options.mask_channels())
                                .num_convs(options.mask_convs())));
}

SSDMaskOutput SSDMaskImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3,
              "SSDMask expects input [N,3,H,W], got ", x.defined() ? x.sizes() : at::IntArrayRef{});
  auto* backbone = detector->backbone->as<SSDResNetBackboneImpl>();
  TORCH_CHECK(backbone != nullptr, "SSDMask: the detector must have the resnet18 backbone");
  auto stages = backbone->forward_stages(x);
  SSDMaskOutput out;
  out.detector = detector->forward_heads({stages.begin() + 2, stages.end()}, {x.size(2), x.size(3)});
  // Top-down: layer3 -> layer2 -> layer1, each up-sampled to the finer map and summed.
  auto merged = lateral[2]->as<torch::nn::Conv2dImpl>()->forward(stages[2]);
  for (int level = 1; level >= 0; --level) {
    const auto& finer = stages[static_cast<size_t>(level)];
    merged = lateral[level]->as<torch::nn::Conv2dImpl>()->forward(finer) +
             at::upsample_nearest2d(merged, {finer.size(2), finer.size(3)});
  }
  out.mask_features = smooth->forward(merged);
  return out;
}

at::Tensor SSDMaskImpl::mask_logits(const at::Tensor& mask_features, const at::Tensor& rois) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "SSDMask::mask_logits: rois should be [R,5], got ",
              rois.sizes());
  const int64_t channels = options.feature_channels();
  if (rois.size(0) == 0) {
    const int64_t m = 2 * options.roi_size();
    return at::zeros({0, options.num_classes(), m, m}, mask_features.options());
  }
  // The features are at stride 4 of the input (ResNet's layer1). The boxes stay in float32 (or
  // double) when autocast gives bfloat16 features: 8 bits of mantissa would move them by pixels.
  const auto roi_type = mask_features.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto pooled = ops::roi_align(mask_features, rois.to(roi_type),
                                     {options.roi_size(), options.roi_size()}, 0.25,
                                     options.sampling_ratio(), /*aligned=*/true);
  TORCH_INTERNAL_ASSERT(pooled.size(1) == channels);
  return mask_head->forward(pooled);
}

std::vector<InstancePrediction> SSDMaskImpl::predict(const at::Tensor& x) {
  const auto out = forward(x);
  const auto detections = detector->postprocess(out.detector);
  const int64_t h = x.size(2), w = x.size(3);
  std::vector<at::Tensor> boxes;
  std::vector<InstancePrediction> result;
  for (const auto& d : detections) {
    const auto keep = d.scores >= options.min_score();
    InstancePrediction p;
    p.boxes = d.boxes.index({keep}).to(at::kFloat);
    p.scores = d.scores.index({keep}).to(at::kFloat);
    p.labels = d.labels.index({keep});
    boxes.push_back(p.boxes);
    result.push_back(std::move(p));
  }
  const auto rois = ops::boxes_to_rois(boxes);
  const auto logits = mask_logits(out.mask_features, rois.to(out.mask_features.device()));
  int64_t first = 0;
  for (auto& p : result) {
    const int64_t k = p.boxes.size(0);
    if (k == 0) {
      p.masks = at::zeros({0, h, w}, at::kByte);
      continue;
    }
    const auto mine = logits.narrow(0, first, k);
    first += k;
    const auto index = at::arange(k, p.labels.options());
    const auto probs = mine.index({index, p.labels.to(mine.device())}).sigmoid();  // [k,M,M]
    p.masks = (ops::paste_masks(probs.to(at::kCPU, at::kFloat), p.boxes.to(at::kCPU), h, w) >
               options.mask_threshold())
                  .to(at::kByte);
  }
  return result;
}

// --------------------------------------------------------------------------- training parts

at::Tensor SSDMaskImpl::class_agnostic(const InstancePrediction& p, double min_score) const {
  return detail::class_agnostic_detections(p, min_score, options.count_nms_threshold());
}

at::Tensor SSDMaskImpl::counted_masks(const InstancePrediction& p) const {
  return detail::counted_detection_masks(p, options.count_score(), options.count_nms_threshold());
}

at::Tensor mask_targets(const at::Tensor& masks, const at::Tensor& boxes, int64_t size) {
  TORCH_CHECK(masks.dim() == 3, "mask_targets: masks should be [G,H,W], got ", masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0),
              "mask_targets: boxes should be [", masks.size(0), ",4], got ", boxes.sizes());
  TORCH_CHECK(size >= 1, "mask_targets: size must be >= 1, got ", size);
  const int64_t g = masks.size(0);
  if (g == 0) return at::zeros({0, size, size}, at::kFloat);
  const auto m = masks.to(at::kCPU, at::kFloat).unsqueeze(1);
  const auto rois =
      at::cat({at::arange(g, at::kFloat).unsqueeze(1), boxes.to(at::kCPU, at::kFloat)}, 1);
  return (ops::roi_align(m, rois, {size, size}, 1.0, -1, false).squeeze(1) >= 0.5).to(at::kFloat);
}

at::Tensor jitter_boxes(const at::Tensor& boxes, double amount, ops::GridSize image_size,
                        std::mt19937_64& rng) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "jitter_boxes: boxes should be [K,4], got ",
              boxes.sizes());
  TORCH_CHECK(amount >= 0, "jitter_boxes: amount must be >= 0, got ", amount);
  if (amount == 0 || boxes.size(0) == 0) return boxes;
  auto b = boxes.to(at::kCPU, at::kFloat).contiguous().clone();
  float* p = b.data_ptr<float>();
  std::uniform_real_distribution<double> u(-amount, amount);
  const auto height = static_cast<float>(image_size[0]), width = static_cast<float>(image_size[1]);
  for (int64_t i = 0; i < b.size(0); ++i) {
    float* r = p + 4 * i;
    const double bw = r[2] - r[0], bh = r[3] - r[1];
    float x1 = static_cast<float>(r[0] + u(rng) * bw), y1 = static_cast<float>(r[1] + u(rng) * bh);
    float x2 = static_cast<float>(r[2] + u(rng) * bw), y2 = static_cast<float>(r[3] + u(rng) * bh);
    x1 = std::clamp(x1, 0.0f, width - 1.0f);
    y1 = std::clamp(y1, 0.0f, height - 1.0f);
    x2 = std::clamp(std::max(x2, x1 + 1.0f), x1 + 1.0f, width);
    y2 = std::clamp(std::max(y2, y1 + 1.0f), y1 + 1.0f, height);
    r[0] = x1, r[1] = y1, r[2] = x2, r[3] = y2;
  }
  return b.to(boxes.device());
}

}  // namespace ostrov::models
