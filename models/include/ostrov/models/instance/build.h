#pragma once
// Building instance-segmentation models from the `model` object of an ostrov JSON config (task
// "instance"), for the CLI and users' own programs; the instance counterpart of models/build.h
// and models/detection/build.h.
//
// Config keys (unknown keys are ostrov::ConfigError naming the key path, e.g. model.cut_levle):
//   name  "deep_coloring" | "deep_watershed" | "mask_rcnn"
//   weights  optional path: a whole-model state_dict (e.g. an ostrov checkpoint's weights),
//            loaded strictly after everything else
//   deep_coloring:  num_colors, min_size, depth, base_width, batch_norm
//   deep_watershed: num_levels, level_step, cut_level, min_size, direction_to_energy, depth,
//                   base_width, batch_norm
//   mask_rcnn:      image_size (default: the caller's), feature_channels, roi_size,
//                   sampling_ratio, mask_channels, mask_convs, mask_threshold, min_score,
//                   count_score, count_nms_threshold, score_threshold, nms_threshold, topk_candidates,
//                   detections_per_image, backbone_weights (torchvision resnet18 for the
//                   detector's backbone)
// Defaults are the options structs' (DeepColoringOptions, DeepWatershedOptions,
// MaskRCNNOptions); count_score (0.5) is the score from which mask_rcnn's detections count as
// objects in label images (SBD, |DiC|), after a class-agnostic NMS at count_nms_threshold
// (0.5), while AP takes every detection above min_score.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include "ostrov/models/instance/deep_coloring.h"
#include "ostrov/models/instance/deep_watershed.h"
#include "ostrov/models/instance/mask_rcnn.h"

namespace ostrov::models {

/// A built instance model: the module and the one typed holder that is set.
struct InstanceModel {
  /// The config's `name`.
  std::string name;
  /// The network as a module: parameters(), train()/eval(), to(device), state dicts.
  std::shared_ptr<torch::nn::Module> module;
  DeepColoring deep_coloring{nullptr};
  DeepWatershed deep_watershed{nullptr};
  MaskRCNN mask_rcnn{nullptr};
  /// mask_rcnn: detections from this score on are objects in label images (SBD, |DiC|) ...
  double count_score = 0.5;
  /// ... once a class-agnostic NMS at this box IoU removed the same object found as two classes.
  double count_nms_threshold = 0.5;

  /// The method's own predict(x): one InstancePrediction per image, at x's size.
  std::vector<InstancePrediction> predict(const at::Tensor& x) const;
  /// Indices of `p`'s instances as one class, best first: all of them for the class-agnostic
  /// methods; for mask_rcnn those scoring >= min_score that survive a class-agnostic NMS (box
  /// IoU count_nms_threshold), so one object found as two classes is one object.
  at::Tensor class_agnostic(const InstancePrediction& p, double min_score) const;
  /// The masks of `p` that count as objects, weakest first (so that the stronger win where
  /// they overlap in masks_to_label_image): all of them for the class-agnostic methods; for
  /// mask_rcnn class_agnostic(p, count_score).
  at::Tensor counted_masks(const InstancePrediction& p) const;
};

/// Builds the model named by `model_config["name"]` for `num_classes` classes (background
/// included; only mask_rcnn uses them) and a square network input of `image_size` (mask_rcnn's
/// default), then loads `backbone_weights` and `weights` if given. `where` names the config
/// file in errors: ConfigError for bad keys and values, IoError for weights files.
InstanceModel build_instance(const nlohmann::json& model_config, int64_t num_classes,
                             int64_t image_size, const std::string& where);

/// The names `build_instance` accepts.
std::vector<std::string> instance_model_names();

}  // namespace ostrov::models
