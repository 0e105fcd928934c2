#pragma once
// Internal to ostrov::models: the post-processing keys every SSD-based model config takes
// (score_threshold, nms_threshold, topk_candidates, detections_per_image), read and checked in
// one place for build_detector and build_instance's mask_rcnn.

#include "ostrov/io/json.h"
#include "ostrov/models/detection/ssd.h"

namespace ostrov::models::detail {

/// `defaults` with the keys present in `r` applied; ConfigError naming the key path when a
/// threshold is outside its range or a count is not positive.
SSDPostprocessOptions read_postprocess(io::ConfigReader& r, SSDPostprocessOptions defaults);

}  // namespace ostrov::models::detail
