#pragma once
// Box utilities with the semantics of torchvision.ops (boxes.py, _box_convert.py).
//
// Boxes are [N,4] (box_convert and clip_boxes_to_image also take [...,4]) tensors of any
// floating or integer dtype, in (x1, y1, x2, y2) pixel coordinates unless a format says
// otherwise; x2/y2 are the far corner, so a box's width is x2 - x1. The results are computed
// with the same operations as torchvision, so they agree with it bit for bit. Errors are
// c10::Error (TORCH_CHECK) naming the shapes or values involved; empty inputs give empty outputs.

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace ostrov::ops {

/// Converts [...,4] boxes between the formats "xyxy" (x1,y1,x2,y2), "xywh" (x1,y1,w,h) and
/// "cxcywh" (centre x, centre y, w, h), as torchvision.ops.box_convert. The same format in and
/// out returns a copy. Integer boxes become float where torchvision's do ("cxcywh" halves).
at::Tensor box_convert(const at::Tensor& boxes, const std::string& in_fmt,
                       const std::string& out_fmt);

/// The single conversions box_convert is made of (torchvision's _box_* helpers), [...,4] each.
at::Tensor box_xyxy_to_xywh(const at::Tensor& boxes);
at::Tensor box_xywh_to_xyxy(const at::Tensor& boxes);
at::Tensor box_xyxy_to_cxcywh(const at::Tensor& boxes);
at::Tensor box_cxcywh_to_xyxy(const at::Tensor& boxes);

/// [N,4] xyxy boxes -> [N] areas (x2-x1)*(y2-y1); half/bfloat16 are computed in float32 and
/// 8/16-bit integers in int32, as torchvision's _upcast. Inverted boxes give negative or
/// positive products exactly as torchvision (no clamping).
at::Tensor box_area(const at::Tensor& boxes);

/// Clamps x coordinates of [...,4] xyxy boxes to [0, width] and y coordinates to [0, height]
/// (torchvision.ops.clip_boxes_to_image with size = (height, width)).
at::Tensor clip_boxes_to_image(const at::Tensor& boxes, int64_t height, int64_t width);

/// [N,4] xyxy boxes -> int64 [K] indices (ascending) of the boxes whose width and height are
/// both >= min_size (torchvision.ops.remove_small_boxes; the comparison happens in the boxes'
/// dtype, so min_size is rounded to float for float boxes as in PyTorch).
at::Tensor remove_small_boxes(const at::Tensor& boxes, double min_size);

/// Pairwise intersection-over-union of [N,4] and [M,4] xyxy boxes -> [N,M]
/// (torchvision.ops.box_iou): inter / (area_a + area_b - inter) with the intersection's
/// width and height clamped at 0. Two float or two double CPU tensors run a direct kernel
/// (parallel over rows, no [N,M,2] temporaries) that gives torchvision's values bit for bit;
/// anything else (integers, half, mixed dtypes, CUDA) runs torchvision's composition of ATen
/// ops, so integer boxes give float IoU. Two zero-area boxes give 0/0 = NaN, as torchvision.
at::Tensor box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2);

}  // namespace ostrov::ops
