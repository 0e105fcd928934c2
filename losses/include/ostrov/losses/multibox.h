#pragma once
// SSD's multibox loss (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016):
// smooth-L1 on the box offsets of positive priors + cross-entropy with hard negative mining,
// both divided by the number of positives. Matching priors to objects (threshold or Hungarian
// matcher, box encoding) happens before, in ostrov::ops; this loss takes its result.

#include <cstdint>
#include <ostream>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/losses/term.h"

namespace ostrov::losses {

/// Options of MultiboxLoss.
struct MultiboxLossOptions {
  /// Weight α of the localisation term (torchvision's SSD: 1).
  TORCH_ARG(double, alpha) = 1.0;
  /// Hard negatives kept per image = neg_pos_ratio * positives of that image.
  TORCH_ARG(int64_t, neg_pos_ratio) = 3;
  /// At least this many hard negatives per image (still at most the negatives there are).
  /// 0, the default, is torchvision's SSD: an image without objects contributes nothing.
  /// Set it > 0 to train on the background of images without objects.
  TORCH_ARG(int64_t, min_negatives) = 0;
  /// Smooth-L1 beta (torchvision's SSD uses F.smooth_l1_loss's default, 1).
  TORCH_ARG(double, beta) = 1.0;
};

/// The loss and its two terms (all scalars).
struct MultiboxLossOutput {
  at::Tensor loss;            ///< alpha * location + classification
  at::Tensor location;        ///< sum of smooth-L1 over positives' 4 offsets / num_positives
  at::Tensor classification;  ///< (CE over positives + CE over hard negatives) / num_positives
};

namespace functional {

/// SSD multibox loss, equal to torchvision 0.14's SSD.compute_loss (bbox_regression * alpha +
/// classification) given the same matches:
///   locations [N,P,4] float: predicted box offsets of P priors (from the box coder),
///   logits [N,P,C] float: class scores, class 0 = background,
///   target_locations [N,P,4]: the encoded boxes the priors were matched to (only positives'
///     rows are read),
///   target_labels [N,P] int64: 0 = background, 1..C-1 = matched class, < 0 = ignored prior
///     (neither positive nor negative; e.g. between a matcher's thresholds).
/// Hard negatives: per image, background priors ranked by their cross-entropy (positives
/// excluded) and the top neg_pos_ratio * positives kept (at least min_negatives, at most the
/// negatives there are). Both terms are divided by max(1, positives in the whole batch), so an
/// image with no objects gives a finite loss. The ranking is not differentiated through.
/// From ostrov::ops' matchers (matched [P]: index of the ground truth, -1 background,
/// -2 between thresholds): target_labels = matched >= 0 ? gt_labels[matched] (>= 1) :
/// (matched == -1 ? 0 : -1), and target_locations = ops::BoxCoder::encode(gt_boxes[max(matched, 0)],
/// priors) (rows of non-positives are not read).
/// Difference from torchvision: when an image asks for more negatives than it has,
/// torchvision's rank trick also counts some positives a second time; here only true
/// negatives are counted (identical whenever neg_pos_ratio * positives <= negatives, as on
/// SSD's 8732 priors).
MultiboxLossOutput multibox_loss(const at::Tensor& locations, const at::Tensor& logits,
                                 const at::Tensor& target_locations,
                                 const at::Tensor& target_labels,
                                 const MultiboxLossOptions& options = {});

}  // namespace functional

/// Module form of functional::multibox_loss.
class MultiboxLossImpl : public torch::nn::Cloneable<MultiboxLossImpl>, public LossTermModule {
 public:
  /// c10::Error for alpha, neg_pos_ratio or min_negatives < 0, or beta <= 0.
  explicit MultiboxLossImpl(MultiboxLossOptions options = {});
  void reset() override;
  /// functional::multibox_loss with `options` -> the loss and its two terms.
  MultiboxLossOutput forward(const at::Tensor& locations, const at::Tensor& logits,
                             const at::Tensor& target_locations, const at::Tensor& target_labels);
  /// forward on the LossInputs fields named above (CompositeLoss).
  at::Tensor compute(const LossInputs& in) override;
  void pretty_print(std::ostream& stream) const override;

  MultiboxLossOptions options;  ///< checked by reset() and again on every forward
};
TORCH_MODULE(MultiboxLoss);

}  // namespace ostrov::losses
