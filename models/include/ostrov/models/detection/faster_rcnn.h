#pragma once
// Faster R-CNN and Mask R-CNN with a ResNet-FPN backbone, as torchvision 0.14's
// fasterrcnn_resnet50_fpn and maskrcnn_resnet50_fpn (v1) build them (He et al., "Mask R-CNN",
// ICCV 2017; Ren et al., "Faster R-CNN", NeurIPS 2015): the same modules under the same
// state_dict keys, so torchvision's weights load and give the same detections.
//
// ```
// auto net = ostrov::models::FasterRCNN(ostrov::models::FasterRCNNOptions::maskrcnn_resnet50_fpn(91));
// ostrov::io::load_weights(*net, "maskrcnn_resnet50_fpn.pth");   // torchvision's file
// net->eval();
// auto detections = net->detect({image});          // [3,H,W] RGB in [0,1]: boxes, labels, masks
// net->train();
// auto losses = net->forward({image}, {target}).losses;   // loss_objectness, ..., loss_mask
// ```
//
// Mask R-CNN is a FasterRCNN with its mask branch on, as torchvision's MaskRCNN subclasses
// FasterRCNN. models::SSDMask (model name "ssd_mask") is ostrov's one-stage alternative.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/detection/fpn.h"
#include "ostrov/models/detection/rcnn_transform.h"
#include "ostrov/models/detection/roi_heads.h"
#include "ostrov/models/detection/rpn.h"
#include "ostrov/models/instance/network.h"

namespace ostrov::models {

/// Options of FasterRCNN; the presets give torchvision's models.
struct FasterRCNNOptions {
  /// `num_classes` classes, background included (COCO: 91); the rest torchvision's defaults
  /// for a ResNet-50-FPN Faster R-CNN without the mask branch.
  explicit FasterRCNNOptions(int64_t num_classes) : num_classes_(num_classes) {}
  /// C, classes including the background (index 0).
  TORCH_ARG(int64_t, num_classes);
  /// The body and pyramid (ResNet-50, layer1..layer4, 256 channels).
  TORCH_ARG(BackboneWithFPNOptions, backbone) = BackboneWithFPNOptions(BackboneOptions("resnet50"));
  /// Anchor sizes and ratios per pyramid level (levels + "pool").
  TORCH_ARG(AnchorGeneratorOptions, anchors) = {};
  /// The first stage.
  TORCH_ARG(RegionProposalNetworkOptions, rpn) = {};
  /// The second stage's sampling, losses and post-processing.
  TORCH_ARG(RoIHeadsOptions, roi_heads) = {};
  /// Resizing, normalisation and batching.
  TORCH_ARG(GeneralizedRCNNTransformOptions, transform) = {};
  /// Output side of the box branch's RoIAlign (7).
  TORCH_ARG(int64_t, box_roi_size) = 7;
  /// Width of TwoMLPHead (1024).
  TORCH_ARG(int64_t, representation_size) = 1024;
  /// Add the mask branch (Mask R-CNN).
  TORCH_ARG(bool, masks) = false;
  /// Output side of the mask branch's RoIAlign (14; masks are twice that).
  TORCH_ARG(int64_t, mask_roi_size) = 14;
  /// Channels of MaskRCNNHeads' convs (256 x 4).
  TORCH_ARG(std::vector<int64_t>, mask_layers) = std::vector<int64_t>{256, 256, 256, 256};
  /// Channels after MaskRCNNPredictor's transposed conv (256).
  TORCH_ARG(int64_t, mask_dim_reduced) = 256;
  /// Sampling ratio of both RoIAligns (2).
  TORCH_ARG(int64_t, sampling_ratio) = 2;
  /// predict(): pasted mask probabilities above this are the object.
  TORCH_ARG(double, mask_threshold) = 0.5;
  /// class_agnostic / counted_masks: detections from this score count as objects ...
  TORCH_ARG(double, count_score) = 0.5;
  /// ... after a class-agnostic NMS at this IoU.
  TORCH_ARG(double, count_nms_threshold) = 0.5;

