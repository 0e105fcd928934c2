#include "ostrov/models/detection/roi_heads.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>

#include "ostrov/models/detection/rpn.h"
#include "ostrov/ops/box_coder.h"
#include "ostrov/ops/boxes.h"
#include "ostrov/ops/matchers.h"
#include "ostrov/ops/nms.h"
#include "ostrov/ops/roi_align.h"

namespace ostrov::models {

MultiScaleRoIAlign::MultiScaleRoIAlign(MultiScaleRoIAlignOptions options) : options_(options) {
  TORCH_CHECK(options_.output_size() >= 1, "MultiScaleRoIAlign: output_size must be >= 1, got ",
              options_.output_size());
}

namespace {

/// torchvision's _infer_scale: 2^round(log2(feature / image)) of the height, in float32.
double infer_scale(const at::Tensor& feature, int64_t image_height) {
  const float approx = static_cast<float>(static_cast<double>(feature.size(-2)) /
                                          static_cast<double>(image_height));
  return std::pow(2.0, static_cast<double>(std::nearbyint(std::log2(approx))));
}

}  // namespace

at::Tensor MultiScaleRoIAlign::map_levels(const std::vector<at::Tensor>& boxes, int64_t k_min,
                                          int64_t k_max) const {
  std::vector<at::Tensor> areas;
  for (const auto& b : boxes) areas.push_back(ops::box_area(b));
  const auto s = at::cat(areas, 0).sqrt();
  const auto eps = at::scalar_tensor(1e-6, s.options());
  const auto target =
      at::floor(at::log2(s / options_.canonical_scale()) + static_cast<double>(options_.canonical_level()) + eps)
          .clamp(static_cast<double>(k_min), static_cast<double>(k_max));
  return target.to(at::kLong) - k_min;
}

at::Tensor MultiScaleRoIAlign::operator()(const std::vector<at::Tensor>& features,
                                          const std::vector<at::Tensor>& boxes,
                                          const std::vector<ImageSize>& image_sizes) const {
  TORCH_CHECK(!features.empty(), "MultiScaleRoIAlign: no feature levels");
  TORCH_CHECK(boxes.size() == image_sizes.size() && !boxes.empty(), "MultiScaleRoIAlign: ",
              boxes.size(), " box lists for ", image_sizes.size(), " images");
  int64_t max_h = 0;
  for (const auto& s : image_sizes) max_h = std::max(max_h, s[0]);
  std::vector<double> scales;
  for (const auto& f : features) scales.push_back(infer_scale(f, max_h));
  const auto rois = ops::boxes_to_rois(boxes);
  const std::array<int64_t, 2> size{options_.output_size(), options_.output_size()};
  if (features.size() == 1) {
    return ops::roi_align(features[0], rois, size, scales[0], options_.sampling_ratio(), false);
  }
  const auto lvl_min = static_cast<int64_t>(-std::log2(static_cast<float>(scales.front())));
  const auto lvl_max = static_cast<int64_t>(-std::log2(static_cast<float>(scales.back())));
  const auto levels = map_levels(boxes, lvl_min, lvl_max);
  auto result = at::zeros({rois.size(0), features[0].size(1), size[0], size[1]},
                          features[0].options());
  for (size_t l = 0; l < features.size(); ++l) {
    const auto idx = at::where(levels == static_cast<int64_t>(l))[0];
    if (idx.numel() == 0) continue;
    const auto pooled = ops::roi_align(features[l], rois.index_select(0, idx), size, scales[l],
                                       options_.sampling_ratio(), false);
    result.index_put_({idx}, pooled);
  }
  return result;
}

TwoMLPHeadImpl::TwoMLPHeadImpl(int64_t in_channels_, int64_t representation_size_)
    : in_channels(in_channels_), representation_size(representation_size_) {
  reset();
}

void TwoMLPHeadImpl::reset() {
  TORCH_CHECK(in_channels >= 1 && representation_size >= 1,
              "TwoMLPHead: in_channels and representation_size must be >= 1");
  fc6 = register_module("fc6", torch::nn::Linear(in_channels, representation_size));
  fc7 = register_module("fc7", torch::nn::Linear(representation_size, representation_size));
}

at::Tensor TwoMLPHeadImpl::forward(const at::Tensor& x) {
  return at::relu(fc7->forward(at::relu(fc6->forward(x.flatten(1)))));
}

FastRCNNPredictorImpl::FastRCNNPredictorImpl(int64_t in_channels_, int64_t num_classes_)
    : in_channels(in_channels_), num_classes(num_classes_) {
  reset();
}

void FastRCNNPredictorImpl::reset() {
  TORCH_CHECK(in_channels >= 1 && num_classes >= 2,
              "FastRCNNPredictor: in_channels >= 1 and num_classes >= 2 needed, got ", in_channels,
              " and ", num_classes);
  cls_score = register_module("cls_score", torch::nn::Linear(in_channels, num_classes));
  bbox_pred = register_module("bbox_pred", torch::nn::Linear(in_channels, num_classes * 4));
}

std::pair<at::Tensor, at::Tensor> FastRCNNPredictorImpl::forward(const at::Tensor& x) {
  const auto flat = x.flatten(1);
  return {cls_score->forward(flat), bbox_pred->forward(flat)};
}

MaskRCNNHeadsImpl::MaskRCNNHeadsImpl(int64_t in_channels_, std::vector<int64_t> layers_,
                                     int64_t dilation_)
    : in_channels(in_channels_), layers(std::move(layers_)), dilation(dilation_) {
  reset();
}

void MaskRCNNHeadsImpl::reset() {
  TORCH_CHECK(in_channels >= 1 && !layers.empty() && dilation >= 1,
              "MaskRCNNHeads: in_channels >= 1, at least one layer and dilation >= 1 needed");
  blocks.clear();
  int64_t next = in_channels;
  for (size_t i = 0; i < layers.size(); ++i) {
    TORCH_CHECK(layers[i] >= 1, "MaskRCNNHeads: layer ", i, " has ", layers[i], " channels");
    torch::nn::Conv2d conv(
        torch::nn::Conv2dOptions(next, layers[i], 3).padding(dilation).dilation(dilation));
    torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    torch::nn::init::zeros_(conv->bias);
    blocks.push_back(register_module(
        std::to_string(i),
        torch::nn::Sequential(conv, torch::nn::ReLU(torch::nn::ReLUOptions(true)))));
    next = layers[i];
  }
}

at::Tensor MaskRCNNHeadsImpl::forward(const at::Tensor& x) {
  at::Tensor y = x;
  for (auto& block : blocks) y = block->forward(y);
  return y;
}

MaskRCNNPredictorImpl::MaskRCNNPredictorImpl(int64_t in_channels_, int64_t dim_reduced_,
                                             int64_t num_classes_)
    : in_channels(in_channels_), dim_reduced(dim_reduced_), num_classes(num_classes_) {
  reset();
}

void MaskRCNNPredictorImpl::reset() {
  TORCH_CHECK(in_channels >= 1 && dim_reduced >= 1 && num_classes >= 2,
              "MaskRCNNPredictor: in_channels, dim_reduced >= 1 and num_classes >= 2 needed");
  conv5_mask = register_module(
      "conv5_mask", torch::nn::ConvTranspose2d(
                        torch::nn::ConvTranspose2dOptions(in_channels, dim_reduced, 2).stride(2)));
  mask_fcn_logits = register_module(
      "mask_fcn_logits", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim_reduced, num_classes, 1)));
  torch::nn::init::kaiming_normal_(conv5_mask->weight, 0.0, torch::kFanOut, torch::kReLU);
  torch::nn::init::kaiming_normal_(mask_fcn_logits->weight, 0.0, torch::kFanOut, torch::kReLU);
}

