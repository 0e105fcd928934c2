#pragma once
// The second stage of Faster R-CNN and Mask R-CNN (He et al., "Mask R-CNN", ICCV 2017) as
// torchvision 0.14 builds it: MultiScaleRoIAlign, TwoMLPHead + FastRCNNPredictor (boxes and
// classes), MaskRCNNHeads + MaskRCNNPredictor (a mask per class) and RoIHeads, which samples
// proposals for training, computes the three losses and post-processes detections.

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "ostrov/models/detection/rcnn_transform.h"

namespace ostrov::models {

/// Options of MultiScaleRoIAlign.
struct MultiScaleRoIAlignOptions {
  /// Output side (7 for boxes, 14 for masks).
  // NOLINTNEXTLINE(google-explicit-constructor): MultiScaleRoIAlignOptions(7)
  /* implicit */ MultiScaleRoIAlignOptions(int64_t output_size = 7) : output_size_(output_size) {}
  /// Side of the pooled grid.
  TORCH_ARG(int64_t, output_size);
  /// RoIAlign's sampling points per bin and axis.
  TORCH_ARG(int64_t, sampling_ratio) = 2;
  /// A box of this side (sqrt of its area) goes to canonical_level.
  TORCH_ARG(double, canonical_scale) = 224;
  /// The level of a canonical_scale box (4 = stride 16).
  TORCH_ARG(int64_t, canonical_level) = 4;
};

/// torchvision.ops.MultiScaleRoIAlign over the levels it is given. Each level's scale is
/// 2^round(log2(feature height / largest image height)); a box of side s = sqrt(area) pools
/// from level floor(canonical_level + log2(s / canonical_scale) + 1e-6) (float32, as
/// torchvision's LevelMapper), clamped to the levels present; RoIAlign with aligned=false.
class MultiScaleRoIAlign {
 public:
  /// The options (c10::Error for an output_size < 1).
  explicit MultiScaleRoIAlign(MultiScaleRoIAlignOptions options = {});
  /// features: the levels to pool from ([N,C,h,w], finest first); boxes: per image [K_i,4] in
  /// image pixels; image_sizes: the images' sizes before padding -> [sum K_i, C, S, S].
  at::Tensor operator()(const std::vector<at::Tensor>& features,
                        const std::vector<at::Tensor>& boxes,
                        const std::vector<ImageSize>& image_sizes) const;
  /// Level index (0 = the finest given) of each box, as torchvision's LevelMapper, for
  /// levels k_min..k_max (log2 of their strides).
  at::Tensor map_levels(const std::vector<at::Tensor>& boxes, int64_t k_min, int64_t k_max) const;
  /// The options it was built with.
  const MultiScaleRoIAlignOptions& options() const { return options_; }

