#pragma once
// Per-pixel segmentation losses: weighted cross-entropy, SoftDice and their sum (CE + Dice),
// each as a function (ostrov::losses::functional) and as a module with options, like
// torch::nn::functional and torch::nn.
//
//   auto loss_fn = ostrov::losses::CEDice(ostrov::losses::CEDiceOptions().dice_weight(0.5));
//   auto loss = loss_fn(logits, target);            // logits [N,C,H,W], target [N,H,W] int64

#include <cstdint>
#include <ostream>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/losses/term.h"

namespace ostrov::losses {

namespace functional {

/// Per-pixel cross-entropy.
///   logits [N,C,H,W] float, target [N,H,W] int64 in [0,C) or `ignore_index`.
///   class_weights: empty or C values (U-Net weights cell/border/background differently).
///   pixel_weights: undefined or [N,H,W] (the U-Net weight map w(x)).
/// Returns the mean over non-ignored pixels weighted by class_weight[target] * pixel_weight:
///   sum_i w_i * (-log softmax(logits_i)[t_i]) / sum_i w_i, as torch's weighted
///   cross_entropy with reduction "mean". Zero (with a gradient) when every pixel is ignored.
/// Errors (c10::Error) name both shapes on a mismatch, the offending label when one is
/// outside [0,C) and not ignore_index, and NaN logits.
at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& target,
                         const std::vector<double>& class_weights = {},
                         const at::Tensor& pixel_weights = {}, int64_t ignore_index = 255);

/// SoftDice as in the lecture:
///   (1/Nc) * sum_c [ 1 - 2 * sum_ij y*p / (sum_ij y^2 + sum_ij p^2 + eps) ]
/// with y the one-hot target, ignored pixels excluded and sums over the whole batch.
///   logits [N,C,H,W], target [N,H,W] int64.
///   C >= 2: p = softmax(logits) over C, one term per class (Nc = C).
///   C == 1: binary: p = sigmoid(logits) is the foreground probability, target in {0,1}, and
///           the loss is the foreground term alone (Nc = 1).
/// skip_absent: classes with no target pixel that argmax (or p > 0.5 for binary) never predicts
/// are left out of the mean; 0 (with a gradient) when every class is absent.
/// Returns a scalar in [0,1].
at::Tensor soft_dice(const at::Tensor& logits, const at::Tensor& target, double eps = 1e-6,
                     int64_t ignore_index = 255, bool skip_absent = false);

}  // namespace functional

/// Options of CrossEntropy (see functional::cross_entropy).
struct CrossEntropyOptions {
  /// Empty (all 1) or one weight per class.
  TORCH_ARG(std::vector<double>, class_weights) = {};
  /// Target value whose pixels are left out.
  TORCH_ARG(int64_t, ignore_index) = 255;
};

/// Per-pixel weighted cross-entropy: forward(logits [N,C,H,W], target [N,H,W] int64,
/// optional pixel_weights [N,H,W]) -> scalar. See functional::cross_entropy.
class CrossEntropyImpl : public torch::nn::Cloneable<CrossEntropyImpl>, public LossTermModule {
 public:
  /// Keeps `options` unchecked; class_weights must have C values (c10::Error on forward).
  explicit CrossEntropyImpl(CrossEntropyOptions options = {});
  void reset() override {}
  /// functional::cross_entropy with the options' class_weights and ignore_index -> scalar.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& target,
                     const at::Tensor& pixel_weights = {});
  /// forward on the LossInputs fields named above (CompositeLoss).
  at::Tensor compute(const LossInputs& in) override;
  void pretty_print(std::ostream& stream) const override;

  CrossEntropyOptions options;  ///< read on every forward
};
TORCH_MODULE(CrossEntropy);

/// Options of SoftDice (see functional::soft_dice).
struct SoftDiceOptions {
  /// Added to every class's denominator.
  TORCH_ARG(double, eps) = 1e-6;
  /// Target value whose pixels are left out of every sum.
  TORCH_ARG(int64_t, ignore_index) = 255;
  /// Leave classes absent from both target and prediction out of the mean.
  TORCH_ARG(bool, skip_absent) = false;
};

/// SoftDice: forward(logits [N,C,H,W], target [N,H,W] int64) -> scalar in [0,1]; softmax for
/// C >= 2, sigmoid for a single binary channel. See functional::soft_dice.
class SoftDiceImpl : public torch::nn::Cloneable<SoftDiceImpl>, public LossTermModule {
 public:
  /// Keeps `options` (not checked).
  explicit SoftDiceImpl(SoftDiceOptions options = {});
  void reset() override {}
  /// functional::soft_dice with the options' eps, ignore_index and skip_absent.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& target);
  /// forward on the LossInputs fields named above (CompositeLoss).
  at::Tensor compute(const LossInputs& in) override;
  void pretty_print(std::ostream& stream) const override;

  SoftDiceOptions options;  ///< read on every forward
};
TORCH_MODULE(SoftDice);

/// Options of CEDice: ce_weight * CrossEntropy + dice_weight * SoftDice.
struct CEDiceOptions {
  /// Factor of the cross-entropy term.
  TORCH_ARG(double, ce_weight) = 1.0;
  /// Factor of the SoftDice term.
  TORCH_ARG(double, dice_weight) = 1.0;
  /// Class weights of the cross-entropy term (empty: all 1).
  TORCH_ARG(std::vector<double>, class_weights) = {};
  /// Shared by both terms.
  TORCH_ARG(int64_t, ignore_index) = 255;
  /// SoftDice eps.
  TORCH_ARG(double, eps) = 1e-6;
  /// SoftDice skip_absent.
  TORCH_ARG(bool, skip_absent) = false;
};

/// Cross-entropy + SoftDice. The cross-entropy term needs C >= 2 (for one binary channel use
/// SoftDice alone). forward(logits [N,C,H,W], target [N,H,W] int64, optional
/// pixel_weights [N,H,W] for the cross-entropy term) -> scalar.
class CEDiceImpl : public torch::nn::Cloneable<CEDiceImpl>, public LossTermModule {
 public:
  /// Keeps `options` unchecked; class_weights must have C values (c10::Error on forward).
  explicit CEDiceImpl(CEDiceOptions options = {});
  void reset() override {}
  /// functional::ce_dice(logits, target, options, pixel_weights) -> scalar.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& target,
                     const at::Tensor& pixel_weights = {});
  /// forward on the LossInputs fields named above (CompositeLoss).
  at::Tensor compute(const LossInputs& in) override;
  void pretty_print(std::ostream& stream) const override;

  CEDiceOptions options;  ///< read on every forward
};
TORCH_MODULE(CEDice);

namespace functional {
/// ce_weight * cross_entropy + dice_weight * soft_dice with the options of CEDice.
at::Tensor ce_dice(const at::Tensor& logits, const at::Tensor& target,
                   const CEDiceOptions& options = {}, const at::Tensor& pixel_weights = {});
}  // namespace functional

}  // namespace ostrov::losses
