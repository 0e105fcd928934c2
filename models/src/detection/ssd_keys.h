#pragma once
// Internal to ostrov::models: the keys every SSD-based model config shares, read and checked in
// one place for build_detector and build_instance's ssd_mask: the post-processing keys
// (score_threshold, nms_threshold, topk_candidates, detections_per_image) and the light SSD's
// image_size (its backbone keys are every model's: backbone_keys.h).

#include "ostrov/io/json.h"
#include "ostrov/models/detection/ssd.h"

namespace ostrov::models::detail {

/// `defaults` with the keys present in `r` applied; ConfigError naming the key path when a
/// threshold is outside its range or a count is not positive.
SSDPostprocessOptions read_postprocess(io::ConfigReader& r, SSDPostprocessOptions defaults);

/// Key image_size (the side of the light SSD's square input), `fallback` when absent;
/// ConfigError naming the key path when it is below 32.
int64_t read_image_size(io::ConfigReader& r, int64_t fallback);

}  // namespace ostrov::models::detail
