#pragma once
// Internal to ostrov::models: the keys detector configs share, read and checked in one place
// for build_detector / build_faster_rcnn and build_instance's ssd_mask / mask_rcnn: the SSDs'
// post-processing keys (score_threshold, nms_threshold, topk_candidates,
// detections_per_image), the square image_size, and the two-stage R-CNN's keys (backbone keys
// are every model's: backbone_keys.h).

#include <cstdint>

#include "ostrov/io/json.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "ostrov/models/detection/ssd.h"

namespace ostrov::models::detail {

/// `defaults` with the keys present in `r` applied; ConfigError naming the key path when a
/// threshold is outside its range or a count is not positive.
SSDPostprocessOptions read_postprocess(io::ConfigReader& r, SSDPostprocessOptions defaults);

/// Key image_size (the side of the light SSD's square input), `fallback` when absent;
/// ConfigError naming the key path when it is below 32.
int64_t read_image_size(io::ConfigReader& r, int64_t fallback);

/// The two-stage R-CNN of model `name` ("faster_rcnn", "mask_rcnn"): key preset — "small"
/// (FasterRCNNOptions::maskrcnn_resnet18_fpn_small at `image_size`) or "torchvision"
/// (fasterrcnn_resnet50_fpn, or maskrcnn_resnet50_fpn with `masks`) — then backbone,
/// fpn_channels, trainable_layers, frozen_batch_norm, min_size, max_size,
/// representation_size, rpn_batch_size_per_image, rpn_post_nms_top_n_train/_test,
/// batch_size_per_image, score_threshold, nms_threshold, detections_per_image and, with
/// `masks`, mask_channels, mask_threshold, count_score, count_nms_threshold. The input is
/// normalised by ostrov's pipeline (transform.normalize false). ConfigError naming the key.
FasterRCNNOptions read_two_stage(io::ConfigReader& r, const std::string& name,
                                 int64_t num_classes, int64_t image_size, bool masks);

}  // namespace ostrov::models::detail
