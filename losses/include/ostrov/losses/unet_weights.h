#pragma once
// U-Net's training targets from instance masks (Ronneberger, Fischer, Brox, "U-Net:
// Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015):
//  - the weight map w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)), which makes the
//    thin background gaps between touching cells expensive to get wrong;
//  - the 3-class cell / border / background target, an alternative that turns separating
//    touching cells into a class of its own (weight the border class up in CrossEntropy).
// Both feed functional::cross_entropy (pixel_weights and target); WeightedCrossEntropy
// (config name "weighted_cross_entropy") computes the weight map from the instance label image
// of every batch and applies it.

#include <cstdint>
#include <ostream>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/losses/term.h"

namespace ostrov::losses {

/// Options of unet_weight_map.
struct UNetWeightMapOptions {
  /// Amplitude w0 of the border term (paper: 10).
  TORCH_ARG(double, w0) = 10.0;
  /// Width sigma of the border term in pixels (paper: ~5).
  TORCH_ARG(double, sigma) = 5.0;
  /// w_c: true gives each of background and foreground the weight
  /// (number of pixels) / (2 * pixels of that class) (inverse frequency, mean 1 over the
  /// image; a class absent from the image gets no pixels, the other weight 1); false: w_c = 1.
  TORCH_ARG(bool, balance_classes) = true;
  /// Fixed w_c as {background, foreground}; overrides balance_classes when not empty.
  TORCH_ARG(std::vector<double>, class_weights) = {};
};

/// Weight map of instance masks: instances [H,W] or [N,H,W] integer (0 = background, each
/// other value one object) -> float [H,W] or [N,H,W] on the CPU.
/// d1(x), d2(x): Euclidean distances (OpenCV distanceTransform, exact) from x to the nearest
/// pixel of the nearest and of the second-nearest object. The border term is added on
/// background pixels only (inside a cell d1 = 0 and the term would only blur the cell) and
/// only where at least two objects exist.
at::Tensor unet_weight_map(const at::Tensor& instances, const UNetWeightMapOptions& options = {});

/// Class ids of unet_three_class_target.
enum UNetClass : int64_t { kUNetBackground = 0, kUNetCell = 1, kUNetBorder = 2 };

/// 3-class target of instance masks: instances [H,W] or [N,H,W] integer -> int64 of the same
/// shape on the CPU with 0 = background, 1 = cell interior, 2 = border: the object pixels that
/// have, within `border_width` pixels (a (2b+1)x(2b+1) square), a pixel of another label
/// (background or another object). The image edge is not a border.
at::Tensor unet_three_class_target(const at::Tensor& instances, int64_t border_width = 1);

/// Inverse-frequency class weights per pixel: target [..] int64 class map -> float map with
/// #counted pixels / (#classes present * #pixels of that class) on each pixel, 0 on
/// ignore_index. Use it as w_c for a multi-class target (e.g. the 3-class one).
at::Tensor class_balance_map(const at::Tensor& target, int64_t ignore_index = 255);

/// Options of WeightedCrossEntropy.
struct WeightedCrossEntropyOptions {
  /// How w(x) is computed from the instances (config object "weight_map": w0, sigma,
  /// balance_classes).
  TORCH_ARG(UNetWeightMapOptions, weight_map) = {};
  /// Empty (all 1) or one factor per class, multiplied with w(x) (e.g. the border class of the
  /// 3-class target weighted up).
  TORCH_ARG(std::vector<double>, class_weights) = {};
  /// Target value whose pixels are left out.
  TORCH_ARG(int64_t, ignore_index) = 255;
};

/// U-Net's weighted cross-entropy: sum_x w(x) * (-log p_t(x)) / sum_x w(x) with
/// w = unet_weight_map(instances) (times class_weights[t(x)]), the map computed on the CPU from
/// the batch's instance label image on every call, so it follows every augmentation of the
/// instances (its cost per batch: workload unet_weight_map_8x128 in docs/performance.md).
class WeightedCrossEntropyImpl : public torch::nn::Cloneable<WeightedCrossEntropyImpl>,
                                 public LossTermModule {
 public:
  /// c10::Error for sigma <= 0 or fixed w_c that are not {background, foreground}.
  explicit WeightedCrossEntropyImpl(WeightedCrossEntropyOptions options = {});
  void reset() override;
  /// logits [N,C,H,W], target [N,H,W] int64 class map, instances [N,H,W] integer instance
  /// label image (0 = background) of the same size -> scalar. c10::Error names both shapes on
  /// a mismatch.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& target,
                     const at::Tensor& instances);
  /// forward on LossInputs::logits, target and instances (CompositeLoss).
  at::Tensor compute(const LossInputs& in) override;
  void pretty_print(std::ostream& stream) const override;

  WeightedCrossEntropyOptions options;  ///< read on every forward
};
TORCH_MODULE(WeightedCrossEntropy);

}  // namespace ostrov::losses
