#pragma once
// The instance task of the CLI. This version implements DeepColoring (model.name
// "deep_coloring"): models::DeepColoring trained with the halo loss on COCO instance masks,
// evaluated with class-agnostic mask AP (every object is "an object"; DeepColoring has no
// classes), SBD and |DiC| (the CVPPP scores).
//
// Config: model {"name": "deep_coloring", "num_colors", "min_size", "depth", "base_width",
// "batch_norm", "weights"}; loss {"name": "halo", "margin", "mu"}; data format "coco" with
// image_size (masks are resized with the image, nearest). Metrics: ap50 (COCO AP@0.5 on
// masks, 101-point), ap (AP@[.5:.95]), sbd, abs_dic, dic, loss.

#include <memory>
#include <string>
#include <vector>

#include "ostrov/losses/build.h"
#include "ostrov/metrics/instance.h"
#include "ostrov/models/instance/deep_coloring.h"
#include "task.h"

namespace ostrov::cli {

class InstanceTask : public CliTask {
 public:
  InstanceTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *net_; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  void merge(train::DataParallel& dp) override;
  nlohmann::json end_evaluation() override;

  std::shared_ptr<data::Dataset> dataset(const std::string& split) const override;
  std::shared_ptr<const data::Transform> transforms(bool training) const override;
  /// Writes `<stem>.json` (boxes, scores, labels 0 = "object", masks as COCO compressed RLE at
  /// the input's size) and `<stem>_overlay.png`.
  std::vector<std::string> predict_image(const cv::Mat& bgr, const std::string& stem,
                                         const std::string& out_dir) override;

 private:
  at::Tensor instance_maps(const data::Batch& batch) const;

  RunConfig config_;
  c10::Device device_;
  models::DeepColoring net_{nullptr};
  losses::CompositeLoss loss_{nullptr};
  metrics::MaskAP ap_;
  metrics::CvpppMetrics cvppp_;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
};

}  // namespace ostrov::cli
