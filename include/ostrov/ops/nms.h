#pragma once
// Non-maximum suppression with the semantics of torchvision.ops.nms / batched_nms (0.14).

#include <ATen/core/Tensor.h>

namespace ostrov::ops {

/// Greedy non-maximum suppression: visits the boxes by decreasing score, keeps a box unless a
/// box kept before it overlaps it with IoU > iou_threshold (strictly), and returns the int64
/// [K] indices of the kept boxes, by decreasing score (torchvision.ops.nms, CPU kernel).
///
/// boxes: [N,4] float or double (x1,y1,x2,y2); scores: [N] of the same dtype, no NaN (an
/// error names the index). The sort by score is stable, as in torchvision 0.14's kernel:
/// among equal scores the lower index comes first and wins. The IoU is computed in the boxes'
/// dtype as torchvision does: areas are
/// (x2-x1)*(y2-y1) (zero for degenerate boxes), and two zero-area boxes have IoU 0/0 = NaN,
/// which never suppresses. CPU tensors only (a TORCH_CHECK says so for others); N = 0 gives
/// an empty result.
at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);

/// NMS applied independently per category: boxes with different idxs never suppress each
/// other (torchvision.ops.batched_nms). idxs: [N] integer category per box. Returns int64 [K]
/// indices sorted by decreasing score.
///
/// Follows torchvision's two CPU strategies so results match it bit for bit: up to 1000 boxes
/// (boxes.numel() <= 4000), the coordinate-offset trick (every box shifted by
/// idx * (boxes.max() + 1), then one nms call); above that, one nms call per category and a
/// final (unstable, LibTorch's) sort of the kept scores. The offset trick assumes coordinates
/// >= 0, as torchvision's.
at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                       double iou_threshold);

}  // namespace ostrov::ops
