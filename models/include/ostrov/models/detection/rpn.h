#pragma once
// The first stage of Faster R-CNN (Ren et al., "Faster R-CNN: Towards Real-Time Object
// Detection with Region Proposal Networks", NeurIPS 2015) over a feature pyramid, as
// torchvision 0.14 builds it: AnchorGenerator, RPNHead, RegionProposalNetwork and the
// BalancedPositiveNegativeSampler both stages train with.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "ostrov/models/detection/rcnn_transform.h"

namespace ostrov::models {

/// Options of AnchorGenerator: one tuple of sizes and one of aspect ratios per feature level.
struct AnchorGeneratorOptions {
  /// Anchor sizes (square side, pixels) per level (torchvision's R-CNN: 32, 64, ..., 512).
  TORCH_ARG(std::vector<std::vector<double>>, sizes) =
      std::vector<std::vector<double>>{{32}, {64}, {128}, {256}, {512}};
  /// Aspect ratios h/w per level (torchvision: 0.5, 1, 2 on every level).
  TORCH_ARG(std::vector<std::vector<double>>, aspect_ratios) =
      std::vector<std::vector<double>>(5, std::vector<double>{0.5, 1.0, 2.0});
};

/// torchvision.models.detection.anchor_utils.AnchorGenerator. Per level, the cell anchors are
/// round([-w/2, -h/2, w/2, h/2]) with h = size * sqrt(ratio), w = size / sqrt(ratio) (float32,
/// ratio-major); they are shifted to every position (x, y) * stride of the level's grid, where
/// stride = padded image size // grid size (integer division). Order: level, then row, column,
/// then cell anchor: the order of RPNHead's outputs after concat_box_prediction_layers.
class AnchorGenerator {
 public:
  /// c10::Error when sizes and aspect_ratios differ in length or hold a non-positive value.
  explicit AnchorGenerator(AnchorGeneratorOptions options = {});
  /// Anchors per position on each level (sizes x ratios).
  std::vector<int64_t> num_anchors_per_location() const;
  /// Level l's cell anchors [sizes*ratios, 4] float, centred on (0, 0).
  at::Tensor cell_anchors(size_t level) const;
  /// The anchors of an image batch padded to `image_size` with feature maps of `grid_sizes`
  /// (one per level): [sum over levels of h*w*A, 4] float on `device`, the same for every
  /// image. c10::Error when the number of levels differs from the options'.
  at::Tensor operator()(ImageSize image_size, const std::vector<ImageSize>& grid_sizes,
                        const c10::Device& device) const;
  /// The options it was built with.
  const AnchorGeneratorOptions& options() const { return options_; }

 private:
  AnchorGeneratorOptions options_;
  std::vector<at::Tensor> cell_anchors_;
};

/// Options of RPNHead.
struct RPNHeadOptions {
  /// Channels of the feature levels and anchors per position.
  RPNHeadOptions(int64_t in_channels, int64_t num_anchors)
      : in_channels_(in_channels), num_anchors_(num_anchors) {}
  /// Channels of every feature level.
  TORCH_ARG(int64_t, in_channels);
  /// A: anchors per position.
  TORCH_ARG(int64_t, num_anchors);
};

/// torchvision's RPNHead (conv_depth 1). Children and their state_dict keys:
///   conv.0.0    3x3 conv in -> in, padding 1, with bias (then ReLU)
///   cls_logits  1x1 conv in -> A (objectness logits)
///   bbox_pred   1x1 conv in -> 4A (box deltas, anchor-major: anchor a's (dx, dy, dw, dh))
/// Initialised as torchvision: normal(std 0.01) weights, zero biases. Files written before
/// torchvision 0.13 name the first conv `conv.weight`; FasterRCNNImpl::load_torchvision maps it.
class RPNHeadImpl : public torch::nn::Cloneable<RPNHeadImpl> {
 public:
  /// c10::Error for in_channels or num_anchors < 1.
  explicit RPNHeadImpl(RPNHeadOptions options);
  void reset() override;
  /// features: one [N,in,h,w] map per level -> (objectness [N,A,h,w], deltas [N,4A,h,w]) per
  /// level.
  std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> forward(
      const std::vector<at::Tensor>& features);

