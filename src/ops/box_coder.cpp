#include "ostrov/ops/box_coder.h"

#include <ATen/ATen.h>

namespace ostrov::ops {

namespace {

void check_coder_boxes(const at::Tensor& boxes, const char* fn, const char* name) {
  TORCH_CHECK(boxes.defined(), fn, ": ", name, " is an undefined tensor");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, fn, ": ", name, " should be [N,4], got ",
              boxes.sizes());
  TORCH_CHECK(at::isFloatingType(boxes.scalar_type()), fn, ": ", name,
              " should be floating point, got ", boxes.scalar_type());
}

// Rejects boxes with x2 <= x1, y2 <= y1 or non-finite coordinates, naming the first one.
void check_not_degenerate(const at::Tensor& boxes, const char* fn, const char* name) {
  if (boxes.numel() == 0) return;
  const auto wh = boxes.slice(1, 2, 4) - boxes.slice(1, 0, 2);
  const auto bad = (wh <= 0).any(1).logical_or(boxes.isfinite().all(1).logical_not());
  if (!bad.any().item<bool>()) return;
  const int64_t i = bad.nonzero()[0][0].item<int64_t>();
  const auto b = boxes[i].to(at::kCPU, at::kDouble);
  const double* p = b.data_ptr<double>();
  TORCH_CHECK(false, fn, ": ", name, " ", i, " is degenerate: [", p[0], ", ", p[1], ", ", p[2],
              ", ", p[3], "] (x1, y1, x2, y2 with x2 <= x1 or y2 <= y1, or not finite); ",
              bad.sum().item<int64_t>(), " of ", boxes.size(0), " are");
}

}  // namespace

BoxCoder::BoxCoder(std::array<double, 4> weights, double bbox_xform_clip)
    : weights_(weights), bbox_xform_clip_(bbox_xform_clip) {
  for (double w : weights_) {
    TORCH_CHECK(std::isfinite(w) && w > 0, "BoxCoder: weights must be finite and > 0, got (",
                weights_[0], ", ", weights_[1], ", ", weights_[2], ", ", weights_[3], ")");
  }
}

at::Tensor BoxCoder::encode(const at::Tensor& boxes, const at::Tensor& priors) const {
  check_coder_boxes(boxes, "BoxCoder::encode", "boxes");
  check_coder_boxes(priors, "BoxCoder::encode", "priors");
  TORCH_CHECK(boxes.size(0) == priors.size(0), "BoxCoder::encode: boxes and priors should have ",
              "the same number of rows, got ", boxes.sizes(), " and ", priors.sizes());
  check_not_degenerate(boxes, "BoxCoder::encode", "box");
  check_not_degenerate(priors, "BoxCoder::encode", "prior");

  // torchvision's encode_boxes, operation for operation.
  const auto weights = at::tensor({weights_[0], weights_[1], weights_[2], weights_[3]},
                                  at::TensorOptions().dtype(at::kDouble))
                           .to(boxes.options());
  const auto wx = weights[0], wy = weights[1], ww = weights[2], wh = weights[3];
  const auto px1 = priors.select(1, 0).unsqueeze(1), py1 = priors.select(1, 1).unsqueeze(1);
  const auto px2 = priors.select(1, 2).unsqueeze(1), py2 = priors.select(1, 3).unsqueeze(1);
  const auto bx1 = boxes.select(1, 0).unsqueeze(1), by1 = boxes.select(1, 1).unsqueeze(1);
  const auto bx2 = boxes.select(1, 2).unsqueeze(1), by2 = boxes.select(1, 3).unsqueeze(1);

  const auto ex_widths = px2 - px1;
  const auto ex_heights = py2 - py1;
  const auto ex_ctr_x = px1 + 0.5 * ex_widths;
  const auto ex_ctr_y = py1 + 0.5 * ex_heights;
  const auto gt_widths = bx2 - bx1;
  const auto gt_heights = by2 - by1;
  const auto gt_ctr_x = bx1 + 0.5 * gt_widths;
  const auto gt_ctr_y = by1 + 0.5 * gt_heights;

  const auto dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths;
  const auto dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights;
  const auto dw = ww * at::log(gt_widths / ex_widths);
  const auto dh = wh * at::log(gt_heights / ex_heights);
  return at::cat({dx, dy, dw, dh}, 1);
}

at::Tensor BoxCoder::decode(const at::Tensor& codes, const at::Tensor& priors) const {
  TORCH_CHECK(codes.defined() && codes.dim() == 2 && codes.size(1) % 4 == 0,
              "BoxCoder::decode: codes should be [N,4k], got ",
              codes.defined() ? codes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(at::isFloatingType(codes.scalar_type()),
              "BoxCoder::decode: codes should be floating point, got ", codes.scalar_type());
  check_coder_boxes(priors, "BoxCoder::decode", "priors");
  TORCH_CHECK(codes.size(0) == priors.size(0), "BoxCoder::decode: codes and priors should have ",
              "the same number of rows, got ", codes.sizes(), " and ", priors.sizes());
  check_not_degenerate(priors, "BoxCoder::decode", "prior");

  // torchvision's decode_single, operation for operation.
  const auto boxes = priors.to(codes.scalar_type());
  const auto widths = boxes.select(1, 2) - boxes.select(1, 0);
  const auto heights = boxes.select(1, 3) - boxes.select(1, 1);
  const auto ctr_x = boxes.select(1, 0) + 0.5 * widths;
  const auto ctr_y = boxes.select(1, 1) + 0.5 * heights;

  const int64_t end = codes.size(1);
  const auto dx = codes.slice(1, 0, end, 4) / weights_[0];
  const auto dy = codes.slice(1, 1, end, 4) / weights_[1];
  const auto dw = (codes.slice(1, 2, end, 4) / weights_[2]).clamp_max(bbox_xform_clip_);
  const auto dh = (codes.slice(1, 3, end, 4) / weights_[3]).clamp_max(bbox_xform_clip_);

  const auto pred_ctr_x = dx * widths.unsqueeze(1) + ctr_x.unsqueeze(1);
  const auto pred_ctr_y = dy * heights.unsqueeze(1) + ctr_y.unsqueeze(1);
  const auto pred_w = at::exp(dw) * widths.unsqueeze(1);
  const auto pred_h = at::exp(dh) * heights.unsqueeze(1);

  const auto half = at::scalar_tensor(0.5, codes.options());
  const auto c_to_c_h = half * pred_h;
  const auto c_to_c_w = half * pred_w;
  return at::stack({pred_ctr_x - c_to_c_w, pred_ctr_y - c_to_c_h, pred_ctr_x + c_to_c_w,
                    pred_ctr_y + c_to_c_h},
                   2)
      .flatten(1);
}

}  // namespace ostrov::ops