at::Tensor MaskRCNNPredictorImpl::forward(const at::Tensor& x) {
  return mask_fcn_logits->forward(at::relu(conv5_mask->forward(x)));
}

RoIHeadsImpl::RoIHeadsImpl(MultiScaleRoIAlign box_roi_pool_, TwoMLPHead box_head_,
                           FastRCNNPredictor box_predictor_, RoIHeadsOptions options_)
    : box_roi_pool(box_roi_pool_),
      box_head(std::move(box_head_)),
      box_predictor(std::move(box_predictor_)),
      options(std::move(options_)) {
  register_children();
}

RoIHeadsImpl::RoIHeadsImpl(MultiScaleRoIAlign box_roi_pool_, TwoMLPHead box_head_,
                           FastRCNNPredictor box_predictor_, MultiScaleRoIAlign mask_roi_pool_,
                           MaskRCNNHeads mask_head_, MaskRCNNPredictor mask_predictor_,
                           RoIHeadsOptions options_)
    : box_roi_pool(box_roi_pool_),
      box_head(std::move(box_head_)),
      box_predictor(std::move(box_predictor_)),
      mask_roi_pool(mask_roi_pool_),
      mask_head(std::move(mask_head_)),
      mask_predictor(std::move(mask_predictor_)),
      options(std::move(options_)) {
  register_children();
}

