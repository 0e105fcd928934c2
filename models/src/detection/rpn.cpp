#include "ostrov/models/detection/rpn.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>

#include "ostrov/ops/box_coder.h"
#include "ostrov/ops/boxes.h"
#include "ostrov/ops/matchers.h"
#include "ostrov/ops/nms.h"

namespace ostrov::models {

AnchorGenerator::AnchorGenerator(AnchorGeneratorOptions options) : options_(std::move(options)) {
  TORCH_CHECK(options_.sizes().size() == options_.aspect_ratios().size(),
              "AnchorGenerator: ", options_.sizes().size(), " levels of sizes but ",
              options_.aspect_ratios().size(), " of aspect ratios");
  for (size_t l = 0; l < options_.sizes().size(); ++l) {
    const auto& sizes = options_.sizes()[l];
    const auto& ratios = options_.aspect_ratios()[l];
    TORCH_CHECK(!sizes.empty() && !ratios.empty(), "AnchorGenerator: level ", l,
                " has no sizes or no aspect ratios");
    for (const double v : sizes) TORCH_CHECK(v > 0, "AnchorGenerator: level ", l, " size ", v);
    for (const double v : ratios) TORCH_CHECK(v > 0, "AnchorGenerator: level ", l, " ratio ", v);
    // torchvision's generate_anchors, in float32.
    const auto scales = at::tensor(sizes, at::kDouble).to(at::kFloat);
    const auto h_ratios = at::tensor(ratios, at::kDouble).to(at::kFloat).sqrt();
    const auto w_ratios = 1 / h_ratios;
    const auto ws = (w_ratios.unsqueeze(1) * scales.unsqueeze(0)).view(-1);
    const auto hs = (h_ratios.unsqueeze(1) * scales.unsqueeze(0)).view(-1);
    cell_anchors_.push_back((at::stack({-ws, -hs, ws, hs}, 1) / 2).round());
  }
}

std::vector<int64_t> AnchorGenerator::num_anchors_per_location() const {
  std::vector<int64_t> n;
  for (const auto& a : cell_anchors_) n.push_back(a.size(0));
  return n;
}

at::Tensor AnchorGenerator::cell_anchors(size_t level) const {
  TORCH_CHECK(level < cell_anchors_.size(), "AnchorGenerator: no level ", level);
  return cell_anchors_[level];
}

at::Tensor AnchorGenerator::operator()(ImageSize image_size,
                                       const std::vector<ImageSize>& grid_sizes,
                                       const c10::Device& device) const {
  TORCH_CHECK(grid_sizes.size() == cell_anchors_.size(), "AnchorGenerator: ", grid_sizes.size(),
              " feature levels but anchors for ", cell_anchors_.size());
  std::vector<at::Tensor> levels;
  const auto f = at::TensorOptions().dtype(at::kFloat).device(device);
  for (size_t l = 0; l < grid_sizes.size(); ++l) {
    const auto [gh, gw] = grid_sizes[l];
    TORCH_CHECK(gh >= 1 && gw >= 1, "AnchorGenerator: empty feature level ", l);
    const auto stride_h = static_cast<double>(image_size[0] / gh);
    const auto stride_w = static_cast<double>(image_size[1] / gw);
    const auto shifts_x = at::arange(gw, f) * stride_w;
    const auto shifts_y = at::arange(gh, f) * stride_h;
    const auto grid = at::meshgrid({shifts_y, shifts_x}, "ij");
    const auto sx = grid[1].reshape(-1), sy = grid[0].reshape(-1);
    const auto shifts = at::stack({sx, sy, sx, sy}, 1);
    levels.push_back(
        (shifts.view({-1, 1, 4}) + cell_anchors_[l].to(device).view({1, -1, 4})).reshape({-1, 4}));
  }
  return at::cat(levels, 0);
}

RPNHeadImpl::RPNHeadImpl(RPNHeadOptions options_) : options(options_) { reset(); }

void RPNHeadImpl::reset() {
  const int64_t c = options.in_channels(), a = options.num_anchors();
  TORCH_CHECK(c >= 1 && a >= 1, "RPNHead: in_channels and num_anchors must be >= 1, got ", c,
              " and ", a);
  // A Sequential cannot hold a Sequential; a ModuleList of one gives the same keys.
  conv = register_module("conv", torch::nn::ModuleList(torch::nn::Sequential(
                                     torch::nn::Conv2d(torch::nn::Conv2dOptions(c, c, 3).padding(1)),
                                     torch::nn::ReLU(torch::nn::ReLUOptions(true)))));
  cls_logits = register_module("cls_logits", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, a, 1)));
  bbox_pred =
      register_module("bbox_pred", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, 4 * a, 1)));
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* layer = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::normal_(layer->weight, 0.0, 0.01);
      torch::nn::init::constant_(layer->bias, 0.0);
    }
  }
}

