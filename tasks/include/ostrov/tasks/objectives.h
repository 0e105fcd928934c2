#pragma once
// Training objectives that are more than a loss term: they assign the ground truth to the
// network's outputs first. Each reads its own keys from the config's `loss` section, so the
// section is one object a user writes and losses::build never sees keys it does not know.
//
//   SSD detectors (task detection, and the detector of the SSD-based mask model):
//     {"name": "multibox", "alpha": 1, "neg_pos_ratio": 3, "min_negatives": 0, "beta": 1,
//      "matcher": "threshold" | "hungarian" | "hungarian_predicted", "iou_threshold": 0.5,
//      "hungarian_threshold_positives": false, "location_weight": 1, "confidence_weight": 1}
//   (hungarian_predicted: models::SSDPredictions gives its cost.)
//   The SSD-based mask model adds {"mask_weight": 1, "box_jitter": 0.1}.
//   YOLO (task detection, model yolo):
//     {"name": "yolo", "lambda_coord": 5, "lambda_noobj": 0.5, "rescore": true}
//   Two-stage R-CNNs (task detection's faster_rcnn, task instance's mask_rcnn): the network's
//   own losses, each weighted: {"loss_objectness_weight": 1, "loss_rpn_box_reg_weight": 1,
//   "loss_classifier_weight": 1, "loss_box_reg_weight": 1, "loss_mask_weight": 1 (mask_rcnn)}

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include "ostrov/data/sample.h"
#include "ostrov/losses/multibox.h"
#include "ostrov/losses/yolo.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "ostrov/models/detection/ssd.h"
#include "ostrov/models/detection/ssd_targets.h"
#include "ostrov/models/detection/yolo.h"
#include "ostrov/models/instance/ssd_mask.h"

namespace ostrov::io {
class ConfigReader;
}

namespace ostrov::tasks {

/// SSD's objective (Liu et al. 2016): each image's boxes matched to the priors by the
/// threshold matcher (torchvision's SSDMatcher), the Hungarian matcher, or the Hungarian
/// matcher on the network's own predictions (models::ssd_targets), then the multibox loss
/// (losses::functional::multibox_loss).
class SSDObjective {
 public:
  SSDObjective() = default;
  /// Reads the keys listed in the header from `loss` (the `loss` section; the caller calls
  /// finish()). ConfigError naming the key for bad values or a name other than "multibox".
  SSDObjective(io::ConfigReader& loss, int64_t num_classes);
  /// The whole section (null: the defaults); unknown keys are errors.
  static SSDObjective from_config(const nlohmann::json& loss, int64_t num_classes,
                                  const std::string& where);

  /// The scalar loss of `out` (on any device) against each image's boxes [G_i,4] (input
  /// pixels) and labels [G_i] in 1..C-1. The matching runs on the CPU.
  at::Tensor operator()(const models::SSDOutput& out, const std::vector<at::Tensor>& boxes,
                        const std::vector<at::Tensor>& labels) const;

  /// How the boxes are matched to the priors (matcher, iou_threshold, num_classes).
  const models::SSDTargetOptions& targets() const { return targets_; }
  /// The multibox loss's options (alpha, neg_pos_ratio, min_negatives, beta).
  const losses::MultiboxLossOptions& multibox() const { return multibox_; }

