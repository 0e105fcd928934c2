#pragma once
// Internal to ostrov::models: what the detectors' post-processing shares (ssd_postprocess and
// yolo_postprocess), and the backbones YOLO takes (read by build_yolo, checked by YOLOImpl).

#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "ostrov/models/detection/ssd.h"
#include "ostrov/ops/priors.h"

namespace ostrov::models::detail {

/// One image's detections from its candidate boxes [P,4] (input pixels, already clipped) and
/// their scores [P,K] for the labels 1..K: per label the candidates scoring > score_threshold,
/// the best topk_candidates of them, then one per-class NMS (ops::batched_nms) and the best
/// detections_per_image, ordered by score. With `original`, boxes are scaled from `input`
/// {H, W} to it by torchvision's resize_boxes (float32 ratios, one multiply per coordinate).
Detections select_detections(const at::Tensor& boxes, const at::Tensor& scores,
                             const SSDPostprocessOptions& options, ops::GridSize input,
                             const ops::GridSize* original);

/// The backbones YOLO takes: those whose last map is ceil(input / stride) (every downsampling
/// layer a stride-2 convolution or pooling padded to "same"), which its grid check relies on.
const std::vector<std::string>& yolo_backbone_names();

}  // namespace ostrov::models::detail
