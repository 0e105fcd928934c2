#pragma once
// YOLO v1's loss (Redmon et al., CVPR 2016, eq. 3), a sum of squared errors over an S x S grid
// with B predictors per cell:
//
//   lambda_coord sum_ij 1obj_ij [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
// + sum_ij 1obj_ij (C_ij - C^_ij)^2  +  lambda_noobj sum_ij 1noobj_ij (C_ij - 0)^2
// + sum_i 1obj_i sum_c (p_i(c) - p^_i(c))^2
//
// 1obj_i: cell i holds an object's centre (models::yolo_targets); 1obj_ij: predictor j of that
// cell is "responsible", the one whose predicted box has the highest IoU with the object
// (decided without gradient; the first on ties); 1noobj_ij = 1 - 1obj_ij, so the other
// predictors of an object's cell are pushed towards confidence 0 too. The confidence target
// C^ of a responsible predictor is that IoU (detached), as in the paper, or 1 with
// rescore = false. p(c) = softmax of the cell's class logits, p^ the one-hot class. The sum is
// divided by the batch size N.

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

namespace ostrov::losses {

/// Options of functional::yolo_loss (the paper's values).
struct YOLOLossOptions {
  /// Weight of the box terms.
  TORCH_ARG(double, lambda_coord) = 5.0;
  /// Weight of the confidence term of predictors without an object.
  TORCH_ARG(double, lambda_noobj) = 0.5;
  /// true: a responsible predictor's confidence target is its IoU with the object; false: 1.
  TORCH_ARG(bool, rescore) = true;
};

/// The loss and its four parts (each already weighted, summed over the batch and divided by
/// N; total = coord + object + no_object + classes).
struct YOLOLossParts {
  at::Tensor total;      ///< scalar
  at::Tensor coord;      ///< lambda_coord x the box terms
  at::Tensor object;     ///< confidence terms of responsible predictors
  at::Tensor no_object;  ///< lambda_noobj x confidence terms of the others
  at::Tensor classes;    ///< class-probability terms of object cells
};

namespace functional {

/// pred_boxes [N,S,S,B,4] (x, y in the cell, sqrt w, sqrt h, as models::YOLOOutput),
/// pred_confidence [N,S,S,B], class_logits [N,S,S,K]; targets as models::YOLOTargets:
/// has_object [N,S,S] bool, target_boxes [N,S,S,4], target_classes [N,S,S] int64 in [0,K)
/// where has_object (anything elsewhere). Targets may be on the CPU; they are moved to the
/// predictions' device. c10::Error naming the shapes on a mismatch.
YOLOLossParts yolo_loss(const at::Tensor& pred_boxes, const at::Tensor& pred_confidence,
                        const at::Tensor& class_logits, const at::Tensor& has_object,
                        const at::Tensor& target_boxes, const at::Tensor& target_classes,
                        const YOLOLossOptions& options = {});

}  // namespace functional

}  // namespace ostrov::losses
