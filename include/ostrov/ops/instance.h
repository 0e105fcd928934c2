#pragma once
// Instance-mask utilities: COCO RLE, polygons, connected components, masks <-> boxes, and
// pasting Mask R-CNN's fixed-size masks back into the image.
//
// Masks are [H,W] (or [K,H,W]) uint8/bool tensors with 1 inside the object (any non-zero value
// counts as inside). RLE follows pycocotools: column-major (Fortran) order, counts alternate
// starting with zeros.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ostrov::ops {

/// A COCO run-length encoding: `counts` alternate runs of 0s and 1s over the mask read in
/// column-major order, starting with 0s (a mask whose first pixel is 1 starts with a 0 count);
/// height/width are the mask's. A valid RLE's counts sum to height*width.
struct Rle {
  int64_t height = 0;            ///< mask height H (rows)
  int64_t width = 0;             ///< mask width W (columns)
  std::vector<uint32_t> counts;  ///< run lengths, alternately 0s and 1s, column-major
};

/// [H,W] mask (any dtype, non-zero = 1, any device) -> RLE (pycocotools' mask.encode).
Rle rle_encode(const at::Tensor& mask);
/// RLE -> [H,W] uint8 mask with values 0/1 (pycocotools' mask.decode). Throws ostrov::DataError
/// when the counts do not sum to H*W (the message gives both numbers).
at::Tensor rle_decode(const Rle& rle);
/// The compressed "counts" string of pycocotools (rleToString / rleFrString), both directions:
/// each count (from the 4th on, its difference to the count two places earlier) is written as
/// 5-bit groups, least significant first, sign-extended from the last group's bit 4, with bit 5
/// set on every group but the last, each plus 48 (ASCII '0'..'o').
std::string rle_to_string(const Rle& rle);
/// Parses such a string. Throws ostrov::DataError for a character outside '0'..'o', a string that
/// ends inside a count, a count that is negative or above 2^32-1, or counts that do not sum to
/// height*width.
Rle rle_from_string(const std::string& counts, int64_t height, int64_t width);
/// Area (number of 1s) of an RLE: the sum of its odd-indexed counts.
int64_t rle_area(const Rle& rle);

/// Rasterises COCO polygons (each a flat list x0,y0,x1,y1,... in pixel coordinates) into an
/// [H,W] uint8 mask, filled with OpenCV's cv::fillPoly (union of the polygons; inside one
/// polygon OpenCV's even-odd rule applies, so a self-intersecting polygon may leave holes).
///
/// Convention: coordinates are COCO's continuous ones, pixel (x,y) covering [x,x+1)x[y,y+1).
/// They are moved by -0.5 into OpenCV's frame (pixel centres at integers) and filled with 8
/// fractional bits. OpenCV sets every pixel whose centre is inside the polygon and also draws
/// its outline (vertices rounded to the nearest pixel centre, halves upwards), so the mask is
/// the polygon grown by about half a pixel: an axis-aligned rectangle with integer corners
/// (x0,y0)-(x1,y1) gives columns x0..x1 and rows y0..y1 inclusive, (x1-x0+1)(y1-y0+1) pixels,
/// where pycocotools' frPoly (pixel-centre sampling) gives (x1-x0)(y1-y0). In general the mask's
/// area exceeds the polygon's by about 0.3-0.6 x its perimeter; pixels whose centre is more than
/// 0.5 px inside are always set and pixels whose centre is more than 1.25 px outside never are
/// (OpenCV rounds vertices to whole rows, and its outline passes through rounded vertices;
/// measured on 20000 random triangles: 0.31 px and 1.10 px).
/// Contours from cv::findContours (vertices at pixel indices) rasterise back to their pixels.
/// Parts outside the image are clipped exactly (in double precision) before OpenCV draws, so the
/// same holds there. Throws ostrov::DataError for a polygon with an odd number of coordinates,
/// fewer than 3 points, or non-finite coordinates; height and width must be at most 2^22.
at::Tensor polygons_to_mask(const std::vector<std::vector<double>>& polygons, int64_t height,
                            int64_t width);

/// Labels the connected components of a binary [H,W] mask (non-zero = foreground) with OpenCV's
/// cv::connectedComponents, 8- or 4-connected. Returns [H,W] int32 labels, 0 = background and
/// 1..n numbered in row-major order of each component's first pixel; `count` (when given)
/// receives n.
at::Tensor connected_components(const at::Tensor& mask, int64_t* count = nullptr,
                                int connectivity = 8);

/// [K,H,W] masks -> [K,4] float boxes (x1,y1,x2,y2) enclosing each mask, x2/y2 exclusive
/// (torchvision.ops.masks_to_boxes + 1 on x2/y2, so w = x2-x1 is COCO's bbox width); empty masks
/// give zeros.
at::Tensor masks_to_boxes(const at::Tensor& masks);

/// Pastes [K,M,M] (or [K,1,M,M]) float mask probabilities, each predicted inside boxes[k]
/// ([K,4] x1,y1,x2,y2 in image pixels), into [K,H,W] images of the masks' dtype, as
/// torchvision.models.detection.roi_heads.paste_masks_in_image (same numbers; its [K,1,H,W]
/// result without the 1):
///  - each mask gets `padding` zero rows/columns on every side (expand_masks), and each box is
///    scaled about its centre by (M+2*padding)/M so the padded mask covers the grown box
///    (expand_boxes); the box is then truncated to integers (toward zero);
///  - the padded mask is resized to (y2-y1+1) x (x2-x1+1) (at least 1x1) with bilinear
///    interpolation (align_corners=false) and copied to rows y1..y2, columns x1..x2 of a zero
///    image, clipped to the image (a box wholly outside gives an empty mask; torchvision raises).
/// Threshold the result yourself (> 0.5). Boxes may live on another device than the masks.
at::Tensor paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height,
                       int64_t width, int64_t padding = 1);

}  // namespace ostrov::ops