 private:
  MultiScaleRoIAlignOptions options_;
};

/// torchvision's TwoMLPHead: fc6 Linear(in, representation), fc7 Linear(representation,
/// representation), each followed by ReLU, on the flattened RoI features.
class TwoMLPHeadImpl : public torch::nn::Cloneable<TwoMLPHeadImpl> {
 public:
  /// in_channels = C * S * S of the pooled features.
  TwoMLPHeadImpl(int64_t in_channels, int64_t representation_size);
  void reset() override;
  /// [R, C, S, S] (or [R, in]) -> [R, representation_size].
  at::Tensor forward(const at::Tensor& x);
  int64_t in_channels;          ///< inputs of fc6
  int64_t representation_size;  ///< outputs of fc6 and fc7
  torch::nn::Linear fc6{nullptr};  ///< first layer
  torch::nn::Linear fc7{nullptr};  ///< second layer
};
TORCH_MODULE(TwoMLPHead);

/// torchvision's FastRCNNPredictor: cls_score Linear(in, C), bbox_pred Linear(in, 4C).
class FastRCNNPredictorImpl : public torch::nn::Cloneable<FastRCNNPredictorImpl> {
 public:
  /// num_classes counts the background.
  FastRCNNPredictorImpl(int64_t in_channels, int64_t num_classes);
  void reset() override;
  /// [R, in] -> (class logits [R, C], box deltas [R, 4C], class-major).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x);
  int64_t in_channels;  ///< features per RoI
  int64_t num_classes;  ///< classes, background included
  torch::nn::Linear cls_score{nullptr};  ///< class logits
  torch::nn::Linear bbox_pred{nullptr};  ///< box deltas per class
};
TORCH_MODULE(FastRCNNPredictor);

/// torchvision's MaskRCNNHeads: children "0", "1", ... each Sequential("0": 3x3 conv with
/// bias, padding = dilation, "1": ReLU), keys "0.0.weight", ... (files before torchvision 0.13
/// say "mask_fcn1.weight"; FasterRCNNImpl::load_torchvision maps them). kaiming_normal_
/// (fan_out, relu) weights, zero biases.
class MaskRCNNHeadsImpl : public torch::nn::Cloneable<MaskRCNNHeadsImpl> {
 public:
  /// layers: output channels of each conv (torchvision: 256, 256, 256, 256).
  MaskRCNNHeadsImpl(int64_t in_channels, std::vector<int64_t> layers, int64_t dilation = 1);
  void reset() override;
  /// [R, in, S, S] -> [R, layers.back(), S, S].
  at::Tensor forward(const at::Tensor& x);
  int64_t in_channels;          ///< channels of the pooled features
  std::vector<int64_t> layers;  ///< channels of each conv
  int64_t dilation;             ///< of every conv
  /// The blocks, registered as "0", "1", ...: Sequential(Conv2d, ReLU) each.
  std::vector<torch::nn::Sequential> blocks;
};
TORCH_MODULE(MaskRCNNHeads);

/// torchvision's MaskRCNNPredictor: conv5_mask ConvTranspose2d(in, dim_reduced, 2, stride 2),
/// ReLU, mask_fcn_logits Conv2d(dim_reduced, C, 1). Weights kaiming_normal_(fan_out, relu),
/// biases PyTorch's default.
class MaskRCNNPredictorImpl : public torch::nn::Cloneable<MaskRCNNPredictorImpl> {
 public:
  /// num_classes counts the background.
  MaskRCNNPredictorImpl(int64_t in_channels, int64_t dim_reduced, int64_t num_classes);
  void reset() override;
  /// [R, in, S, S] -> mask logits [R, C, 2S, 2S].
  at::Tensor forward(const at::Tensor& x);
  int64_t in_channels;   ///< channels of the head's output
  int64_t dim_reduced;   ///< channels after the transposed conv
  int64_t num_classes;   ///< masks per RoI
  torch::nn::ConvTranspose2d conv5_mask{nullptr};  ///< 2x up-sampling
  torch::nn::Conv2d mask_fcn_logits{nullptr};      ///< one logit map per class
};
TORCH_MODULE(MaskRCNNPredictor);

/// Options of RoIHeads (torchvision's FasterRCNN / MaskRCNN defaults).
struct RoIHeadsOptions {
  /// Proposals with IoU >= this with a ground-truth box are foreground.
  TORCH_ARG(double, fg_iou_thresh) = 0.5;
  /// Proposals whose best IoU is below this are background.
  TORCH_ARG(double, bg_iou_thresh) = 0.5;
  /// Proposals sampled per image for the losses.
  TORCH_ARG(int64_t, batch_size_per_image) = 512;
  /// Largest fraction of foreground among them.
  TORCH_ARG(double, positive_fraction) = 0.25;
  /// BoxCoder weights of the box deltas.
  TORCH_ARG(std::vector<double>, bbox_reg_weights) = std::vector<double>{10.0, 10.0, 5.0, 5.0};
  /// Detections scoring at most this are dropped (evaluation).
  TORCH_ARG(double, score_thresh) = 0.05;
  /// Per-class NMS IoU threshold (evaluation).
  TORCH_ARG(double, nms_thresh) = 0.5;
  /// Detections kept per image (evaluation).
  TORCH_ARG(int64_t, detections_per_img) = 100;
};

/// What RoIHeads::forward returns.
struct RoIHeadsOutput {
  /// Evaluation: per image boxes, scores, labels (and masks [K,1,28,28] probabilities) in the
  /// resized image's pixels.
  std::vector<RCNNDetection> detections;
  /// With targets: "loss_classifier", "loss_box_reg" and, with the mask branch, "loss_mask".
  std::map<std::string, at::Tensor> losses;
};

/// torchvision.models.detection.roi_heads.RoIHeads. Children and their keys: box_head
/// (TwoMLPHead), box_predictor (FastRCNNPredictor) and, for Mask R-CNN, mask_head and
/// mask_predictor; the two MultiScaleRoIAlign have no state.
/// Training (targets given): ground-truth boxes join the proposals; proposals are matched
/// (Matcher(fg, bg)), labelled with their box's class (0 background), sampled
/// (balanced_positive_negative_sample) and kept in index order; the losses are cross-entropy,
/// smooth L1 (beta 1/9, summed over foreground RoIs, divided by all sampled) on the deltas of
/// the true class, and the mask loss: BCE of the true class's mask logits against RoIAlign of
/// the matched ground-truth mask on the foreground proposals (aligned=false, adaptive
/// sampling), averaged. Evaluation: softmax, boxes decoded per class and clipped, background
/// dropped, score > score_thresh, boxes of side >= 1e-2, per-class NMS, detections_per_img best;
/// masks from the detections' boxes, sigmoid of their class's logits.
class RoIHeadsImpl : public torch::nn::Cloneable<RoIHeadsImpl> {
 public:
  /// Box branch only (Faster R-CNN).
  RoIHeadsImpl(MultiScaleRoIAlign box_roi_pool, TwoMLPHead box_head,
               FastRCNNPredictor box_predictor, RoIHeadsOptions options = {});
  /// Box and mask branches (Mask R-CNN).
  RoIHeadsImpl(MultiScaleRoIAlign box_roi_pool, TwoMLPHead box_head,
               FastRCNNPredictor box_predictor, MultiScaleRoIAlign mask_roi_pool,
               MaskRCNNHeads mask_head, MaskRCNNPredictor mask_predictor,
               RoIHeadsOptions options = {});
  /// Gives the module its own copies of the heads (clone() calls it); the constructors
  /// register the modules they are given.
  void reset() override;
  /// Whether the mask branch is present.
  bool has_mask() const { return !mask_head.is_empty(); }
  /// features: the levels the RoIs pool from (finest first); proposals: per image [P_i,4];
  /// image_sizes: the resized sizes; targets: per image (boxes, labels, masks for the mask
  /// branch), empty for none. Losses need targets; detections are made in evaluation mode
  /// (in evaluation mode with targets, both).
  RoIHeadsOutput forward(const std::vector<at::Tensor>& features,
                         const std::vector<at::Tensor>& proposals,
                         const std::vector<ImageSize>& image_sizes,
                         const std::vector<RCNNTarget>& targets = {});

  MultiScaleRoIAlign box_roi_pool;               ///< 7x7 pooling for the box branch
  TwoMLPHead box_head{nullptr};                  ///< "box_head"
  FastRCNNPredictor box_predictor{nullptr};      ///< "box_predictor"
  MultiScaleRoIAlign mask_roi_pool;              ///< 14x14 pooling for the mask branch
  MaskRCNNHeads mask_head{nullptr};              ///< "mask_head" (Mask R-CNN only)
  MaskRCNNPredictor mask_predictor{nullptr};     ///< "mask_predictor" (Mask R-CNN only)
  RoIHeadsOptions options;                       ///< the options it was built with

 private:
  void register_children();
  std::vector<RCNNDetection> detect(const at::Tensor& class_logits, const at::Tensor& box_deltas,
                                    const std::vector<at::Tensor>& proposals,
                                    const std::vector<ImageSize>& image_sizes) const;
};
TORCH_MODULE(RoIHeads);

}  // namespace ostrov::models
