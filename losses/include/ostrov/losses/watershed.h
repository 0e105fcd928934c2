#pragma once
// Deep Watershed Transform losses (Bai & Urtasun, "Deep Watershed Transform for Instance
// Segmentation", CVPR 2017): the direction network regresses, inside objects, the unit vector
// along which the distance to the object's boundary grows; the watershed network classifies
// each pixel into quantised energy (distance) levels, level 0 = background. Also the targets
// computed from an instance map with OpenCV's distance transform.

#include <cstdint>
#include <ostream>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/losses/term.h"

namespace ostrov::losses {

/// Options of DirectionLoss.
struct DirectionLossOptions {
  /// true: the paper's squared angular error acos(<u_gt, u_pred>)^2 (radians^2);
  /// false: the cosine loss 1 - <u_gt, u_pred>.
  TORCH_ARG(bool, angular) = true;
  /// Predictions are normalised by max(|pred|, eps).
  TORCH_ARG(double, eps) = 1e-6;
};

/// Options of EnergyLoss (a weighted cross-entropy over the K energy levels).
struct EnergyLossOptions {
  /// Empty (all 1) or one weight per level (the paper weights levels to balance them).
  TORCH_ARG(std::vector<double>, class_weights) = {};
  /// Level value whose pixels are left out.
  TORCH_ARG(int64_t, ignore_index) = 255;
};

/// Options of watershed_targets.
struct WatershedTargetOptions {
  /// Number K of energy levels including the background level 0.
  TORCH_ARG(int64_t, num_levels) = 16;
  /// Distance (pixels) covered by one level: an object pixel at distance d >= 1 from the
  /// nearest pixel outside its object gets level min(K-1, ceil(d / step)).
  TORCH_ARG(double, step) = 1.0;
};

/// Targets of both networks for one or a batch of instance maps.
struct WatershedTargets {
  at::Tensor direction;  ///< [N,2,H,W] float unit vectors (channel 0 = x, 1 = y), 0 outside objects
                         ///< and where the distance transform is flat (ridges, 1-pixel objects)
  at::Tensor energy;     ///< [N,H,W] int64 levels in [0,K), 0 = background
  at::Tensor weights;    ///< [N,H,W] float 1/sqrt(object area) inside objects, 0 outside (the
                         ///< paper's weighting so that small objects count as much as large ones)
};

namespace functional {

/// Direction loss: weighted mean over object pixels of the angular (or cosine) error between
/// the normalised prediction and the target unit vectors.
///   prediction [N,2,H,W] float (any length), target [N,2,H,W] unit vectors,
///   mask: [N,H,W] bool pixels to use, or undefined for |target| > 0.5,
///   pixel_weights: undefined (all 1) or [N,H,W].
/// 0 (with a gradient) when the mask is empty.
at::Tensor direction_loss(const at::Tensor& prediction, const at::Tensor& target,
                          const at::Tensor& mask = {}, const at::Tensor& pixel_weights = {},
                          const DirectionLossOptions& options = {});

/// Energy loss: cross_entropy(logits [N,K,H,W], levels [N,H,W] int64, class_weights,
/// pixel_weights, ignore_index).
at::Tensor energy_loss(const at::Tensor& logits, const at::Tensor& levels,
                       const EnergyLossOptions& options = {}, const at::Tensor& pixel_weights = {});

}  // namespace functional

/// instances [H,W] or [N,H,W] integer (0 = background, other values = objects) -> targets with
/// a batch dimension. The distance of an object pixel is to the nearest pixel outside its own
/// object (so touching objects are separated), from OpenCV's exact Euclidean distanceTransform;
/// directions are its normalised Sobel gradient.
WatershedTargets watershed_targets(const at::Tensor& instances,
                                   const WatershedTargetOptions& options = {});

/// Module form of functional::direction_loss.
class DirectionLossImpl : public torch::nn::Cloneable<DirectionLossImpl>, public LossTermModule {
 public:
  /// Keeps `options` unchecked; eps <= 0 is a c10::Error on forward.
  explicit DirectionLossImpl(DirectionLossOptions options = {});
  void reset() override {}
  /// functional::direction_loss: prediction and target [N,2,H,W], optional mask and
  /// pixel_weights [N,H,W] -> scalar.
  at::Tensor forward(const at::Tensor& prediction, const at::Tensor& target,
                     const at::Tensor& mask = {}, const at::Tensor& pixel_weights = {});
  /// forward on the LossInputs fields named above (CompositeLoss).
  at::Tensor compute(const LossInputs& in) override;
  void pretty_print(std::ostream& stream) const override;

  DirectionLossOptions options;  ///< read on every forward
};
TORCH_MODULE(DirectionLoss);

/// Module form of functional::energy_loss.
class EnergyLossImpl : public torch::nn::Cloneable<EnergyLossImpl>, public LossTermModule {
 public:
  /// Keeps `options` unchecked; class_weights must have K values (c10::Error on forward).
  explicit EnergyLossImpl(EnergyLossOptions options = {});
  void reset() override {}
  /// functional::energy_loss: logits [N,K,H,W], levels [N,H,W] int64, optional pixel_weights
  /// [N,H,W] -> scalar.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& levels,
                     const at::Tensor& pixel_weights = {});
  /// forward on the LossInputs fields named above (CompositeLoss).
  at::Tensor compute(const LossInputs& in) override;
  void pretty_print(std::ostream& stream) const override;

  EnergyLossOptions options;  ///< read on every forward
};
TORCH_MODULE(EnergyLoss);

}  // namespace ostrov::losses
