#pragma once
// Task "instance": the three methods of models::build_instance (model keys are documented
// there) under one config shape, all evaluated the same way on COCO instance masks:
// class-agnostic mask AP (every object is "an object", since DeepColoring and Deep Watershed
// have no classes), SBD and |DiC| (the CVPPP scores).
//
// Losses: deep_coloring {"name": "halo", "margin", "mu"}; deep_watershed "direction" and/or
// "energy" terms (default {"terms": [{"name": "direction"}, {"name": "energy"}]}) on targets
// from the instance masks (losses::watershed_targets); mask_rcnn SSDObjective's keys plus
// MaskObjective's (objectives.h).
// Data: format "coco" with image_size (masks are resized with the image, nearest). Metrics:
// ap50 (COCO AP@0.5 on masks, 101-point), ap (AP@[.5:.95]), ap75, sbd, abs_dic, dic, loss;
// mask_rcnn also class_ap50 and class_ap (with its classes, as COCO rates Mask R-CNN).

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ostrov/losses/build.h"
#include "ostrov/losses/watershed.h"
#include "ostrov/metrics/instance.h"
#include "ostrov/models/instance/build.h"
#include "ostrov/tasks/objectives.h"
#include "ostrov/tasks/task.h"

namespace ostrov::tasks {

class InstanceTask : public Task {
 public:
  InstanceTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *net_.module; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  /// Gathers every rank's per-image results (masks as run-length codes), so the metrics of
  /// N processes equal those of one.
  void merge(train::DataParallel& dp) override;
  nlohmann::json end_evaluation() override;

  std::vector<Prediction> predict(const at::Tensor& images,
                                  const std::vector<ops::GridSize>& sizes) const override;
  /// The objects (mask_rcnn: the detections counted as objects, see
  /// models::InstanceModel::class_agnostic; the JSON keeps every detection with its score).
  cv::Mat overlay(const cv::Mat& bgr, const Prediction& prediction) const override;
  /// {"boxes", "scores", "labels", "masks": [COCO compressed RLE at the input's size]}.
  nlohmann::json prediction_json(const Prediction& prediction) const override;

  const models::InstanceModel& network() const { return net_; }

 private:
  enum class Method { kDeepColoring, kDeepWatershed, kMaskRCNN };

  at::Tensor instance_maps(const data::Batch& batch) const;
  /// The loss of a batch; also the instances when `found` is given (evaluation).
  at::Tensor compute(const data::Batch& batch, std::vector<models::InstancePrediction>* found);

  Method method_ = Method::kDeepColoring;
  models::InstanceModel net_;
  losses::CompositeLoss loss_{nullptr};
  losses::WatershedTargetOptions watershed_targets_;
  SSDObjective detector_objective_;
  MaskObjective mask_objective_;
  std::mt19937_64 rng_{0x05700};
  // Evaluation: per image the predicted and true instances, kept until end_evaluation so
  // that ranks can exchange them.
  struct EvalImage {
    at::Tensor masks, scores, labels;  // predicted, after the class-agnostic selection
    at::Tensor class_masks, class_scores, class_labels;  // mask_rcnn: every detection
    at::Tensor counted;                // predicted label image (SBD, DiC)
    at::Tensor truth, truth_labels;
  };
  std::vector<EvalImage> eval_;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
};

}  // namespace ostrov::tasks
