#pragma once
// Non-maximum suppression with the semantics of torchvision.ops.nms / batched_nms (0.14).

#include <ATen/core/Tensor.h>

namespace ostrov::ops {

/// Greedy non-maximum suppression: visits the boxes by decreasing score, keeps a box unless a
/// box kept before it overlaps it with IoU > iou_threshold (strictly), and returns the int64
/// [K] indices of the kept boxes, by decreasing score, on boxes' device (torchvision.ops.nms).
///
/// boxes: [N,4] float or double (x1,y1,x2,y2); scores: [N] of the same dtype and device, no
/// NaN (an error names the index). The sort by score is stable, as in torchvision 0.14's
/// kernel: among equal scores the lower index comes first and wins. The IoU is computed in the
/// boxes' dtype as torchvision does: areas are
/// (x2-x1)*(y2-y1) (zero for degenerate boxes), and two zero-area boxes have IoU 0/0 = NaN,
/// which never suppresses. N = 0 gives an empty result. float16 / bfloat16 boxes or scores
/// (autocast's) are compared in float32, as torchvision's autocast registration does; the same
/// holds for batched_nms.
///
/// Any device: CPU tensors run a CPU kernel that matches torchvision's bit for bit. Other
/// devices (CUDA) run ATen operations (generic.h): the IoU matrix of the sorted boxes on the
/// device, in row blocks, into a suppression bitmask that is copied to the host once for the
/// greedy pass, which is sequential, as torchvision's CUDA kernel (the copy synchronises with
/// the device). Same indices as the CPU kernel; the bitmask takes N*N/8 bytes (O(N^2) memory).
at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);

/// NMS applied independently per category: boxes with different idxs never suppress each
/// other (torchvision.ops.batched_nms). idxs: [N] integer category per box, on boxes' device.
/// Returns int64 [K] indices sorted by decreasing score, on that device.
///
/// CPU tensors follow torchvision's two CPU strategies so results match it bit for bit: up to
/// 1000 boxes (boxes.numel() <= 4000), the coordinate-offset trick (every box shifted by
/// idx * (boxes.max() + 1), then one nms call); above that, one nms call per category and a
/// final (unstable, LibTorch's) sort of the kept scores. Other devices use the offset trick for
/// every N, on the device (then nms's host greedy pass): above 1000 boxes, the same kept boxes
/// as on the CPU (unless an IoU lies within the rounding of the shifted coordinates of the
/// threshold), equal scores possibly in another order. The offset trick assumes
/// coordinates >= 0, as torchvision's.
at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                       double iou_threshold);

}  // namespace ostrov::ops
