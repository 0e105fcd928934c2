#include "ostrov/losses/yolo.h"

#include <algorithm>
#include <array>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include "checks.h"

namespace ostrov::losses::functional {

namespace {

/// [...,4] boxes (x, y in the cell, sqrt w, sqrt h) -> x1, y1, x2, y2 as fractions of the
/// input. `col` and `row` broadcast against boxes[...,0]; `grid_w`, `grid_h` are the cell
/// counts. IoU does not depend on where the cell is (both boxes move with it), but the offsets
/// are fractions of a cell and the sizes fractions of the input, so the offsets are scaled by
/// the cell before the two are compared.
std::array<at::Tensor, 4> corners(const at::Tensor& boxes, const at::Tensor& col,
                                  const at::Tensor& row, int64_t grid_w, int64_t grid_h) {
  const auto v = boxes.unbind(-1);
  const auto cx = (col + v[0]) / static_cast<double>(grid_w);
  const auto cy = (row + v[1]) / static_cast<double>(grid_h);
  const auto half_w = v[2] * v[2] / 2.0;
  const auto half_h = v[3] * v[3] / 2.0;
  return {cx - half_w, cy - half_h, cx + half_w, cy + half_h};
}

/// Sum of `values` where `mask` holds. where() rather than a product with the mask, so that a
/// non-finite value outside the mask stays out of the sum.
at::Tensor masked_sum(const at::Tensor& mask, const at::Tensor& values) {
  return at::where(mask, values, at::zeros({}, values.options())).sum();
}

}  // namespace

YOLOLossParts yolo_loss(const at::Tensor& pred_boxes, const at::Tensor& pred_confidence,
                        const at::Tensor& class_logits, const at::Tensor& has_object,
                        const at::Tensor& target_boxes, const at::Tensor& target_classes,
                        const YOLOLossOptions& options) {
  TORCH_CHECK(options.lambda_coord() >= 0 && options.lambda_noobj() >= 0,
              "yolo_loss: lambda_coord and lambda_noobj must be >= 0, got ",
              options.lambda_coord(), " and ", options.lambda_noobj());
  const auto shape = [](const at::Tensor& t) {
    return t.defined() ? t.sizes() : at::IntArrayRef{};
  };
  TORCH_CHECK(pred_boxes.defined() && pred_boxes.dim() == 5 && pred_boxes.size(3) >= 1 &&
                  pred_boxes.size(4) == 4,
              "yolo_loss: pred_boxes should be [N,S,S,B,4] with B >= 1, got ", shape(pred_boxes));
  TORCH_CHECK(at::isFloatingType(pred_boxes.scalar_type()),
              "yolo_loss: pred_boxes should be floating point, got ", pred_boxes.scalar_type());
  const int64_t n = pred_boxes.size(0), grid_h = pred_boxes.size(1),
                grid_w = pred_boxes.size(2), b = pred_boxes.size(3);
  TORCH_CHECK(pred_confidence.defined() &&
                  pred_confidence.sizes() == pred_boxes.sizes().slice(0, 4),
              "yolo_loss: pred_confidence should be [N,S,S,B] = ",
              pred_boxes.sizes().slice(0, 4), " (pred_boxes ", pred_boxes.sizes(), "), got ",
              shape(pred_confidence));
  TORCH_CHECK(class_logits.defined() && class_logits.dim() == 4 &&
                  class_logits.sizes().slice(0, 3) == pred_boxes.sizes().slice(0, 3) &&
                  class_logits.size(3) >= 1,
              "yolo_loss: class_logits should be [N,S,S,K] with [N,S,S] = ",
              pred_boxes.sizes().slice(0, 3), " (pred_boxes ", pred_boxes.sizes(),
              ") and K >= 1, got ", shape(class_logits));
  TORCH_CHECK(has_object.defined() && has_object.sizes() == pred_boxes.sizes().slice(0, 3),
              "yolo_loss: has_object should be [N,S,S] = ", pred_boxes.sizes().slice(0, 3),
              " (pred_boxes ", pred_boxes.sizes(), "), got ", shape(has_object));
  TORCH_CHECK(has_object.scalar_type() == at::kBool, "yolo_loss: has_object should be bool, got ",
              has_object.scalar_type());
  TORCH_CHECK(target_boxes.defined() && target_boxes.dim() == 4 &&
                  target_boxes.sizes().slice(0, 3) == pred_boxes.sizes().slice(0, 3) &&
                  target_boxes.size(3) == 4,
              "yolo_loss: target_boxes should be [N,S,S,4] with [N,S,S] = ",
              pred_boxes.sizes().slice(0, 3), " (pred_boxes ", pred_boxes.sizes(), "), got ",
              shape(target_boxes));
  TORCH_CHECK(target_classes.defined() && target_classes.sizes() == has_object.sizes(),
              "yolo_loss: target_classes should be [N,S,S] = ", has_object.sizes(), ", got ",
              shape(target_classes));
  TORCH_CHECK(target_classes.scalar_type() == at::kLong,
              "yolo_loss: target_classes should be int64, got ", target_classes.scalar_type());

  const auto device = pred_boxes.device();
  const auto dtype = pred_boxes.scalar_type();
  const auto object = has_object.to(device);  // [N,S,S]
  // Cells without an object may hold anything: zero them, so that no NaN there can reach a
  // sum or a gradient through the masked-out branch of a where().
  const auto target = at::where(object.unsqueeze(-1), target_boxes.to(device, dtype),
                                at::zeros({}, pred_boxes.options()));
  const auto labels = target_classes.to(device).masked_fill(~object, -1);
  const int64_t k = class_logits.size(3);
  // One host transfer: the classes of object cells lie in [0,K), the logits hold no NaN.
  const auto safe_classes =
      detail::check_labels(class_logits, labels, k, -1, "yolo_loss").second;  // 0 elsewhere

  // 1obj_ij: the object cell's predictor with the highest IoU with the object (section 2.2,
  // "we only want one bounding box predictor to be responsible for each object"). A choice,
  // not a function to differentiate, as is the rescore target below.
  at::Tensor responsible;  // [N,S,S,B] bool
  at::Tensor best_iou;     // [N,S,S]: the responsible predictor's IoU (0 without an object)
  {
    c10::NoGradGuard no_grad;
    const auto opts = pred_boxes.options();
    const auto row = at::arange(grid_h, opts).view({1, grid_h, 1, 1});
    const auto col = at::arange(grid_w, opts).view({1, 1, grid_w, 1});
    const auto p = corners(pred_boxes.detach(), col, row, grid_w, grid_h);  // [N,S,S,B] each
    const auto t = corners(target.unsqueeze(3), col, row, grid_w, grid_h);  // [N,S,S,1] each
    const auto inter = (at::minimum(p[2], t[2]) - at::maximum(p[0], t[0])).clamp_min(0) *
                       (at::minimum(p[3], t[3]) - at::maximum(p[1], t[1])).clamp_min(0);
    const auto uni = (p[2] - p[0]) * (p[3] - p[1]) + (t[2] - t[0]) * (t[3] - t[1]) - inter;
    // Only an empty cell with a zero-size prediction has an empty union; its IoU is unused.
    const auto iou = at::where(uni > 0, inter / uni, at::zeros({}, opts));  // [N,S,S,B]
    const auto best = iou.argmax(-1);  // [N,S,S], the first of equal maxima
    responsible = at::one_hot(best, b).to(at::kBool) & object.unsqueeze(-1);
    best_iou = iou.gather(-1, best.unsqueeze(-1)).squeeze(-1).masked_fill(~object, 0);
  }

  const double batch = static_cast<double>(std::max<int64_t>(n, 1));
  // Coordinates: the responsible predictor's (x, y, sqrt w, sqrt h) against the object's; the
  // square roots are the paper's way of weighting an error in a small box more.
  const auto box_error = (pred_boxes - target.unsqueeze(3)).pow(2).sum(-1);  // [N,S,S,B]
  const auto coord = options.lambda_coord() * masked_sum(responsible, box_error) / batch;
  // Confidence: Pr(object) x IoU(pred, truth), so the target of a responsible predictor is its
  // IoU (or 1 without rescoring) and every other predictor's is 0.
  const auto confidence_target =
      options.rescore() ? best_iou.unsqueeze(-1) : at::ones({}, pred_boxes.options());
  const auto object_term =
      masked_sum(responsible, (pred_confidence - confidence_target).pow(2)) / batch;
  const auto no_object_term =
      options.lambda_noobj() * masked_sum(~responsible, pred_confidence.pow(2)) / batch;
  // Class probabilities of object cells (one distribution per cell, not per predictor).
  const auto probabilities = at::softmax(class_logits, -1);
  const auto truth = at::one_hot(safe_classes, k).to(probabilities.scalar_type());
  const auto classes = masked_sum(object.unsqueeze(-1), (probabilities - truth).pow(2)) / batch;
  return {coord + object_term + no_object_term + classes, coord, object_term, no_object_term,
          classes};
}

}  // namespace ostrov::losses::functional
