#pragma once
// Running a trained model in an application: load a checkpoint written by `ostrov train` (or
// tasks::train) and predict images. The checkpoint is enough: it carries the task, the model,
// the pre-processing, the image size and the class names, so neither the config nor the
// training data is needed.
//
//   auto p = ostrov::tasks::Predictor::load("runs/unet/best.pt", "cpu");  // or "cuda:0"
//   ostrov::tasks::Prediction r = p.predict(cv::imread("scene.png"));    // BGR, any size
//   cv::imwrite("overlay.png", p.overlay(image, r));
//
// Pre-processing is the task's evaluation transform (the one `ostrov eval` measures with):
// the image is resized to input_size() and normalised; results come back at the image's own
// size. predict() may be called from several threads at once: it changes no state.
// With a precision of bf16 (CPU or CUDA) or fp16 (CUDA) the network runs under LibTorch's
// autocast, as in training; the results' tensors come back in float32.

#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <torch/arg.h>
#include <opencv2/core/mat.hpp>

#include "ostrov/data/transforms.h"
#include "ostrov/tasks/config.h"
#include "ostrov/tasks/prediction.h"
#include "ostrov/tasks/task.h"
#include "ostrov/train/precision.h"

namespace ostrov::tasks {

/// How predict() treats one image.
struct PredictOptions {
  /// Segmentation: predict at the image's own resolution by overlapping tiles of input_size()
  /// (U-Net's overlap-tile strategy, for images larger than the training size) instead of
  /// resizing the image to input_size().
  TORCH_ARG(bool, tile) = false;
  /// Pixels neighbouring tiles share; each pixel's result comes from the tile in which it lies
  /// at least overlap/2 pixels from the inner borders (SegmentationTask::predict_tiled).
  TORCH_ARG(int64_t, overlap) = 32;
};

/// A trained task ready to predict images (cv::Mat in, Prediction at the image's size out);
/// see the file comment.
class Predictor {
 public:
  /// The checkpoint's model on `device` in eval mode. ostrov::IoError naming the file when it
  /// is missing, damaged, not an ostrov checkpoint or carries no run config; nothing is half
  /// loaded.
  /// `precision` as the constructor takes it.
  static Predictor load(const std::string& checkpoint,
                        const c10::Device& device = c10::Device(c10::kCPU),
                        train::Precision precision = train::Precision::fp32);
  /// `device` as a string: "cpu", "cuda", "cuda:1", "auto"; `precision`: "fp32", "bf16",
  /// "fp16" (ostrov::ConfigError naming it for another name or one the device lacks).
  static Predictor load(const std::string& checkpoint, const std::string& device,
                        const std::string& precision = "fp32");
  /// With a config that replaces the checkpoint's (`ostrov predict CONFIG --checkpoint F`).
  static Predictor load(const std::string& checkpoint, const RunConfig& config,
                        const c10::Device& device,
                        train::Precision precision = train::Precision::fp32);
  /// Wraps a task whose model is trained already (e.g. right after tasks::train). The network
  /// runs in `precision` (autocast; ostrov::ConfigError for fp16 on the CPU, or bf16/fp16 on a
  /// device type without autocast, as train::parse_precision).
  explicit Predictor(std::shared_ptr<Task> task,
                     train::Precision precision = train::Precision::fp32);

  /// One image: CV_8UC3 BGR, CV_8UC1 grey or CV_8UC4 BGRA (alpha dropped), any size.
  /// ostrov::Error for an empty image or another type, naming it.
  Prediction predict(const cv::Mat& image) const;
  /// With options: `tile` predicts at the image's own resolution (segmentation).
  Prediction predict(const cv::Mat& image, const PredictOptions& options) const;
  /// A batch (one forward pass); images may differ in size.
  std::vector<Prediction> predict(const std::vector<cv::Mat>& images) const;

  /// The prediction drawn over `image` (the image it was predicted from).
  cv::Mat overlay(const cv::Mat& image, const Prediction& prediction) const;
  /// Writes what `ostrov predict` writes for one image into `out_dir`: `<stem>_overlay.png`,
  /// the mask `<stem>.png` (segmentation) or `<stem>.json` (the other tasks). Returns the
  /// names written.
  std::vector<std::string> write(const cv::Mat& image, const Prediction& prediction,
                                 const std::string& stem, const std::string& out_dir) const;

  /// The task name ("segmentation", ...).
  const std::string& task() const { return task_->config().task; }
  /// Names of the contiguous labels 0..C-1 (background first where the task has one).
  const std::vector<std::string>& class_names() const { return task_->class_names(); }
  /// The network input's size {H, W}.
  ops::GridSize input_size() const { return task_->input_size(); }
  /// The run config (the checkpoint's, or the one given to load()).
  const RunConfig& config() const { return task_->config(); }
  /// The device the model runs on.
  const c10::Device& device() const { return task_->device(); }
  /// The precision the network runs in.
  train::Precision precision() const { return precision_; }

 private:
  std::shared_ptr<Task> task_;
  train::Precision precision_ = train::Precision::fp32;
  std::shared_ptr<const data::Transform> preprocess_;
};

}  // namespace ostrov::tasks