void RoIHeadsImpl::reset() {
  // Called by clone(): the members still point at the original's children, so the copy gets
  // its own (the constructor registers the modules it was given, as torchvision).
  box_head = TwoMLPHead(std::dynamic_pointer_cast<TwoMLPHeadImpl>(box_head->clone()));
  box_predictor =
      FastRCNNPredictor(std::dynamic_pointer_cast<FastRCNNPredictorImpl>(box_predictor->clone()));
  if (!mask_head.is_empty()) {
    mask_head = MaskRCNNHeads(std::dynamic_pointer_cast<MaskRCNNHeadsImpl>(mask_head->clone()));
    mask_predictor = MaskRCNNPredictor(
        std::dynamic_pointer_cast<MaskRCNNPredictorImpl>(mask_predictor->clone()));
  }
  register_children();
}

void RoIHeadsImpl::register_children() {
  TORCH_CHECK(options.bbox_reg_weights().size() == 4, "RoIHeads: bbox_reg_weights needs 4 values");
  box_head = register_module("box_head", box_head);
  box_predictor = register_module("box_predictor", box_predictor);
  if (!mask_head.is_empty()) {
    TORCH_CHECK(!mask_predictor.is_empty(), "RoIHeads: a mask head needs a mask predictor");
    mask_head = register_module("mask_head", mask_head);
    mask_predictor = register_module("mask_predictor", mask_predictor);
  }
}

namespace {

ops::BoxCoder box_coder(const RoIHeadsOptions& o) {
  const auto& w = o.bbox_reg_weights();
  return ops::BoxCoder({w[0], w[1], w[2], w[3]});
}

}  // namespace

std::vector<RCNNDetection> RoIHeadsImpl::detect(const at::Tensor& class_logits,
                                                const at::Tensor& box_deltas,
                                                const std::vector<at::Tensor>& proposals,
                                                const std::vector<ImageSize>& image_sizes) const {
  const int64_t num_classes = class_logits.size(-1);
  const auto all_proposals = at::cat(proposals, 0);
  const auto pred_boxes =
      all_proposals.size(0) == 0
          ? at::zeros({0, num_classes, 4}, box_deltas.options())
          : box_coder(options).decode(box_deltas, all_proposals).reshape({-1, num_classes, 4});
  const auto pred_scores = at::softmax(class_logits, -1);
  std::vector<RCNNDetection> out;
  int64_t offset = 0;
  for (size_t i = 0; i < proposals.size(); ++i) {
    const int64_t count = proposals[i].size(0);
    auto boxes = ops::clip_boxes_to_image(pred_boxes.narrow(0, offset, count), image_sizes[i][0],
                                          image_sizes[i][1]);
    auto scores = pred_scores.narrow(0, offset, count);
    offset += count;
    auto labels = at::arange(num_classes, class_logits.options().dtype(at::kLong))
                      .view({1, -1})
                      .expand_as(scores);
    boxes = boxes.narrow(1, 1, num_classes - 1).reshape({-1, 4});
    scores = scores.narrow(1, 1, num_classes - 1).reshape(-1);
    labels = labels.narrow(1, 1, num_classes - 1).reshape(-1);
    auto keep = at::where(scores > options.score_thresh())[0];
    boxes = boxes.index_select(0, keep);
    scores = scores.index_select(0, keep);
    labels = labels.index_select(0, keep);
    keep = ops::remove_small_boxes(boxes, 1e-2);
    boxes = boxes.index_select(0, keep);
    scores = scores.index_select(0, keep);
    labels = labels.index_select(0, keep);
    keep = ops::batched_nms(boxes, scores, labels, options.nms_thresh());
    keep = keep.narrow(0, 0, std::min(options.detections_per_img(), keep.size(0)));
    out.push_back({boxes.index_select(0, keep), scores.index_select(0, keep),
                   labels.index_select(0, keep), at::Tensor()});
  }
  return out;
}