std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> RPNHeadImpl::forward(
    const std::vector<at::Tensor>& features) {
  std::vector<at::Tensor> logits, deltas;
  for (const auto& feature : features) {
    const auto t = conv[0]->as<torch::nn::Sequential>()->forward(feature);
    logits.push_back(cls_logits->forward(t));
    deltas.push_back(bbox_pred->forward(t));
  }
  return {logits, deltas};
}

std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> balanced_positive_negative_sample(
    const std::vector<at::Tensor>& labels, int64_t batch_size_per_image, double positive_fraction) {
  std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> masks;
  for (const auto& l : labels) {
    const auto positive = at::where(l >= 1)[0];
    const auto negative = at::where(l == 0)[0];
    const auto num_pos = std::min(
        positive.numel(),
        static_cast<int64_t>(static_cast<double>(batch_size_per_image) * positive_fraction));
    const auto num_neg = std::min(negative.numel(), batch_size_per_image - num_pos);
    const auto opts = at::TensorOptions().dtype(at::kLong).device(l.device());
    const auto perm1 = at::randperm(positive.numel(), opts).narrow(0, 0, num_pos);
    const auto perm2 = at::randperm(negative.numel(), opts).narrow(0, 0, num_neg);
    auto pos = at::zeros_like(l, at::kByte);
    auto neg = at::zeros_like(l, at::kByte);
    pos.index_fill_(0, positive.index_select(0, perm1), 1);
    neg.index_fill_(0, negative.index_select(0, perm2), 1);
    masks.first.push_back(pos);
    masks.second.push_back(neg);
  }
  return masks;
}

RegionProposalNetworkImpl::RegionProposalNetworkImpl(AnchorGenerator anchors, RPNHead head_,
                                                     RegionProposalNetworkOptions options_)
    : anchor_generator(std::move(anchors)), head(std::move(head_)), options(options_) {
  register_children();
}

void RegionProposalNetworkImpl::reset() {
  // Called by clone(): give the copy its own head (see RoIHeadsImpl::reset).
  head = RPNHead(std::dynamic_pointer_cast<RPNHeadImpl>(head->clone()));
  register_children();
}

void RegionProposalNetworkImpl::register_children() {
  const auto per_location = anchor_generator.num_anchors_per_location();
  for (const int64_t a : per_location) {
    TORCH_CHECK(a == head->options.num_anchors(), "RegionProposalNetwork: the head predicts ",
                head->options.num_anchors(), " anchors per position, the generator makes ", a);
  }
  head = register_module("head", head);
}

namespace {

/// [N, A*C, H, W] per level -> [N, sum H*W*A, C] in the anchors' order (torchvision's
/// permute_and_flatten + concat_box_prediction_layers).
at::Tensor flatten_levels(const std::vector<at::Tensor>& levels, int64_t c) {
  std::vector<at::Tensor> flat;
  for (const auto& t : levels) {
    const int64_t n = t.size(0), h = t.size(2), w = t.size(3);
    flat.push_back(t.view({n, -1, c, h, w}).permute({0, 3, 4, 1, 2}).reshape({n, -1, c}));
  }
  return at::cat(flat, 1);
}

}  // namespace

