#pragma once
// Task "detection": an SSD from models::build_detector, trained with SSDObjective (threshold
// or Hungarian matching + multibox loss), evaluated with metrics::DetectionAP on the
// post-processed detections, on COCO data with SSD augmentation.
//
// Config (beside the common keys, see docs/configs.md):
//   model  models::build_detector's keys (name ssd300_vgg16 | ssd_light, image_size, ...)
//   loss   SSDObjective's keys (objectives.h)
//   data   format "coco"; transforms: the training augmentation (default photometric_distort,
//          expand, ssd_random_crop, horizontal_flip); the resize to the model's image_size and
//          the model's normalisation are always appended
// Evaluation metrics, COCO's as every detection toolkit reports them: map50 (COCO 101-point
// AP@0.5), map (AP@[.5:.95]), map75, ap50_per_class (COCO AP@0.5 per category id); PASCAL VOC's
// voc_map50 (all-point AP@0.5) and voc07_map50 (11-point); loss.

#include <memory>
#include <string>
#include <vector>

#include "ostrov/models/detection/ssd.h"
#include "ostrov/tasks/objectives.h"
#include "ostrov/tasks/task.h"

namespace ostrov::tasks {

/// The "detection" task: an SSD detector on COCO data (see the file comment).
class DetectionTask : public Task {
 public:
  /// Builds the detector of config.model on `device` and the SSDObjective of `loss`;
  /// ConfigError naming the key for bad ones.
  DetectionTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *net_; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  void merge(train::DataParallel& dp) override;
  nlohmann::json end_evaluation() override;

  std::shared_ptr<const data::Transform> transforms(bool training) const override;
  ops::GridSize input_size() const override;
  std::vector<Prediction> predict(const at::Tensor& images,
                                  const std::vector<ops::GridSize>& sizes) const override;
  cv::Mat overlay(const cv::Mat& bgr, const Prediction& prediction) const override;

  /// The SSD network (also model()).
  const models::SSD& network() const { return net_; }
  /// The training objective read from the `loss` section.
  const SSDObjective& objective() const { return objective_; }

 protected:
  bool needs_masks() const override { return false; }

 private:
  models::SSD net_{nullptr};
  SSDObjective objective_;
  // Evaluation: per image, detections and ground truth on the CPU, flattened so ranks can
  // exchange them (see merge): rows of [kind, image, label, score, x1, y1, x2, y2] with kind 0
  // = detection, 1 = ground truth.
  std::vector<float> eval_rows_;
  int64_t eval_images_ = 0;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
};

}  // namespace ostrov::tasks