  /// The options it was built with; reset() rebuilds from them.
  RPNHeadOptions options;
  /// ModuleList("0": Sequential("0": Conv2d 3x3, "1": ReLU)).
  torch::nn::ModuleList conv{nullptr};
  /// Objectness logits per anchor.
  torch::nn::Conv2d cls_logits{nullptr};
  /// Box deltas per anchor.
  torch::nn::Conv2d bbox_pred{nullptr};
};
TORCH_MODULE(RPNHead);

/// torchvision's BalancedPositiveNegativeSampler: per image, from labels (int64 or float [P]:
/// >= 1 positive, 0 negative, < 0 ignored) draw at most batch_size_per_image * positive_fraction
/// positives and fill up to batch_size_per_image with negatives, each drawn by torch.randperm
/// on LibTorch's default generator (positives, then negatives, image by image: with the same
/// seed, the same draws as torchvision). Returns (positive, negative) uint8 masks [P] per image.
std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>> balanced_positive_negative_sample(
    const std::vector<at::Tensor>& labels, int64_t batch_size_per_image, double positive_fraction);

/// Options of RegionProposalNetwork (torchvision's FasterRCNN defaults).
struct RegionProposalNetworkOptions {
  /// Proposals kept per level before NMS, training / evaluation.
  TORCH_ARG(int64_t, pre_nms_top_n_train) = 2000;
  /// As above, in evaluation.
  TORCH_ARG(int64_t, pre_nms_top_n_test) = 1000;
  /// Proposals kept per image after NMS, training.
  TORCH_ARG(int64_t, post_nms_top_n_train) = 2000;
  /// As above, in evaluation.
  TORCH_ARG(int64_t, post_nms_top_n_test) = 1000;
  /// NMS IoU threshold among proposals of one level.
  TORCH_ARG(double, nms_thresh) = 0.7;
  /// Anchors with IoU >= this with a ground-truth box are positives.
  TORCH_ARG(double, fg_iou_thresh) = 0.7;
  /// Anchors whose best IoU is < this are negatives (in between: ignored).
  TORCH_ARG(double, bg_iou_thresh) = 0.3;
  /// Anchors sampled per image for the losses.
  TORCH_ARG(int64_t, batch_size_per_image) = 256;
  /// Largest fraction of positives among them.
  TORCH_ARG(double, positive_fraction) = 0.5;
  /// Proposals with objectness probability below this are dropped.
  TORCH_ARG(double, score_thresh) = 0.0;
};

/// What RegionProposalNetwork::forward returns.
struct RPNOutput {
  std::vector<at::Tensor> boxes;   ///< per image [P_i,4] proposals (no gradient), best first
  std::vector<at::Tensor> scores;  ///< per image [P_i] objectness probabilities
  /// With targets: "loss_objectness" (BCE on the sampled anchors) and "loss_rpn_box_reg"
  /// (smooth L1, beta 1/9, summed over positives, divided by the sampled count).
  std::map<std::string, at::Tensor> losses;
};

/// torchvision.models.detection.rpn.RegionProposalNetwork. Child: `head` (RPNHead); the
/// anchor generator has no state. forward: head on every level; deltas decoded on the anchors
/// (BoxCoder weights 1,1,1,1); per level the pre_nms_top_n best; clip to the image, remove
/// boxes smaller than 1e-3, drop below score_thresh, NMS per level, keep post_nms_top_n.
/// With targets, the anchors are matched (Matcher(fg, bg, allow_low_quality_matches)), sampled
/// (balanced_positive_negative_sample) and the two losses computed.
class RegionProposalNetworkImpl : public torch::nn::Cloneable<RegionProposalNetworkImpl> {
 public:
  /// The anchors, the head (its num_anchors must match the generator's) and the options.
  RegionProposalNetworkImpl(AnchorGenerator anchors, RPNHead head,
                            RegionProposalNetworkOptions options = {});
  /// Gives the module its own copy of the head (clone() calls it).
  void reset() override;
  /// batch: the padded images' size and each image's size; features: every pyramid level
  /// ([N,C,h,w], finest first); targets: per image (boxes only), empty for none (no losses).
  /// Training mode uses the *_train top-n, evaluation the *_test ones.
  RPNOutput forward(const ImageBatch& batch, const std::vector<at::Tensor>& features,
                    const std::vector<RCNNTarget>& targets = {});

  /// The anchor generator.
  AnchorGenerator anchor_generator;
  /// The head.
  RPNHead head{nullptr};
  /// The options it was built with.
  RegionProposalNetworkOptions options;

 private:
  void register_children();
};
TORCH_MODULE(RegionProposalNetwork);

}  // namespace ostrov::models
