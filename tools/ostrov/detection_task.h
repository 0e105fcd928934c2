#pragma once
// The detection task of the CLI: an SSD from models::build_detector, targets from
// models::ssd_targets (threshold or Hungarian matcher), losses::build's multibox loss,
// metrics::DetectionAP on the post-processed detections, COCO data with SSD augmentation.
//
// Config (beside the common keys, see README "Configs"):
//   model  models::build_detector's keys (name ssd300_vgg16 | ssd_light, image_size, ...)
//   loss   {"name": "multibox", alpha, neg_pos_ratio, min_negatives, beta} plus the target
//          keys: matcher ("threshold" | "hungarian"), iou_threshold (threshold matcher, 0.5),
//          hungarian_threshold_positives (bool: the Hungarian pairs plus every prior with IoU
//          >= iou_threshold, as SSD does; default false: one prior per object)
//   data   format "coco"; transforms: the training augmentation (default photometric_distort,
//          expand, ssd_random_crop, horizontal_flip); the resize to the model's image_size and
//          the model's normalisation are always appended
// Evaluation metrics: map50 (VOC all-point AP@0.5), map (COCO AP@[.5:.95]), coco_map50 (COCO
// 101-point AP@0.5), map75, voc07_map50, ap50_per_class, loss.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ostrov/data/coco_dataset.h"
#include "ostrov/losses/build.h"
#include "ostrov/models/detection/ssd.h"
#include "ostrov/models/detection/ssd_targets.h"
#include "task.h"

namespace ostrov::cli {

/// Splits an SSD `loss` object (null = multibox defaults) into the object losses::build takes
/// and the target keys (matcher, iou_threshold, hungarian_threshold_positives) as
/// SSDTargetOptions; ConfigError naming `where` and the key for bad values or a name other
/// than "multibox".
std::pair<nlohmann::json, models::SSDTargetOptions> split_detection_loss(
    const nlohmann::json& loss, const std::string& where);

class DetectionTask : public CliTask {
 public:
  DetectionTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *net_; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  void merge(train::DataParallel& dp) override;
  nlohmann::json end_evaluation() override;

  std::shared_ptr<data::Dataset> dataset(const std::string& split) const override;
  std::shared_ptr<const data::Transform> transforms(bool training) const override;
  std::vector<std::string> predict_image(const cv::Mat& bgr, const std::string& stem,
                                         const std::string& out_dir) override;

  const models::SSD& network() const { return net_; }

 private:
  // Loss of a forward output against the batch's boxes and labels.
  at::Tensor loss_of(const models::SSDOutput& out, const data::Batch& batch);

  RunConfig config_;
  c10::Device device_;
  models::SSD net_{nullptr};
  losses::CompositeLoss loss_{nullptr};
  models::SSDTargetOptions targets_;
  // Evaluation: per image, detections and ground truth on the CPU, flattened so ranks can
  // exchange them (see merge): rows of [kind, image, label, score, x1, y1, x2, y2] with kind 0
  // = detection, 1 = ground truth.
  std::vector<float> eval_rows_;
  int64_t eval_images_ = 0;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
  // Category names and ids of the dataset (predict's JSON uses the dataset's own ids).
  std::vector<std::string> class_names_;
  std::vector<int64_t> label_to_category_;
};

}  // namespace ostrov::cli