 public:
  /// torchvision's fasterrcnn_resnet50_fpn(weights=None, num_classes=num_classes).
  static FasterRCNNOptions fasterrcnn_resnet50_fpn(int64_t num_classes = 91);
  /// torchvision's maskrcnn_resnet50_fpn(weights=None, num_classes=num_classes) (v1).
  static FasterRCNNOptions maskrcnn_resnet50_fpn(int64_t num_classes = 91);
  /// A Mask R-CNN a 2-core CPU trains in minutes on small images: ResNet-18 FPN with
  /// `channels` per level, anchors 16..256 (fit for objects of 10-100 pixels), heads of 256,
  /// min_size = max_size = `image_size`, 128 RoIs per image and 1000/500 proposals in training/
  /// evaluation.
  static FasterRCNNOptions maskrcnn_resnet18_fpn_small(int64_t num_classes, int64_t image_size,
                                                       int64_t channels = 64);
};

/// What FasterRCNN::forward returns.
struct FasterRCNNOutput {
  /// Given targets: loss_objectness, loss_rpn_box_reg, loss_classifier, loss_box_reg and, with
  /// masks, loss_mask (torchvision's names) — sum them to train.
  std::map<std::string, at::Tensor> losses;
  /// In evaluation mode: per image, in the given image's pixels (masks [K,1,H,W] probabilities).
  std::vector<RCNNDetection> detections;
};

/// torchvision's GeneralizedRCNN with FasterRCNN's (and MaskRCNN's) parts. Children and their
/// state_dict keys: backbone (BackboneWithFPN: "backbone.body.*", "backbone.fpn.*"), rpn
/// ("rpn.head.*"), roi_heads ("roi_heads.box_head.fc6.weight", ..., "roi_heads.mask_head.0.0.weight",
/// "roi_heads.mask_predictor.conv5_mask.weight", ...). The transform and anchors have none.
class FasterRCNNImpl : public torch::nn::Cloneable<FasterRCNNImpl>, public InstanceNetwork {
 public:
  /// c10::Error for num_classes < 2 or anchors for another number of levels than the pyramid's.
  explicit FasterRCNNImpl(FasterRCNNOptions options);
  void reset() override;

  /// images: [3,H,W] floating, sizes may differ (RGB in [0,1] unless
  /// options.transform.normalize is false). targets: one per image, or empty. Training mode
  /// needs targets and returns losses only; evaluation mode returns detections (and, given
  /// targets, the losses too, as the validation loss). ostrov::Error naming the image and box
  /// for a box with zero or negative width or height, a label outside [1, C), or masks whose
  /// count or size does not match. Handled as torchvision does: images without objects (every
  /// anchor and proposal is background; the box and mask terms are 0), more objects than
  /// detections_per_img (training takes them all), masks reaching outside their box (the
  /// target is the mask cut by each proposal).
  FasterRCNNOutput forward(const std::vector<at::Tensor>& images,
                           const std::vector<RCNNTarget>& targets = {});

  /// Evaluation-mode detections of `images` (forward without targets).
  std::vector<RCNNDetection> detect(const std::vector<at::Tensor>& images);

  /// InstanceNetwork: x [N,3,H,W] -> per image masks [K,H,W] uint8 (probability >
  /// mask_threshold), scores, labels, boxes. Needs the mask branch.
  std::vector<InstancePrediction> predict(const at::Tensor& x) override;
  /// Detections as InstancePrediction (masks thresholded at mask_threshold, [K,H,W] uint8);
  /// what predict returns.
  std::vector<InstancePrediction> instances(const std::vector<RCNNDetection>& detections) const;
  bool has_classes() const override { return true; }
  /// Detections scoring >= min_score that survive a class-agnostic NMS at
  /// count_nms_threshold, best first.
  at::Tensor class_agnostic(const InstancePrediction& p, double min_score) const override;
  /// The masks of class_agnostic(p, count_score), weakest first.
  at::Tensor counted_masks(const InstancePrediction& p) const override;

  /// Loads a torchvision Faster/Mask R-CNN state_dict: keys of files written before
  /// torchvision 0.13 ("rpn.head.conv.weight", "roi_heads.mask_head.mask_fcn1.weight") are
  /// renamed, and FrozenBatchNorm2d's missing num_batches_tracked are accepted. Otherwise
  /// strict: ostrov::IoError naming `source` and the keys.
  void load_torchvision(const io::StateDict& state, const std::string& source);

  FasterRCNNOptions options;                ///< what reset() builds from
  GeneralizedRCNNTransform transform;       ///< resize, normalise, batch; map back
  BackboneWithFPN backbone{nullptr};        ///< "backbone"
  RegionProposalNetwork rpn{nullptr};       ///< "rpn"
  RoIHeads roi_heads{nullptr};              ///< "roi_heads"
};
TORCH_MODULE(FasterRCNN);

}  // namespace ostrov::models
