#pragma once
// The instance task of the CLI: three methods under one config shape, all evaluated the same
// way on COCO instance masks: class-agnostic mask AP (every object is "an object", since
// DeepColoring and Deep Watershed have no classes), SBD and |DiC| (the CVPPP scores).
//
//   model.name "deep_coloring": models::DeepColoring, loss {"name": "halo", "margin", "mu"};
//     model keys num_colors, min_size, depth, base_width, batch_norm, weights.
//   model.name "deep_watershed": models::DeepWatershed, loss: "direction" and/or "energy"
//     terms (default {"terms": [{"name": "direction"}, {"name": "energy"}]}), targets from the
//     instance masks (losses::watershed_targets); model keys num_levels, level_step,
//     cut_level, min_size, depth, base_width, batch_norm, direction_to_energy, weights.
//   model.name "mask_rcnn": models::MaskRCNN (light SSD + mask head); loss {"name":
//     "multibox", its keys, "matcher", "iou_threshold", "mask_weight" (1), "box_jitter" (0.1)};
//     model keys image_size (default data.image_size), num_extra, feature_channels, roi_size,
//     sampling_ratio, mask_channels, mask_convs, mask_threshold, min_score, score_threshold,
//     nms_threshold, topk_candidates, detections_per_image, weights, backbone_weights
//     (torchvision resnet18). SBD/|DiC| count the instances scoring >= count_score (0.5).
// Data: format "coco" with image_size (masks are resized with the image, nearest). Metrics:
// ap50 (COCO AP@0.5 on masks, 101-point), ap (AP@[.5:.95]), ap75, sbd, abs_dic, dic, loss.

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ostrov/losses/build.h"
#include "ostrov/metrics/instance.h"
#include "ostrov/models/detection/ssd_targets.h"
#include "ostrov/models/instance/deep_coloring.h"
#include "ostrov/models/instance/deep_watershed.h"
#include "ostrov/models/instance/mask_rcnn.h"
#include "task.h"

namespace ostrov::cli {

class InstanceTask : public CliTask {
 public:
  InstanceTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *module_; }
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
  std::shared_ptr<torch::nn::Module> module_;
  models::DeepColoring coloring_{nullptr};
  models::DeepWatershed watershed_{nullptr};
  models::MaskRCNN mask_rcnn_{nullptr};
  losses::CompositeLoss loss_{nullptr};
  losses::WatershedTargetOptions watershed_targets_;
  models::SSDTargetOptions ssd_targets_;
  double mask_weight_ = 1.0;
  double box_jitter_ = 0.1;
  double count_score_ = 0.5;
  std::mt19937_64 rng_{0x05700};
  metrics::MaskAP ap_;
  metrics::CvpppMetrics cvppp_;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
  std::vector<int64_t> label_to_category_;
};

}  // namespace ostrov::cli