 private:
  models::SSDTargetOptions targets_;
  losses::MultiboxLossOptions multibox_;
};

/// YOLO v1's objective (Redmon et al. 2016): each image's boxes assigned to the grid cell
/// holding their centre (models::yolo_targets), then the sum-squared error of
/// losses::functional::yolo_loss.
class YOLOObjective {
 public:
  YOLOObjective() = default;
  /// Reads name ("yolo", the default), lambda_coord (>= 0), lambda_noobj (>= 0) and rescore
  /// from `loss` (the caller calls finish()); ConfigError naming the key for bad values.
  explicit YOLOObjective(io::ConfigReader& loss);
  /// The whole section (null: the defaults); unknown keys are errors.
  static YOLOObjective from_config(const nlohmann::json& loss, const std::string& where);
  /// The loss and its parts for `out` of a network with `grid` cells per side and an input of
  /// `image_size` pixels, against each image's boxes [G_i,4] (input pixels) and labels [G_i]
  /// in 1..C-1. The targets are made on the CPU.
  losses::YOLOLossParts operator()(const models::YOLOOutput& out,
                                   const std::vector<at::Tensor>& boxes,
                                   const std::vector<at::Tensor>& labels, int64_t grid,
                                   int64_t image_size) const;
  /// lambda_coord, lambda_noobj, rescore.
  const losses::YOLOLossOptions& options() const { return options_; }

 private:
  losses::YOLOLossOptions options_;
};

/// The mask term of the SSD-based mask model (models::SSDMask): the mask head learns on the
/// ground-truth boxes, jittered while training so that it copes with the detector's
/// imperfect boxes, against mask targets cropped from the instance masks
/// (models::mask_targets), with losses::functional::mask_loss.
class MaskObjective {
 public:
  MaskObjective() = default;
  /// Reads mask_weight (>= 0, default 1) and box_jitter (in [0, 0.5), default 0.1).
  explicit MaskObjective(io::ConfigReader& loss);

  /// mask_weight x the mask loss of a batch: per image its boxes [G_i,4], labels [G_i] and
  /// instance masks [G_i,H,W] at the network input's size {H,W}. Jitters (drawing from
  /// `rng`) only when `training`. An undefined tensor when the batch has no object or the
  /// weight is 0.
  at::Tensor operator()(models::SSDMaskImpl& net, const at::Tensor& mask_features,
                        const std::vector<at::Tensor>& boxes,
                        const std::vector<at::Tensor>& labels,
                        const std::vector<at::Tensor>& instances, ops::GridSize image_size,
                        bool training, std::mt19937_64& rng) const;

  /// Factor of the mask loss (0: no mask term).
  double mask_weight() const { return mask_weight_; }
  /// Largest training shift of a box corner, as a fraction of the box's width or height
  /// (models::jitter_boxes).
  double box_jitter() const { return box_jitter_; }

 private:
  double mask_weight_ = 1.0;
  double box_jitter_ = 0.1;
};

/// A two-stage R-CNN's objective (models::FasterRCNN: Ren et al. 2015; with masks, He et al.
/// 2017): the network computes torchvision's losses itself — loss_objectness and
/// loss_rpn_box_reg (the RPN), loss_classifier and loss_box_reg (the box head), loss_mask
/// (the mask head) — and this sums them, each times its weight.
class RCNNObjective {
 public:
  /// Reads loss_<term>_weight (>= 0, default 1) for each term of the network (loss_mask only
  /// with `masks`) from `loss` (null: the defaults); unknown keys and negative weights are
  /// ConfigErrors naming the key.
  static RCNNObjective from_config(const nlohmann::json& loss, bool masks,
                                   const std::string& where);
  /// The weighted loss of `net` on `batch`: [N,3,H,W] images, per image boxes [G,4] (input
  /// pixels), labels [G] in 1..C-1 and, with masks, instance masks [G,H,W]. A box with zero
  /// width or height (an object the augmentation flattened) is left out with its mask. In
  /// evaluation mode the default CPU generator is restored afterwards, so a validation loss
  /// (which samples anchors and proposals too) leaves the training's draws as they were;
  /// `found` then receives the detections of the same forward pass (input pixels).
  at::Tensor operator()(models::FasterRCNNImpl& net, const data::Batch& batch,
                        std::vector<models::RCNNDetection>* found = nullptr) const;
  /// The weight of each of the network's terms.
  const std::map<std::string, double>& weights() const { return weights_; }

 private:
  std::map<std::string, double> weights_;
  bool masks_ = false;
};

}  // namespace ostrov::tasks
