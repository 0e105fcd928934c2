#include "ostrov/models/detection/ssd_targets.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <string>

#include "ostrov/ops/box_coder.h"

namespace ostrov::models {

namespace {

void check_labels(const at::Tensor& labels, int64_t num_classes) {
  auto bad = labels < 1;
  if (num_classes > 0) {
    bad = bad | (labels >= num_classes);
  }
  if (bad.any().item<bool>()) {
    const int64_t index = bad.nonzero()[0][0].item<int64_t>();
    TORCH_CHECK(false, "ssd_targets: gt_labels[", index, "] = ", labels[index].item<int64_t>(),
                " is not a class in 1..", num_classes > 0 ? std::to_string(num_classes - 1) : "",
                " (0 is the background)");
  }
}

}  // namespace

SSDTargets ssd_targets(const at::Tensor& gt_boxes, const at::Tensor& gt_labels,
                       const at::Tensor& priors, const SSDTargetOptions& options) {
  TORCH_CHECK(options.matcher() == "threshold" || options.matcher() == "hungarian",
              "ssd_targets: matcher must be \"threshold\" or \"hungarian\", got \"",
              options.matcher(), "\"");
  TORCH_CHECK(
      priors.defined() && priors.dim() == 2 && priors.size(1) == 4 && priors.is_floating_point(),
      "ssd_targets: priors should be floating [P,4], got ",
      priors.defined() ? priors.sizes() : at::IntArrayRef{});
  TORCH_CHECK(gt_boxes.defined() && gt_boxes.dim() == 2 && gt_boxes.size(1) == 4,
              "ssd_targets: gt_boxes should be [G,4], got ",
              gt_boxes.defined() ? gt_boxes.sizes() : at::IntArrayRef{});
  TORCH_CHECK(gt_labels.defined() && gt_labels.dim() == 1 &&
                  gt_labels.size(0) == gt_boxes.size(0) && !gt_labels.is_floating_point() &&
                  !gt_labels.is_complex(),
              "ssd_targets: gt_labels should be integer [", gt_boxes.size(0), "], got ",
              gt_labels.defined() ? gt_labels.sizes() : at::IntArrayRef{}, " ",
              gt_labels.defined() ? gt_labels.scalar_type() : at::kLong);
  const int64_t p = priors.size(0);
  const auto labels = gt_labels.to(priors.device(), at::kLong);
  if (gt_boxes.size(0) == 0) {
    return {at::zeros({p, 4}, priors.options()), at::zeros({p}, priors.options().dtype(at::kLong))};
  }
  check_labels(labels, options.num_classes());
  const auto boxes = gt_boxes.to(priors.options());

  const auto matched = options.matcher() == "threshold"
                           ? ops::threshold_match(boxes, priors, options.iou_threshold())
                           : ops::hungarian_match(boxes, priors, options.hungarian());
  const auto positive = matched >= 0;
  const auto index = matched.clamp_min(0);
  // 0 for background (kBackground), -1 (ignored) for a general matcher's in-between band.
  const auto off =
      at::where(matched == ops::kBackground, at::zeros_like(matched), at::full_like(matched, -1));
  SSDTargets targets;
  targets.labels = at::where(positive, labels.index_select(0, index), off);
  const auto codes =
      ops::BoxCoder(options.coder_weights()).encode(boxes.index_select(0, index), priors);
  targets.locations = at::where(positive.unsqueeze(1), codes, at::zeros_like(codes));
  return targets;
}

SSDTargets ssd_targets(const std::vector<at::Tensor>& gt_boxes,
                       const std::vector<at::Tensor>& gt_labels, const at::Tensor& priors,
                       const SSDTargetOptions& options) {
  TORCH_CHECK(gt_boxes.size() == gt_labels.size(), "ssd_targets: ", gt_boxes.size(),
              " box tensors but ", gt_labels.size(), " label tensors");
  TORCH_CHECK(!gt_boxes.empty(), "ssd_targets: the batch is empty");
  std::vector<at::Tensor> locations, labels;
  for (size_t i = 0; i < gt_boxes.size(); ++i) {
    auto t = ssd_targets(gt_boxes[i], gt_labels[i], priors, options);
    locations.push_back(t.locations);
    labels.push_back(t.labels);
  }
  return {at::stack(locations), at::stack(labels)};
}

}  // namespace ostrov::models
