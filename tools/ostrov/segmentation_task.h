#pragma once
// The segmentation task of the CLI: a models::build network, a losses::build loss,
// ConfusionMatrix metrics, and the datasets and transforms of a run config.

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "ostrov/data/dataset.h"
#include "ostrov/data/transforms.h"
#include "ostrov/losses/build.h"
#include "ostrov/metrics/confusion_matrix.h"
#include "ostrov/models/build.h"
#include "run_config.h"
#include "task.h"

namespace ostrov::cli {

class SegmentationTask : public CliTask {
 public:
  SegmentationTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *model_.module; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  void merge(train::DataParallel& dp) override;
  nlohmann::json end_evaluation() override;

  std::shared_ptr<data::Dataset> dataset(const std::string& split) const override;
  std::shared_ptr<const data::Transform> transforms(bool training) const override;
  /// Writes `<stem>.png` (8-bit class index at the image's size) and `<stem>_overlay.png`.
  std::vector<std::string> predict_image(const cv::Mat& bgr, const std::string& stem,
                                         const std::string& out_dir) override;

  /// [N,3,H,W] normalised images -> [N,H,W] int64 class indices.
  at::Tensor predict(const at::Tensor& images);
  const models::SegmentationModel& network() const { return model_; }

 private:
  at::Tensor loss_of(const at::Tensor& logits, const at::Tensor& target);

  RunConfig config_;
  c10::Device device_;
  models::SegmentationModel model_;
  losses::CompositeLoss loss_{nullptr};
  metrics::ConfusionMatrix confusion_;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
};

}  // namespace ostrov::cli
