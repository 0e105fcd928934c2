#pragma once
// RoIAlign (He et al., "Mask R-CNN", ICCV 2017) with the semantics of torchvision.ops.roi_align.

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ostrov::ops {

/// Pools every region of interest into a fixed [pooled_h, pooled_w] grid of bins by bilinear
/// sampling and averaging, as torchvision.ops.roi_align.
///
/// - input: [N,C,H,W] float or double feature maps (any strides, any device).
/// - rois: [K,5] of input's dtype and device, rows (batch_index, x1, y1, x2, y2) in the
///   coordinates of the image the features come from; batch_index must lie in [0, N).
/// - output_size: {pooled_h, pooled_w}, both >= 1.
/// - spatial_scale: multiplies the box coordinates to reach feature-map pixels (e.g. 1/16);
///   rounded to the dtype first, as torchvision.
/// - sampling_ratio: sampling points per bin along each axis; <= 0 means adaptive,
///   ceil(roi_h / pooled_h) by ceil(roi_w / pooled_w).
/// - aligned: false is the legacy behaviour (regions shorter than 1 pixel are widened to 1);
///   true shifts the box by -0.5 pixel so that sample points line up with pixel centres
///   (Detectron2), and empty regions pool to 0.
///
/// Returns [K,C,pooled_h,pooled_w] with input's dtype, on input's device. Differentiable with
/// respect to input; rois get no gradient. float16 / bfloat16 input or rois (autocast's) are
/// pooled in float32 and the result cast back to input's dtype, as torchvision's autocast
/// registration does.
///
/// CPU tensors run a CPU kernel: an autograd function whose backward is torchvision's scatter
/// of the bilinear weights (not itself differentiable: no double backward). Forward and
/// backward match torchvision bit for bit (same operation
/// order) and run in parallel (at::parallel_for over regions forward, over channels backward,
/// so the backward needs no atomics and sums in torchvision's order).
/// Other devices (CUDA) run ATen operations (generic.h): the four neighbours of each sample
/// point gathered with index_select, the CPU kernel's per-sample arithmetic in its order, one
/// pass per grid point of a bin; the gradient comes from autograd through those operations
/// (within rounding of the CPU kernel's; on CUDA accumulated with atomics). The adaptive
/// sampling ratio costs one device-to-host copy (the largest grid).
at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois,
                     std::array<int64_t, 2> output_size, double spatial_scale = 1.0,
                     int64_t sampling_ratio = -1, bool aligned = false);

/// The same with the regions given per image, as torchvision's List[Tensor[L,4]] form:
/// boxes[b] holds image b's (x1, y1, x2, y2) rows; they are concatenated in order.
at::Tensor roi_align(const at::Tensor& input, const std::vector<at::Tensor>& boxes,
                     std::array<int64_t, 2> output_size, double spatial_scale = 1.0,
                     int64_t sampling_ratio = -1, bool aligned = false);

/// [B_1 + ... , 5] rois from per-image [L_b,4] boxes (torchvision's convert_boxes_to_roi_format).
at::Tensor boxes_to_rois(const std::vector<at::Tensor>& boxes);

}  // namespace ostrov::ops
