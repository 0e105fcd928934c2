#pragma once
// A Mask R-CNN-style instance segmenter (He, Gkioxari, Dollár & Girshick, "Mask R-CNN", ICCV
// 2017) on a one-stage detector: the light SSD (ResNet-18) finds and classifies boxes; each box
// crops a fine feature map with RoIAlign (14x14, sampling ratio 2) and a small FCN, the mask
// head, predicts a 28x28 mask per class, which is pasted back into the image at the box.
// Where Mask R-CNN has a region-proposal network and a box head, this one has SSD's single
// stage (its multibox loss trains the boxes); the mask branch is Mask R-CNN's.
//
// Training: the detector's multibox loss on ssd_targets, plus the mask loss
// (losses::functional::mask_loss) of the mask head on the ground-truth boxes, jittered
// (jitter_boxes), with mask_targets as targets. Inference: detector -> NMS -> mask head on the
// kept boxes -> paste_masks -> threshold.
//
// ```
// ostrov::models::SSDMask net(ostrov::models::SSDMaskOptions(11).image_size(128));
// auto out = net->forward(images);                          // out.detector, out.mask_features
// auto logits = net->mask_logits(out.mask_features, rois);  // [R, 11, 28, 28]
// auto objects = net->predict(images);                      // masks, scores, labels, boxes
// ```

#include <cstdint>
#include <random>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "ostrov/models/detection/ssd.h"
#include "ostrov/models/instance/network.h"

namespace ostrov::models {

/// Options of MaskHead.
struct MaskHeadOptions {
  /// RoI feature channels and mask classes; the other options at their defaults.
  MaskHeadOptions(int64_t in_channels, int64_t num_classes)
      : in_channels_(in_channels), num_classes_(num_classes) {}
  /// Channels of the RoI features.
  TORCH_ARG(int64_t, in_channels);
  /// Masks predicted per box: one per class, background included (index 0, never trained).
  TORCH_ARG(int64_t, num_classes);
  /// Width of the 3x3 convolutions (torchvision: 256).
  TORCH_ARG(int64_t, channels) = 64;
  /// Number of 3x3 convolutions (torchvision: 4).
  TORCH_ARG(int64_t, num_convs) = 4;
};

/// Mask R-CNN's mask branch (torchvision's MaskRCNNHeads + MaskRCNNPredictor, with batch norm):
/// `convs.i` ConvBnAct 3x3, `deconv` ConvTranspose 2x2 stride 2 (+ ReLU), `predictor` Conv 1x1.
/// [R, in_channels, S, S] -> [R, num_classes, 2S, 2S] mask logits.
class MaskHeadImpl : public torch::nn::Cloneable<MaskHeadImpl> {
 public:
  /// c10::Error unless in_channels, channels >= 1, num_convs >= 0 and num_classes >= 2.
  explicit MaskHeadImpl(MaskHeadOptions options);
  void reset() override;
  /// rois: RoI features [R, in_channels, S, S] -> mask logits [R, num_classes, 2S, 2S];
  /// c10::Error for another shape.
  at::Tensor forward(const at::Tensor& rois);

  /// The options it was built with; reset() rebuilds from them.
  MaskHeadOptions options;
  /// num_convs 3x3 ConvBnAct, in_channels -> channels -> ... -> channels (empty for 0).
  torch::nn::Sequential convs{nullptr};
  /// 2x2 stride-2 transposed conv to `channels` (ReLU applied in forward): doubles the side.
  torch::nn::ConvTranspose2d deconv{nullptr};
  /// 1x1 conv, channels -> num_classes: one mask's logits per class.
  torch::nn::Conv2d predictor{nullptr};
};
TORCH_MODULE(MaskHead);

/// Options of SSDMask.
struct SSDMaskOptions {
  /// `num_classes` classes, background included; the other options at their defaults.
  explicit SSDMaskOptions(int64_t num_classes) : num_classes_(num_classes) {}
  /// C, classes including background.
  TORCH_ARG(int64_t, num_classes);
  /// Side of the square network input (the detector's SSDOptions::light image size).
  TORCH_ARG(int64_t, image_size) = 256;
  /// The detector's extra stages after layer4 (SSDOptions::num_extra).
  TORCH_ARG(int64_t, num_extra) = 3;
  /// The detector's ResNet-18 width (SSDOptions::backbone_channels; 64 = torchvision's).
  TORCH_ARG(int64_t, backbone_channels) = 64;
  /// Channels of the mask feature map: layer1..layer3 merged top-down (an FPN level at stride 4).
  TORCH_ARG(int64_t, feature_channels) = 64;
  /// RoIAlign output side (Mask R-CNN: 14) and sampling ratio (2); masks are 2 x roi_size.
  TORCH_ARG(int64_t, roi_size) = 14;
  /// RoIAlign's sampling points per bin along each axis (<= 0: adaptive, as torchvision).
  TORCH_ARG(int64_t, sampling_ratio) = 2;
  /// The mask head (its in_channels and num_classes are set from the above).
  TORCH_ARG(int64_t, mask_channels) = 64;
  /// The mask head's 3x3 convolutions (MaskHeadOptions::num_convs).
  TORCH_ARG(int64_t, mask_convs) = 4;
  /// Pasted mask probabilities above this are the object.
  TORCH_ARG(double, mask_threshold) = 0.5;
  /// predict() keeps detections scoring at least this (AP wants low values, counting higher).
  TORCH_ARG(double, min_score) = 0.05;
  /// Detector post-processing (torchvision's SSD defaults).
  TORCH_ARG(SSDPostprocessOptions, postprocess) = {};
  /// Detections from this score on count as objects in label images (SBD, |DiC|) ...
  TORCH_ARG(double, count_score) = 0.5;
  /// ... once a class-agnostic NMS at this box IoU removed one object found as two classes.
  TORCH_ARG(double, count_nms_threshold) = 0.5;

