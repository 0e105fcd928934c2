#pragma once
// Mask R-CNN's mask loss (He et al. 2017, torchvision's maskrcnn_loss): per-pixel binary
// cross-entropy of each box's mask for its ground-truth class only, so classes do not compete
// for pixels (the classifier decides the class).

#include <ATen/core/Tensor.h>

namespace ostrov::losses::functional {

/// logits [R,C,M,M] float (one mask per class), labels [R] int64 in [0,C), targets [R,M,M]
/// 0/1 (models::mask_targets) -> mean binary cross-entropy with logits of logits[r, labels[r]]
/// against targets[r]. R = 0 gives 0, still connected to logits (so backward() works).
at::Tensor mask_loss(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& targets);

}  // namespace ostrov::losses::functional
