#pragma once
// The classification task of the CLI: a models::build_classifier ResNet on ImageFolder data
// (root/<class>/<image>), cross-entropy (optionally label-smoothed), accuracy metrics.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "ostrov/models/classifier.h"
#include "run_config.h"
#include "task.h"

namespace ostrov::cli {

class ClassificationTask : public CliTask {
 public:
  ClassificationTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *model_; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  void merge(train::DataParallel& dp) override;
  /// {"loss", "accuracy", "top5_accuracy" (with more than 5 classes), "mean_class_accuracy",
  ///  "accuracy_per_class"}.
  nlohmann::json end_evaluation() override;

  std::shared_ptr<data::Dataset> dataset(const std::string& split) const override;
  std::shared_ptr<const data::Transform> transforms(bool training) const override;
  /// Writes `<stem>.json` ({"top": [{"class", "name", "probability"}, ...] best first, at most
  /// 5}) and `<stem>_overlay.png` (the image with the best class written on it).
  std::vector<std::string> predict_image(const cv::Mat& bgr, const std::string& stem,
                                         const std::string& out_dir) override;

 private:
  static at::Tensor targets(const data::Batch& batch);

  RunConfig config_;
  c10::Device device_;
  models::ResNet model_{nullptr};
  double label_smoothing_ = 0.0;
  std::vector<std::string> class_names_;  // from the first split folder found; may be empty
  // Evaluation accumulators: per class [seen, correct], top-5 correct, loss sum.
  at::Tensor per_class_;
  int64_t top5_correct_ = 0;
  double loss_sum_ = 0.0;
};

}  // namespace ostrov::cli
