#pragma once
// The instance task of the CLI: the three methods of models::build_instance (model keys are
// documented there) under one config shape, all evaluated the same way on COCO instance masks:
// class-agnostic mask AP (every object is "an object", since DeepColoring and Deep Watershed
// have no classes), SBD and |DiC| (the CVPPP scores).
//
// Losses: deep_coloring {"name": "halo", "margin", "mu"}; deep_watershed "direction" and/or
// "energy" terms (default {"terms": [{"name": "direction"}, {"name": "energy"}]}) on targets
// from the instance masks (losses::watershed_targets); mask_rcnn {"name": "multibox", its keys,
// "matcher", "iou_threshold" (split_detection_loss), "mask_weight" (1), "box_jitter" (0.1)}.
// Data: format "coco" with image_size (masks are resized with the image, nearest). Metrics:
// ap50 (COCO AP@0.5 on masks, 101-point), ap (AP@[.5:.95]), ap75, sbd, abs_dic, dic, loss;
// mask_rcnn also class_ap50 and class_ap (with its classes, as COCO rates Mask R-CNN).

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ostrov/losses/build.h"
#include "ostrov/metrics/instance.h"
#include "ostrov/models/detection/ssd_targets.h"
#include "ostrov/models/instance/build.h"
#include "task.h"

namespace ostrov::cli {

class InstanceTask : public CliTask {
 public:
  InstanceTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *net_.module; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  void merge(train::DataParallel& dp) override;
  nlohmann::json end_evaluation() override;

  std::shared_ptr<data::Dataset> dataset(const std::string& split) const override;
  std::shared_ptr<const data::Transform> transforms(bool training) const override;
  /// Writes `<stem>.json` (boxes, scores, labels — the dataset's category ids for mask_rcnn,
  /// 0 = "object" otherwise — and masks as COCO compressed RLE at the input's size) and
  /// `<stem>_overlay.png`.
  std::vector<std::string> predict_image(const cv::Mat& bgr, const std::string& stem,
                                         const std::string& out_dir) override;

 private:
  enum class Method { kDeepColoring, kDeepWatershed, kMaskRCNN };

  at::Tensor instance_maps(const data::Batch& batch) const;
  /// The loss of a batch; also the instances when `found` is given (evaluation).
  at::Tensor compute(const data::Batch& batch, std::vector<models::InstancePrediction>* found);
  at::Tensor mask_rcnn_loss(const models::MaskRCNNOutput& out, const data::Batch& batch);

  RunConfig config_;
  c10::Device device_;
  Method method_ = Method::kDeepColoring;
  models::InstanceModel net_;
  losses::CompositeLoss loss_{nullptr};
  losses::WatershedTargetOptions watershed_targets_;
  models::SSDTargetOptions ssd_targets_;
  double mask_weight_ = 1.0;
  double box_jitter_ = 0.1;
  std::mt19937_64 rng_{0x05700};
  metrics::MaskAP ap_;
  metrics::MaskAP class_ap_;  // mask_rcnn: with its classes
  metrics::CvpppMetrics cvppp_;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
  std::vector<int64_t> label_to_category_;
};

}  // namespace ostrov::cli
