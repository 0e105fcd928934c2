#pragma once
// Task "detection": a detector — an SSD from models::build_detector trained with SSDObjective
// (threshold or Hungarian matching + multibox loss), or YOLO from models::build_yolo trained
// with YOLOObjective — evaluated with metrics::DetectionAP on the post-processed detections,
// on COCO data with SSD augmentation. Detector kinds are entries of a registry
// (register_detector); every name of models::detection_model_names() is an SSD.
//
// Config (beside the common keys, see docs/configs.md):
//   model  models::build_detector's keys (name ssd300_vgg16 | ssd_light | ..., image_size, ...),
//          models::build_yolo's (name yolo, grid, boxes_per_cell, ...) or
//          models::build_faster_rcnn's (name faster_rcnn, preset, image_size, ...)
//   loss   SSDObjective's, YOLOObjective's or RCNNObjective's keys (objectives.h)
//   data   format "coco"; transforms: the training augmentation (default photometric_distort,
//          expand, ssd_random_crop, horizontal_flip); the resize to the model's image_size and
//          the model's normalisation are always appended
// Evaluation metrics, COCO's as every detection toolkit reports them: map50 (COCO 101-point
// AP@0.5), map (AP@[.5:.95]), map75, ap50_per_class (COCO AP@0.5 per category id); PASCAL VOC's
// voc_map50 (all-point AP@0.5) and voc07_map50 (11-point); loss.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ostrov/models/detection/ssd.h"
#include "ostrov/tasks/objectives.h"
#include "ostrov/tasks/task.h"

namespace ostrov::tasks {

/// One detector kind as the detection task runs it: its network, its training objective and
/// its post-processing, behind one interface.
class Detector {
 public:
  virtual ~Detector() = default;
  /// The network (parameters, train()/eval(), to(device), state dicts).
  virtual torch::nn::Module& module() = 0;
  /// Side of the square network input.
  virtual int64_t image_size() const = 0;
  /// Per-channel mean and std the input is normalised with.
  virtual std::vector<double> image_mean() const = 0;
  /// See image_mean.
  virtual std::vector<double> image_std() const = 0;
  /// The batch's scalar loss in the network's current mode; with `found`, also each image's
  /// detections (input pixels) from the same forward pass (evaluation, eval mode).
  virtual at::Tensor loss(const data::Batch& batch, std::vector<models::Detections>* found) = 0;
  /// Detections of `images` (after the evaluation transform) at the original `sizes`. Changes
  /// no state: safe from several threads in eval mode.
  virtual std::vector<models::Detections> detect(const at::Tensor& images,
                                                 const std::vector<ops::GridSize>& sizes) const = 0;
};

/// A detector kind of the registry: `make` builds it (network and objective) from a validated
/// config; the two checks read its `model` and its `loss` section without allocating
/// anything (ConfigError naming the key).
struct DetectorEntry {
  std::string name;  ///< the config's `model.name`
  /// Builds the detector; required.
  std::function<std::unique_ptr<Detector>(const RunConfig&)> make;
  /// Checks the model section; required.
  std::function<void(const RunConfig&)> validate_model;
  /// Checks the loss section; required.
  std::function<void(const RunConfig&)> validate_loss;
};

/// Adds a detector kind; ostrov::Error when the name is taken or is an SSD's.
void register_detector(DetectorEntry entry);
/// The detector kinds the task builds: the SSDs of models::detection_model_names(), then the
/// registry's (faster_rcnn, yolo and users').
std::vector<std::string> detector_names();
/// The detector of `config.model["name"]`; ConfigError naming model.name and the known names.
std::unique_ptr<Detector> make_detector(const RunConfig& config);

/// The "detection" task: a detector on COCO data (see the file comment).
class DetectionTask : public Task {
 public:
  /// Builds the detector of config.model and its objective on `device`; ConfigError naming
  /// the key for bad ones.
  DetectionTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return detector_->module(); }
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

  /// The detector (also model()).
  const Detector& detector() const { return *detector_; }

 protected:
  bool needs_masks() const override { return false; }

 private:
  std::unique_ptr<Detector> detector_;
  // Evaluation: per image, detections and ground truth on the CPU, flattened so ranks can
  // exchange them (see merge): rows of [kind, image, label, score, x1, y1, x2, y2] with kind 0
  // = detection, 1 = ground truth.
  std::vector<float> eval_rows_;
  int64_t eval_images_ = 0;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
};

}  // namespace ostrov::tasks
