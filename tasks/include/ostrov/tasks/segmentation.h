#pragma once
// Task "segmentation": a models::build network, a losses::build loss (default cross_entropy;
// PSPNet adds its auxiliary loss), ConfusionMatrix metrics (miou, pixel_accuracy,
// mean_class_accuracy, iou_per_class). Data: "folder" (images/ + masks/) or "coco" (class
// masks painted from the annotations).

#include <memory>
#include <string>
#include <vector>

#include "ostrov/losses/build.h"
#include "ostrov/metrics/confusion_matrix.h"
#include "ostrov/models/build.h"
#include "ostrov/tasks/task.h"

namespace ostrov::tasks {

/// The "segmentation" task: a class per pixel (see the file comment).
class SegmentationTask : public Task {
 public:
  /// Builds the network of config.model and the loss of `loss` (null: cross_entropy) on
  /// `device`; ConfigError naming the key for bad ones.
  SegmentationTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *model_.module; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  void merge(train::DataParallel& dp) override;
  nlohmann::json end_evaluation() override;

  /// Softmax probabilities bilinearly resized to each original size, then the argmax (so a
  /// prediction is as sharp as the probabilities, not blocks of nearest-upsampled labels).
  std::vector<Prediction> predict(const at::Tensor& images,
                                  const std::vector<ops::GridSize>& sizes) const override;
  /// Each pixel's probabilities come from the one tile in which it lies at least overlap/2
  /// pixels from the tile's inner borders (the tiles' centres partition the image), so for a
  /// network whose receptive field reaches less than overlap/2 pixels and whose stride divides
  /// the tile step (input_size() - overlap), the result equals a pass over the whole image.
  /// The image is padded (with the mean colour) to a whole number of tile steps.
  Prediction predict_tiled(const at::Tensor& image, int64_t overlap) const override;
  cv::Mat overlay(const cv::Mat& bgr, const Prediction& prediction) const override;
  /// Null: the mask is written as `<stem>.png`.
  nlohmann::json prediction_json(const Prediction& prediction) const override { return {}; }

  /// Keep Prediction::probabilities (off by default: C x H x W floats per image).
  void keep_probabilities(bool keep) { keep_probabilities_ = keep; }
  /// The segmentation network (also model()).
  const models::SegmentationModel& network() const { return model_; }

 private:
  at::Tensor loss_of(const at::Tensor& logits, const at::Tensor& target);
  /// [C,H,W] probabilities -> the mask (argmax) and, when kept, the probabilities.
  Prediction from_probabilities(const at::Tensor& probabilities) const;

  models::SegmentationModel model_;
  losses::CompositeLoss loss_{nullptr};
  metrics::ConfusionMatrix confusion_;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
  bool keep_probabilities_ = false;
};

}  // namespace ostrov::tasks