RPNOutput RegionProposalNetworkImpl::forward(const ImageBatch& batch,
                                             const std::vector<at::Tensor>& features,
                                             const std::vector<RCNNTarget>& targets) {
  const auto [logits, deltas] = head->forward(features);
  const int64_t n = batch.tensors.size(0);
  std::vector<ImageSize> grids;
  std::vector<int64_t> per_level;
  for (const auto& l : logits) {
    grids.push_back({l.size(2), l.size(3)});
    per_level.push_back(l.size(1) * l.size(2) * l.size(3));
  }
  const auto anchors = anchor_generator({batch.tensors.size(2), batch.tensors.size(3)}, grids,
                                        batch.tensors.device());
  const auto objectness = flatten_levels(logits, 1).reshape({n, -1});  // [N, P]
  const auto box_deltas = flatten_levels(deltas, 4);                     // [N, P, 4]
  const int64_t total = anchors.size(0);
  const ops::BoxCoder coder({1.0, 1.0, 1.0, 1.0});
  const auto proposals =
      coder.decode(box_deltas.detach().reshape({-1, 4}), anchors.repeat({n, 1})).view({n, -1, 4});

  // filter_proposals: the best pre_nms_top_n of each level, then per image clip, remove small,
  // threshold, NMS per level, keep post_nms_top_n.
  const bool training = is_training();
  const int64_t pre_top = training ? options.pre_nms_top_n_train() : options.pre_nms_top_n_test();
  const int64_t post_top =
      training ? options.post_nms_top_n_train() : options.post_nms_top_n_test();
  const auto scores_all = objectness.detach();
  std::vector<at::Tensor> top_idx, level_ids;
  int64_t offset = 0;
  for (size_t l = 0; l < per_level.size(); ++l) {
    const int64_t k = std::min(pre_top, per_level[l]);
    const auto idx = std::get<1>(scores_all.narrow(1, offset, per_level[l]).topk(k, 1));
    top_idx.push_back(idx + offset);
    level_ids.push_back(at::full({k}, static_cast<int64_t>(l), idx.options()));
    offset += per_level[l];
  }
  const auto top = at::cat(top_idx, 1);        // [N, K]
  const auto levels = at::cat(level_ids, 0);   // [K]
  RPNOutput out;
  for (int64_t i = 0; i < n; ++i) {
    auto boxes = proposals[i].index_select(0, top[i]);
    auto scores = scores_all[i].index_select(0, top[i]).sigmoid();
    auto lvl = levels;
    const auto [h, w] = batch.image_sizes[static_cast<size_t>(i)];
    boxes = ops::clip_boxes_to_image(boxes, h, w);
    auto keep = ops::remove_small_boxes(boxes, 1e-3);
    boxes = boxes.index_select(0, keep);
    scores = scores.index_select(0, keep);
    lvl = lvl.index_select(0, keep);
    keep = at::where(scores >= options.score_thresh())[0];
    boxes = boxes.index_select(0, keep);
    scores = scores.index_select(0, keep);
    lvl = lvl.index_select(0, keep);
    keep = ops::batched_nms(boxes, scores, lvl, options.nms_thresh());
    keep = keep.narrow(0, 0, std::min(post_top, keep.size(0)));
    out.boxes.push_back(boxes.index_select(0, keep));
    out.scores.push_back(scores.index_select(0, keep));
  }
  if (targets.empty()) return out;

  TORCH_CHECK(static_cast<int64_t>(targets.size()) == n, "RegionProposalNetwork: ", n,
              " images but ", targets.size(), " targets");
  // assign_targets_to_anchors: 1 positive, 0 negative, -1 between the thresholds.
  std::vector<at::Tensor> labels, matched_boxes;
  const auto matcher = ops::MatcherOptions(options.fg_iou_thresh(), options.bg_iou_thresh())
                           .allow_low_quality_matches(true);
  for (const auto& t : targets) {
    if (t.boxes.size(0) == 0) {
      labels.push_back(at::zeros({total}, anchors.options()));
      matched_boxes.push_back(at::Tensor());
      continue;
    }
    const auto gt = t.boxes.to(anchors.device(), at::kFloat);
    const auto matched = ops::match(ops::box_iou(gt, anchors), matcher);
    auto l = (matched >= 0).to(at::kFloat);
    l.masked_fill_(matched == ops::kBetweenThresholds, -1.0);
    labels.push_back(l);
    matched_boxes.push_back(gt.index_select(0, matched.clamp_min(0)));
  }
  const auto [pos_masks, neg_masks] = balanced_positive_negative_sample(
      labels, options.batch_size_per_image(), options.positive_fraction());
  const auto pos = at::where(at::cat(pos_masks, 0))[0];
  const auto neg = at::where(at::cat(neg_masks, 0))[0];
  const auto sampled = at::cat({pos, neg}, 0);
  // Regression targets of the sampled positives only (the loss reads no others).
  std::vector<at::Tensor> targets_pos;
  for (int64_t i = 0; i < n; ++i) {
    const auto p = at::where(pos_masks[static_cast<size_t>(i)])[0];
    if (p.numel() == 0) continue;
    targets_pos.push_back(coder.encode(matched_boxes[static_cast<size_t>(i)].index_select(0, p),
                                       anchors.index_select(0, p)));
  }
  const auto flat_deltas = box_deltas.reshape({-1, 4});
  const auto regression =
      targets_pos.empty() ? at::zeros({0, 4}, flat_deltas.options()) : at::cat(targets_pos, 0);
  out.losses["loss_rpn_box_reg"] =
      at::smooth_l1_loss(flat_deltas.index_select(0, pos), regression, at::Reduction::Sum,
                         1.0 / 9.0) /
      static_cast<double>(sampled.numel());
  out.losses["loss_objectness"] = at::binary_cross_entropy_with_logits(
      objectness.reshape(-1).index_select(0, sampled), at::cat(labels, 0).index_select(0, sampled));
  return out;
}

}  // namespace ostrov::models
