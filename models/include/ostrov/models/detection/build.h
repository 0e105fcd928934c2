#pragma once
// Building SSD detectors (and YOLO and Faster R-CNN, at the end) from the `model` object of an
// ostrov JSON config (task "detection"), for the CLI and users' own programs; the detection
// counterpart of models/build.h.
//
// Config keys (unknown keys are ostrov::ConfigError naming the key path, e.g. model.imgae_size):
//   name                  "ssd300_vgg16" (torchvision's ssd300_vgg16) |
//                         "ssdlite320_mobilenet_v3_large" (torchvision's, 3234 default boxes
//                         at 320x320) | "ssd_light" (SSDOptions::light: ResNet-18, 1524
//                         default boxes at 256x256)
//   backbone              "vgg16" | "mobilenet_v3_large" | "resnet18": optional, each detector
//                         has one; backbone_channels: ssd_light's ResNet-18 width
//   image_size            side of the square network input (ssd300_vgg16: must stay 300;
//                         ssdlite320_mobilenet_v3_large: 320; ssd_light: 256)
//   num_extra             ssd_light: extra stride-2 stages after layer4 (default 3)
//   reduced_tail          ssdlite320_mobilenet_v3_large: the half-width last stage (default:
//                         true without backbone_weights, false with them, as torchvision)
//   score_threshold, nms_threshold, topk_candidates, detections_per_image
//                         post-processing (SSDPostprocessOptions; torchvision's defaults)
//   weights               optional path: a whole-model state_dict (an ostrov checkpoint's
//                         weights or torchvision's ssd300_vgg16 / ssdlite320 state_dict),
//                         loaded strictly
//   backbone_weights      optional path: a torchvision ImageNet classifier for the backbone
//                         (ssd300_vgg16: vgg16, its features.0-29; ssdlite320:
//                         mobilenet_v3_large, its features; ssd_light: resnet18,
//                         conv1/bn1/layer1-4); every backbone key must match by name and shape
//                         and the classifier/fc keys are ignored

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "ostrov/models/detection/ssd.h"
#include "ostrov/models/detection/yolo.h"

namespace ostrov::io {
class ConfigReader;
}

namespace ostrov::models {

/// A detector kind in the registry `build_detector` reads. `parse` reads the kind's own keys
/// from the `model` section and returns its SSD's options; `name`, `weights`,
/// `backbone_weights` and the post-processing keys are read around it and unknown keys are
/// rejected after. ConfigError (naming `model.key`) for bad values.
struct DetectionModelEntry {
  /// Reads the kind's keys through `model` and returns its SSDOptions for `num_classes`
  /// (background included, >= 2).
  using Parse = std::function<SSDOptions(io::ConfigReader& model, int64_t num_classes)>;
  /// The config's `name` that selects this kind (non-empty and unique in the registry).
  std::string name;
  /// Reads the kind's keys; required (register_detection_model throws ostrov::Error when empty).
  Parse parse;
};

/// Adds a detector kind (`"name"` in configs); ostrov::Error when the name is taken.
void register_detection_model(DetectionModelEntry entry);

/// The options `build_detector` would build with (validated; ConfigError naming the key).
SSDOptions detector_options(const nlohmann::json& model_config, int64_t num_classes,
                            const std::string& where);

/// Builds the SSD named by `model_config["name"]` with `num_classes` classes (background
/// included), then loads `backbone_weights` and `weights` if given. `where` names the config
/// file in errors. ConfigError for bad keys and values, IoError for weights files that cannot
/// be read or do not match (keys listed).
SSD build_detector(const nlohmann::json& model_config, int64_t num_classes,
                   const std::string& where);

/// Copies a torchvision ImageNet classifier's state (vgg16 for the "vgg16" backbone,
/// mobilenet_v3_large for "mobilenet_v3_large", resnet18 for "resnet18") into `ssd`'s backbone,
/// renamed as torchvision's SSD feature extractors take the layers
/// (SSDBackbone::key_from_classifier). IoError naming `source` and the keys when a backbone
/// key is missing from `state` or has another shape.
void load_ssd_backbone_weights(SSDImpl& ssd, const io::StateDict& state,
                               const std::string& source);

/// The layer table of `ostrov receptive-field` for a detector's `model` section
/// (ssd_receptive_field_layers of its options; yolo: its backbone's layers and the head's
/// convolutions; ConfigError naming the key for bad ones).
std::vector<nn::LayerSpec> detector_receptive_field_layers(const nlohmann::json& model_config,
                                                           const std::string& where);

/// The names `build_detector` accepts (the registry's, in registration order).
std::vector<std::string> detection_model_names();

/// The options `build_yolo` would build with (validated; ConfigError naming the key). Keys:
///   name "yolo"; backbone (resnet18..resnet152, mobilenet_v2, mobilenet_v3_large,
///   mobilenet_v3_small; default resnet18), backbone_channels (ResNets), image_size (256),
///   grid (S, 8), boxes_per_cell (B, 2), head_channels (256), the post-processing keys of the
///   SSDs (score_threshold, nms_threshold, topk_candidates, detections_per_image), weights,
///   backbone_weights (a torchvision classifier of the backbone).
YOLOOptions yolo_options(const nlohmann::json& model_config, int64_t num_classes,
                         const std::string& where);
/// Builds the YOLO of `model_config` (keys above) with `num_classes` classes (background
/// included), then loads `backbone_weights` and `weights` if given. ConfigError for bad keys
/// and values, IoError for weights files.
YOLO build_yolo(const nlohmann::json& model_config, int64_t num_classes, const std::string& where);

/// What build_faster_rcnn builds: the network's options and the side of its square input.
struct FasterRCNNConfig {
  FasterRCNNOptions options;  ///< masks off; the transform does not normalise (the task does)
  int64_t image_size;         ///< key image_size: the side images are resized to
};
/// The configuration build_faster_rcnn would build (validated; ConfigError naming the key).
/// Keys: name "faster_rcnn"; preset "small" (ResNet-18 FPN, anchors 16..256, for small
/// images on a CPU; image_size 320) or "torchvision" (fasterrcnn_resnet50_fpn; image_size 800);
/// image_size; backbone (resnet18..resnet152), fpn_channels, trainable_layers,
/// frozen_batch_norm, min_size, max_size, representation_size, rpn_batch_size_per_image,
/// rpn_post_nms_top_n_train, rpn_post_nms_top_n_test, batch_size_per_image,
/// score_threshold, nms_threshold, detections_per_image; weights (a whole-model state_dict:
/// an ostrov checkpoint's weights or torchvision's fasterrcnn_resnet50_fpn), backbone_weights
/// (a torchvision ResNet classifier).
FasterRCNNConfig faster_rcnn_config(const nlohmann::json& model_config, int64_t num_classes,
                                    const std::string& where);
/// Builds the Faster R-CNN of `model_config` (keys above) with `num_classes` classes
/// (background included), then loads `backbone_weights` and `weights` if given. ConfigError for
/// bad keys and values, IoError for weights files.
FasterRCNN build_faster_rcnn(const nlohmann::json& model_config, int64_t num_classes,
                             const std::string& where);

}  // namespace ostrov::models
