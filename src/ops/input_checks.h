#pragma once
// Input checks shared by the CPU kernels (nms.cpp, roi_align.cpp) and the device-generic
// implementations (generic.cpp), so both paths reject the same inputs with the same messages.
// Internal to ostrov_core.

#include <ATen/ATen.h>

namespace ostrov::ops::detail {

/// Whether `t` holds float16 or bfloat16 (what autocast's convolutions return): nms,
/// batched_nms and roi_align then compute in float32, as torchvision's autocast registrations of
/// these ops do.
inline bool reduced_precision(const at::Tensor& t) {
  return t.defined() && (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16);
}

/// nms / batched_nms: boxes [N,4] and scores [N], same device and dtype, float or double.
inline void check_nms_inputs(const at::Tensor& boxes, const at::Tensor& scores,
                             const char* name) {
  TORCH_CHECK(boxes.defined() && scores.defined(), name, ": boxes and scores must be defined");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, name, ": boxes should be [N,4], got ",
              boxes.sizes());
  TORCH_CHECK(scores.dim() == 1, name, ": scores should be [N], got ", scores.sizes());
  TORCH_CHECK(boxes.size(0) == scores.size(0), name,
              ": boxes and scores should have the same N, got ", boxes.sizes(), " and ",
              scores.sizes());
  TORCH_CHECK(boxes.device() == scores.device(), name,
              ": boxes and scores should be on the same device, got ", boxes.device(), " and ",
              scores.device());
  TORCH_CHECK(boxes.scalar_type() == scores.scalar_type(), name,
              ": boxes and scores should have the same dtype, got ", boxes.scalar_type(), " and ",
              scores.scalar_type());
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble, name,
              ": boxes should be float or double, got ", boxes.scalar_type());
}

/// batched_nms's idxs: [N] on boxes' device.
inline void check_batched_nms_idxs(const at::Tensor& boxes, const at::Tensor& idxs) {
  TORCH_CHECK(idxs.defined() && idxs.dim() == 1 && idxs.size(0) == boxes.size(0),
              "batched_nms: idxs should be [N] with N = ", boxes.size(0), ", got ",
              idxs.defined() ? idxs.sizes() : at::IntArrayRef{});
  TORCH_CHECK(idxs.device() == boxes.device(), "batched_nms: idxs should be on boxes' device ",
              boxes.device(), ", got ", idxs.device());
}

/// roi_align: input [N,C,H,W] float or double, rois [K,5] of its dtype on its device, an
/// output size of at least 1x1, and a non-empty map whenever there is something to pool.
inline void check_roi_align_inputs(const at::Tensor& input, const at::Tensor& rois,
                                   int64_t pooled_h, int64_t pooled_w) {
  TORCH_CHECK(input.defined() && rois.defined(), "roi_align: input and rois must be defined");
  TORCH_CHECK(input.dim() == 4, "roi_align: input should be [N,C,H,W], got ", input.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "roi_align: rois should be [K,5] (batch_index, x1, y1, x2, y2), got ", rois.sizes());
  TORCH_CHECK(input.device() == rois.device(),
              "roi_align: input and rois should be on the same device, got ", input.device(),
              " and ", rois.device());
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kDouble,
              "roi_align: input should be float or double, got ", input.scalar_type());
  TORCH_CHECK(rois.scalar_type() == input.scalar_type(),
              "roi_align: rois should have input's dtype ", input.scalar_type(), ", got ",
              rois.scalar_type());
  TORCH_CHECK(pooled_h >= 1 && pooled_w >= 1, "roi_align: output_size should be >= 1, got [",
              pooled_h, ", ", pooled_w, "]");
  if (rois.size(0) > 0 && input.size(1) > 0) {
    TORCH_CHECK(input.size(2) > 0 && input.size(3) > 0,
                "roi_align: input should have H, W >= 1, got ", input.sizes());
  }
}

}  // namespace ostrov::ops::detail
