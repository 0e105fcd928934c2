#pragma once
// Per-pixel segmentation losses: weighted cross-entropy and SoftDice.

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ostrov::losses::functional {

/// Per-pixel cross-entropy.
///   logits [N,C,H,W] float, target [N,H,W] int64 in [0,C) or `ignore_index`.
///   class_weights: empty or C values (U-Net weights cell/border/background differently).
///   pixel_weights: undefined or [N,H,W] (the U-Net weight map w(x)).
/// Returns the mean over non-ignored pixels weighted by class_weight[target] * pixel_weight:
///   sum_i w_i * (-log softmax(logits_i)[t_i]) / sum_i w_i, as torch's weighted
///   cross_entropy with reduction "mean". Zero (with a gradient) when every pixel is ignored.
at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& target,
                         const std::vector<double>& class_weights = {},
                         const at::Tensor& pixel_weights = {}, int64_t ignore_index = 255);

/// SoftDice as in the lecture:
///   (1/Nc) * sum_c [ 1 - 2 * sum_ij y*p / (sum_ij y^2 + sum_ij p^2 + eps) ]
/// with p = softmax(logits) over C, y the one-hot target, ignored pixels excluded, sums over
/// the whole batch. skip_absent: classes absent from both target and prediction (sum y^2 +
/// sum p^2 < eps... i.e. no target pixel and argmax never predicts them) are left out of the
/// mean. Returns a scalar in [0,1].
at::Tensor soft_dice(const at::Tensor& logits, const at::Tensor& target, double eps = 1e-6,
                     int64_t ignore_index = 255, bool skip_absent = false);

}  // namespace ostrov::losses::functional
