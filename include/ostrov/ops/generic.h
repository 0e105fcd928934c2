#pragma once
// Internal: the device-generic implementations behind ostrov::ops::nms, batched_nms and
// roi_align for tensors that are not on the CPU. They are built from ATen tensor operations
// only, so they run wherever ATen does (CUDA included), and they also accept CPU tensors: the
// tests run them on the CPU and compare them with the CPU kernels, which keeps the arithmetic of
// the GPU path checked on machines without a GPU. Use the public functions in nms.h and
// roi_align.h in other code: they pick the CPU kernel or these by the input's device.

#include <array>
#include <cstdint>

#include <ATen/core/Tensor.h>

namespace ostrov::ops::generic {

/// ostrov::ops::nms on any device; the result is int64 on boxes' device. Same arguments, checks
/// (scores without NaN) and results: boxes are sorted by score with a stable sort, the IoU of
/// every pair of sorted boxes is computed on the device in the boxes' dtype with torchvision's
/// operations, and `IoU > iou_threshold` restricted to later boxes becomes a bitmask. That
/// bitmask is copied to the host once and a sequential greedy pass over its rows picks the kept
/// boxes, as torchvision's CUDA kernel does: the copy synchronises with the device. The IoU rows
/// are computed in blocks, so the temporaries stay near 4M elements, but the bitmask takes
/// N*N/8 bytes on the device and on the host (about 12 MB for 10,000 boxes).
at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold);

/// ostrov::ops::batched_nms on any device: torchvision's coordinate-offset strategy (every box
/// shifted by idx * (boxes.max() + 1), then one nms) for every N. For N > 1000 the CPU kernel
/// runs one nms per category instead (as torchvision on the CPU), so the two keep the same
/// boxes (unless an IoU lies within the rounding of the shifted coordinates of the threshold)
/// but may order equal scores differently. idxs must be on boxes' device.
at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                       double iou_threshold);

/// ostrov::ops::roi_align on any device: bilinear sampling by gathering the four neighbours of
/// every sample point (an index_select on a channels-last copy of the input), with the CPU
/// kernel's per-sample arithmetic in the same order (on the CPU the forward equals the
/// kernel's exactly; the tests check it). The grid points of a bin are visited one pass each
/// (sampling_ratio^2 passes; with the adaptive ratio, the largest grid over the regions, the
/// points a region does not have being masked). The gradient with respect to input comes from
/// autograd through those operations (on CUDA the index_select backward accumulates with
/// atomics, so its sums are not in a fixed order); rois get none. The adaptive ratio needs one
/// device-to-host copy of the largest grid.
at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois,
                     std::array<int64_t, 2> output_size, double spatial_scale = 1.0,
                     int64_t sampling_ratio = -1, bool aligned = false);

}  // namespace ostrov::ops::generic
