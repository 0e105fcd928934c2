#pragma once
// Task "classification": a models::build_classifier network (ResNet, MobileNetV2/V3) on
// ImageFolder data (root/<class>/<image>), cross-entropy (optionally label-smoothed), accuracy
// metrics.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ostrov/models/classifier.h"
#include "ostrov/tasks/task.h"

namespace ostrov::tasks {

/// The "classification" task: one class per image (see the file comment).
class ClassificationTask : public Task {
 public:
  /// Builds the classifier of config.model on `device` and reads `loss` (cross_entropy with
  /// label_smoothing in [0, 1)); ConfigError naming the key for bad ones. Without class names
  /// in the config, takes the class folders' names of data.train (or data.val) when present.
  ClassificationTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *model_.module; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  void merge(train::DataParallel& dp) override;
  /// {"loss", "accuracy", "top5_accuracy" (with more than 5 classes), "mean_class_accuracy",
  ///  "accuracy_per_class"}.
  nlohmann::json end_evaluation() override;

  /// Prediction::top: the best classes (at most 5), best first, with softmax probabilities.
  std::vector<Prediction> predict(const at::Tensor& images,
                                  const std::vector<ops::GridSize>& sizes) const override;
  /// The image with the best class and its probability written on it.
  cv::Mat overlay(const cv::Mat& bgr, const Prediction& prediction) const override;
  /// {"top": [{"class", "name", "probability"}, ...]}.
  nlohmann::json prediction_json(const Prediction& prediction) const override;

 private:
  static at::Tensor targets(const data::Batch& batch);

  models::Classifier model_;
  double label_smoothing_ = 0.0;
  // Evaluation accumulators: per class [seen, correct], top-5 correct, loss sum.
  at::Tensor per_class_;
  int64_t top5_correct_ = 0;
  double loss_sum_ = 0.0;
};

}  // namespace ostrov::tasks
