#include "ostrov/models/detection/ssd_targets.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <string>
#include <vector>

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

// Matcher "hungarian_predicted": the Hungarian matcher's encoded-L1 location term against the
// predicted offsets and its class-confidence term against the predicted probabilities.
at::Tensor match_predictions(const at::Tensor& boxes, const at::Tensor& labels,
                             const at::Tensor& priors, const SSDTargetOptions& options,
                             const SSDPredictions& predictions) {
  const int64_t p = priors.size(0);
  const auto& codes = predictions.codes;
  const auto& probabilities = predictions.probabilities;
  TORCH_CHECK(codes.defined() && probabilities.defined(),
              "ssd_targets: matcher \"hungarian_predicted\" needs the network's predictions "
              "(SSDPredictions: codes and probabilities)");
  TORCH_CHECK(codes.dim() == 2 && codes.size(0) == p && codes.size(1) == 4,
              "ssd_targets: predicted codes should be [", p, ",4], got ", codes.sizes());
  TORCH_CHECK(probabilities.dim() == 2 && probabilities.size(0) == p &&
                  probabilities.size(1) > labels.max().item<int64_t>(),
              "ssd_targets: predicted probabilities should be [", p, ",C] with C > ",
              labels.max().item<int64_t>(), " (the largest label), got ", probabilities.sizes());
  auto matcher = options.hungarian();
  matcher.location_cost(ops::LocationCost::kEncodedL1).coder_weights(options.coder_weights());
  return ops::hungarian_match(boxes, priors, matcher,
                              probabilities.detach().to(priors.options()), labels,
                              codes.detach().to(priors.options()));
}

}  // namespace

SSDTargets ssd_targets(const at::Tensor& gt_boxes, const at::Tensor& gt_labels,
                       const at::Tensor& priors, const SSDTargetOptions& options,
                       const SSDPredictions& predictions) {
  TORCH_CHECK(options.matcher() == "threshold" || options.matcher() == "hungarian" ||
                  options.matcher() == "hungarian_predicted",
              "ssd_targets: matcher must be \"threshold\", \"hungarian\" or "
              "\"hungarian_predicted\", got \"",
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

  at::Tensor matched;
  if (options.matcher() == "threshold") {
    matched = ops::threshold_match(boxes, priors, options.iou_threshold());
  } else if (options.matcher() == "hungarian") {
    matched = ops::hungarian_match(boxes, priors, options.hungarian());
  } else {
    matched = match_predictions(boxes, labels, priors, options, predictions);
  }
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
                       const SSDTargetOptions& options, const SSDPredictions& predictions) {
  TORCH_CHECK(gt_boxes.size() == gt_labels.size(), "ssd_targets: ", gt_boxes.size(),
              " box tensors but ", gt_labels.size(), " label tensors");
  TORCH_CHECK(!gt_boxes.empty(), "ssd_targets: the batch is empty");
  if (options.matcher() != "threshold") {
    std::vector<at::Tensor> locations, labels;
    const bool predicted = options.matcher() == "hungarian_predicted";
    if (predicted) {
      const auto n = static_cast<int64_t>(gt_boxes.size());
      TORCH_CHECK(predictions.codes.defined() && predictions.probabilities.defined() &&
                      predictions.codes.dim() == 3 && predictions.codes.size(0) == n &&
                      predictions.probabilities.dim() == 3 &&
                      predictions.probabilities.size(0) == n,
                  "ssd_targets: matcher \"hungarian_predicted\" needs predictions of the ", n,
                  " images: codes [N,P,4] and probabilities [N,P,C]");
    }
    for (size_t i = 0; i < gt_boxes.size(); ++i) {
      SSDPredictions image;
      if (predicted) {
        image = {predictions.codes[static_cast<int64_t>(i)],
                 predictions.probabilities[static_cast<int64_t>(i)]};
      }
      auto t = ssd_targets(gt_boxes[i], gt_labels[i], priors, options, image);
      locations.push_back(t.locations);
      labels.push_back(t.labels);
    }
    return {at::stack(locations), at::stack(labels)};
  }
  // Threshold matching of the whole batch at once; then the per-image rule of the single-image
  // form, on [N, G_max] padded ground truths.
  const auto n = static_cast<int64_t>(gt_boxes.size());
  const int64_t p = priors.size(0);
  int64_t g_max = 0;
  for (size_t i = 0; i < gt_boxes.size(); ++i) {
    TORCH_CHECK(gt_labels[i].defined() && gt_labels[i].dim() == 1 &&
                    gt_boxes[i].defined() && gt_labels[i].size(0) == gt_boxes[i].size(0) &&
                    !gt_labels[i].is_floating_point() && !gt_labels[i].is_complex(),
                "ssd_targets: image ", i, ": gt_labels should be integer [",
                gt_boxes[i].defined() ? gt_boxes[i].size(0) : 0, "], got ",
                gt_labels[i].defined() ? gt_labels[i].sizes() : at::IntArrayRef{});
    try {
      check_labels(gt_labels[i].to(at::kLong), options.num_classes());
    } catch (const c10::Error& e) {
      TORCH_CHECK(false, "image ", i, ": ", e.what_without_backtrace());
    }
    g_max = std::max(g_max, gt_boxes[i].size(0));
  }
  const auto matched = ops::threshold_match(gt_boxes, priors, options.iou_threshold());  // [N,P]
  if (g_max == 0) {
    return {at::zeros({n, p, 4}, priors.options()), at::zeros({n, p}, priors.options().dtype(at::kLong))};
  }
  // Padding rows hold a valid unit box: never a positive's match, but BoxCoder::encode sees
  // them (their codes are zeroed below) and rejects degenerate boxes.
  auto boxes = at::tensor({0.0, 0.0, 1.0, 1.0}, priors.options()).repeat({n, g_max, 1});
  auto labels = at::zeros({n, g_max}, priors.options().dtype(at::kLong));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = gt_boxes[static_cast<size_t>(i)].size(0);
    if (g == 0) continue;
    boxes[i].narrow(0, 0, g).copy_(gt_boxes[static_cast<size_t>(i)]);
    labels[i].narrow(0, 0, g).copy_(gt_labels[static_cast<size_t>(i)]);
  }
  const auto positive = matched >= 0;
  const auto index = matched.clamp_min(0);
  SSDTargets targets;
  targets.labels = at::where(positive, labels.gather(1, index), at::zeros({}, labels.options()));
  // Encode only the positives (a few percent of N x P); the other rows stay zero.
  const auto where_positive = positive.nonzero();  // [K,2]: image, prior
  const auto image = where_positive.select(1, 0), prior = where_positive.select(1, 1);
  const auto codes = ops::BoxCoder(options.coder_weights())
                         .encode(boxes.index({image, index.index({image, prior})}),
                                 priors.index_select(0, prior));
  targets.locations = at::zeros({n, p, 4}, priors.options()).index_put_({image, prior}, codes);
  return targets;
}

}  // namespace ostrov::models
