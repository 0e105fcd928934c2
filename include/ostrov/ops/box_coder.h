#pragma once
// Box regression targets: the (dx, dy, dw, dh) parameterisation of R-CNN / SSD, as
// torchvision.models.detection._utils.BoxCoder (encode_single / decode_single).

#include <array>
#include <cmath>

#include <ATen/core/Tensor.h>

namespace ostrov::ops {

/// Encodes boxes relative to reference ("prior", "anchor") boxes and decodes them back.
/// With weights (wx, wy, ww, wh), a box (x1, y1, x2, y2) and a prior of centre (pcx, pcy) and
/// size (pw, ph), the code is
///   dx = wx (cx - pcx) / pw,  dy = wy (cy - pcy) / ph,  dw = ww log(w / pw),  dh = wh log(h / ph).
/// SSD's weights (10, 10, 5, 5) are ssd.pytorch's variances (0.1, 0.2): dx = (cx - pcx) /
/// (0.1 pw), dw = log(w / pw) / 0.2. Boxes are x1, y1, x2, y2 (any units, the same for both).
class BoxCoder {
 public:
  /// `bbox_xform_clip` caps dw and dh before exp() when decoding (torchvision's default
  /// log(1000 / 16)).
  explicit BoxCoder(std::array<double, 4> weights = {10.0, 10.0, 5.0, 5.0},
                    double bbox_xform_clip = std::log(1000.0 / 16.0));

  /// The weights (wx, wy, ww, wh).
  const std::array<double, 4>& weights() const { return weights_; }
  /// The cap on dw and dh before exp() when decoding.
  double bbox_xform_clip() const { return bbox_xform_clip_; }

  /// torchvision's `encode_single(reference_boxes=boxes, proposals=priors)`: boxes [N,4] (the
  /// matched ground truth of each prior) and priors [N,4], both floating x1,y1,x2,y2 ->
  /// codes [N,4] in boxes' dtype. Throws c10::Error naming the first degenerate box or prior
  /// (x2 <= x1 or y2 <= y1, or not finite): codes of such boxes would be inf or NaN.
  at::Tensor encode(const at::Tensor& boxes, const at::Tensor& priors) const;

  /// torchvision's `decode_single(rel_codes=codes, boxes=priors)`: codes [N,4k] (k boxes per
  /// prior, usually 1) and priors [N,4] x1,y1,x2,y2 -> boxes [N,4k] x1,y1,x2,y2 in codes' dtype
  /// (priors are converted to it). dw and dh are clamped at bbox_xform_clip before exp().
  /// Throws c10::Error naming the first degenerate prior (x2 <= x1 or y2 <= y1).
  at::Tensor decode(const at::Tensor& codes, const at::Tensor& priors) const;

 private:
  std::array<double, 4> weights_;
  double bbox_xform_clip_;
};

}  // namespace ostrov::ops