RoIHeadsOutput RoIHeadsImpl::forward(const std::vector<at::Tensor>& features,
                                     const std::vector<at::Tensor>& proposals_in,
                                     const std::vector<ImageSize>& image_sizes,
                                     const std::vector<RCNNTarget>& targets) {
  RoIHeadsOutput out;
  const size_t n = proposals_in.size();
  if (!targets.empty()) {
    TORCH_CHECK(targets.size() == n, "RoIHeads: ", n, " images but ", targets.size(), " targets");
    // select_training_samples: proposals + ground truth, matched, labelled, sampled.
    std::vector<at::Tensor> proposals, labels, matched;
    const ops::MatcherOptions matcher(options.fg_iou_thresh(), options.bg_iou_thresh());
    for (size_t i = 0; i < n; ++i) {
      const auto gt = targets[i].boxes.to(proposals_in[i].device(), proposals_in[i].scalar_type());
      const auto p = at::cat({proposals_in[i], gt}, 0);
      at::Tensor m, l;
      if (gt.size(0) == 0) {
        m = at::zeros({p.size(0)}, p.options().dtype(at::kLong));
        l = at::zeros({p.size(0)}, p.options().dtype(at::kLong));
      } else {
        const auto raw = ops::match(ops::box_iou(gt, p), matcher);
        m = raw.clamp_min(0);
        l = targets[i].labels.to(p.device(), at::kLong).index_select(0, m);
        l.masked_fill_(raw == ops::kBackground, 0);
        l.masked_fill_(raw == ops::kBetweenThresholds, -1);
      }
      proposals.push_back(p);
      labels.push_back(l);
      matched.push_back(m);
    }
    const auto [pos, neg] = balanced_positive_negative_sample(
        labels, options.batch_size_per_image(), options.positive_fraction());
    std::vector<at::Tensor> regression;
    const auto coder = box_coder(options);
    for (size_t i = 0; i < n; ++i) {
      const auto keep = at::where(pos[i].bitwise_or(neg[i]))[0];
      proposals[i] = proposals[i].index_select(0, keep);
      labels[i] = labels[i].index_select(0, keep);
      matched[i] = matched[i].index_select(0, keep);
      // Targets of the foreground only: the loss reads no others (torchvision encodes all).
      const auto fg = at::where(labels[i] > 0)[0];
      auto r = at::zeros({keep.size(0), 4}, proposals[i].options());
      if (fg.numel() > 0) {
        const auto gt = targets[i].boxes.to(r.device(), r.scalar_type());
        r.index_put_({fg}, coder.encode(gt.index_select(0, matched[i].index_select(0, fg)),
                                        proposals[i].index_select(0, fg)));
      }
      regression.push_back(r);
    }
    const auto box_features = box_head->forward(box_roi_pool(features, proposals, image_sizes));
    const auto [class_logits, box_deltas] = box_predictor->forward(box_features);
    // fastrcnn_loss
    const auto all_labels = at::cat(labels, 0);
    const auto all_regression = at::cat(regression, 0);
    out.losses["loss_classifier"] = at::cross_entropy_loss(class_logits, all_labels);
    const auto fg = at::where(all_labels > 0)[0];
    const auto deltas = box_deltas.reshape({box_deltas.size(0), -1, 4});
    const auto fg_deltas = deltas.index({fg, all_labels.index_select(0, fg)});
    out.losses["loss_box_reg"] =
        at::smooth_l1_loss(fg_deltas, all_regression.index_select(0, fg), at::Reduction::Sum,
                           1.0 / 9.0) /
        static_cast<double>(all_labels.numel());
    if (has_mask()) {
      std::vector<at::Tensor> mask_boxes, mask_targets, mask_labels;
      for (size_t i = 0; i < n; ++i) {
        const auto fg_i = at::where(labels[i] > 0)[0];
        const auto boxes = proposals[i].index_select(0, fg_i);
        const auto idx = matched[i].index_select(0, fg_i);
        mask_boxes.push_back(boxes);
        mask_labels.push_back(labels[i].index_select(0, fg_i));
        if (fg_i.numel() == 0) continue;
        TORCH_CHECK(targets[i].masks.defined(), "RoIHeads: the mask branch needs target masks (image ", i,
                    ")");
        // project_masks_on_boxes: RoIAlign of the matched ground-truth mask, on the CPU (the
        // same numbers; the adaptive sampling grid of a large object would take one pass per
        // sampling point on another device), then to the logits' device.
        const auto cpu_boxes = boxes.detach().to(at::kCPU);
        const auto gt_masks = targets[i].masks.to(at::kCPU, cpu_boxes.scalar_type()).unsqueeze(1);
        const auto rois = at::cat(
            {idx.to(at::kCPU, cpu_boxes.scalar_type()).unsqueeze(1), cpu_boxes}, 1);
        const int64_t m = 2 * mask_roi_pool.options().output_size();
        mask_targets.push_back(
            ops::roi_align(gt_masks, rois, {m, m}, 1.0, -1, false).squeeze(1).to(boxes.device()));
      }
      const auto mask_logits =
          mask_predictor->forward(mask_head->forward(mask_roi_pool(features, mask_boxes, image_sizes)));
      const auto all_mask_labels = at::cat(mask_labels, 0);
      if (all_mask_labels.numel() == 0) {
        out.losses["loss_mask"] = mask_logits.sum() * 0;
      } else {
        const auto selected = mask_logits.index(
            {at::arange(all_mask_labels.size(0), all_mask_labels.options()), all_mask_labels});
        out.losses["loss_mask"] =
            at::binary_cross_entropy_with_logits(selected, at::cat(mask_targets, 0));
      }
    }
    if (is_training()) return out;
  }

  const auto box_features = box_head->forward(box_roi_pool(features, proposals_in, image_sizes));
  const auto [class_logits, box_deltas] = box_predictor->forward(box_features);
  out.detections = detect(class_logits, box_deltas, proposals_in, image_sizes);
  if (has_mask()) {
    std::vector<at::Tensor> boxes;
    for (const auto& d : out.detections) boxes.push_back(d.boxes);
    const auto logits =
        mask_predictor->forward(mask_head->forward(mask_roi_pool(features, boxes, image_sizes)));
    // maskrcnn_inference: the sigmoid of each detection's own class.
    std::vector<at::Tensor> labels;
    for (const auto& d : out.detections) labels.push_back(d.labels);
    const auto all_labels = at::cat(labels, 0);
    const auto probs =
        logits.sigmoid()
            .index({at::arange(all_labels.size(0), all_labels.options()), all_labels})
            .unsqueeze(1);
    int64_t offset = 0;
    for (auto& d : out.detections) {
      d.masks = probs.narrow(0, offset, d.boxes.size(0));
      offset += d.boxes.size(0);
    }
  }
  return out;
}

}  // namespace ostrov::models
