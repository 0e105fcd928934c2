#pragma once
// What a loss term of a composite loss (losses::build, CompositeLoss) reads and the interface
// every such term implements besides torch::nn::Module: CrossEntropy, SoftDice, CEDice,
// MultiboxLoss, HaloLoss, DirectionLoss, EnergyLoss and WeightedCrossEntropy, and a user's
// loss registered with losses::register_loss. docs/architecture.md "Losses".

#include <ATen/core/Tensor.h>

namespace ostrov::losses {

/// What a built loss reads; each term uses the fields it needs and names a missing one.
struct LossInputs {
  /// Class scores: [N,C,H,W] per pixel (cross_entropy, soft_dice, ce_dice, halo, energy) or
  /// [N,P,C] per prior (multibox).
  at::Tensor logits;
  /// int64: [N,H,W] class map (segmentation), instance map (halo) or energy levels (energy);
  /// [N,P] prior labels (multibox).
  at::Tensor target;
  /// Optional [N,H,W] per-pixel weights (cross_entropy, ce_dice, energy, direction).
  at::Tensor pixel_weights;
  /// multibox: predicted box offsets [N,P,4] and the encoded matched boxes [N,P,4].
  at::Tensor locations;
  at::Tensor target_locations;  ///< multibox: encoded matched boxes [N,P,4]; only positives read
  /// direction: predicted field [N,2,H,W], unit target [N,2,H,W], optional [N,H,W] bool mask.
  at::Tensor direction;
  at::Tensor target_direction;  ///< direction: unit target vectors [N,2,H,W]
  at::Tensor mask;  ///< direction: [N,H,W] pixels to use; undefined: |target_direction| > 0.5
  /// weighted_cross_entropy: [N,H,W] integer instance label image (0 = background, each other
  /// value one object), from which the U-Net weight map is computed.
  at::Tensor instances;
};

/// A loss a CompositeLoss can run: LossInputs -> scalar.
class LossTermModule {
 public:
  virtual ~LossTermModule() = default;
  /// The unweighted loss on the fields of `in` it needs (c10::Error naming a missing one).
  virtual at::Tensor compute(const LossInputs& in) = 0;

 protected:
  LossTermModule() = default;
  /// Copyable so that a derived torch::nn::Cloneable module can clone itself.
  LossTermModule(const LossTermModule&) = default;
  LossTermModule& operator=(const LossTermModule&) = default;
};

/// `field` when defined; otherwise c10::Error: loss term "<term>" needs LossInputs::<name>.
const at::Tensor& need(const at::Tensor& field, const char* term, const char* name);

}  // namespace ostrov::losses