 public:
  /// The detector's options: SSDOptions::light(num_classes, image_size) with num_extra and
  /// postprocess from here.
  SSDOptions detector_options() const;
};

/// What SSDMask::forward returns.
struct SSDMaskOutput {
  SSDOutput detector;        ///< locations, class logits, priors
  at::Tensor mask_features;  ///< [N, feature_channels, H/4, W/4]
};

/// The model. Children: `detector` (SSD, light: state_dict keys detector.backbone.*,
/// detector.head.*), `lateral.{0,1,2}` (1x1 convs from layer1/2/3), `smooth` (3x3 ConvBnAct),
/// `mask_head` (MaskHead).
class SSDMaskImpl : public torch::nn::Cloneable<SSDMaskImpl>, public InstanceNetwork {
 public:
  /// c10::Error for feature_channels or roi_size < 1, mask_threshold outside (0, 1), and the
  /// SSD's and the mask head's own checks.
  explicit SSDMaskImpl(SSDMaskOptions options);
  void reset() override;
  /// x [N,3,S,S] (preprocessed, S = image_size or any size the detector takes).
  SSDMaskOutput forward(const at::Tensor& x);
  /// Mask logits [R, C, 2 roi_size, 2 roi_size] of rois [R,5] (batch index, x1, y1, x2, y2 in
  /// input pixels) on mask_features.
  at::Tensor mask_logits(const at::Tensor& mask_features, const at::Tensor& rois);
  /// Detections with masks for every image, at the input's size: masks [K,H,W] uint8 (each
  /// box's class mask, pasted, > mask_threshold), scores, labels (1..C-1) and boxes.
  std::vector<InstancePrediction> predict(const at::Tensor& x) override;
  bool has_classes() const override { return true; }
  /// Detections scoring >= min_score that survive a class-agnostic NMS at
  /// count_nms_threshold (the detector's NMS is per class), best first.
  at::Tensor class_agnostic(const InstancePrediction& p, double min_score) const override;
  /// class_agnostic(p, count_score), weakest first.
  at::Tensor counted_masks(const InstancePrediction& p) const override;

  /// The options it was built with; reset() rebuilds from them.
  SSDMaskOptions options;
  /// The light SSD of options.detector_options() (its ResNet-18 backbone also feeds the masks).
  SSD detector{nullptr};
  /// 1x1 convs from layer1, layer2, layer3 (1, 2, 4 x backbone_channels) to feature_channels,
  /// summed top-down with nearest up-sampling.
  torch::nn::ModuleList lateral{nullptr};
  /// 3x3 ConvBnAct ("smooth.0") on the merged map: mask_features.
  torch::nn::Sequential smooth{nullptr};
  /// MaskHead on the RoIAligned mask_features (feature_channels -> num_classes masks).
  MaskHead mask_head{nullptr};
};
TORCH_MODULE(SSDMask);

/// Mask targets as torchvision's project_masks_on_boxes: each object's mask [G,H,W] (any
/// integer or float type) cropped to its box [G,4] (x1,y1,x2,y2 pixels) and resized to
/// size x size with roi_align (legacy, adaptive sampling), then >= 0.5 -> [G,size,size] float 0/1.
at::Tensor mask_targets(const at::Tensor& masks, const at::Tensor& boxes, int64_t size);

/// Training boxes for the mask head: every corner moved by a uniform offset in
/// [-amount, amount] x the box's width (x) or height (y), then clipped to the image {H,W}
/// and kept at least 1 pixel wide. Draws only from `rng`; amount 0 returns the boxes unchanged.
at::Tensor jitter_boxes(const at::Tensor& boxes, double amount, ops::GridSize image_size,
                        std::mt19937_64& rng);

}  // namespace ostrov::models
