#pragma once
// What `ostrov train/eval/predict` need from a task beyond train::Task: its datasets and
// transforms, and writing the prediction files of one image. make_task picks the task named by
// the config's top-level `task`; make_dataset and make_transforms are the data side the tasks
// share.

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include <c10/core/Device.h>
#include <opencv2/core/mat.hpp>

#include "ostrov/core/image.h"
#include "ostrov/data/dataset.h"
#include "ostrov/data/transforms.h"
#include "ostrov/train/trainer.h"
#include "run_config.h"

namespace ostrov::cli {

class CliTask : public train::Task {
 public:
  /// The dataset of one split ("train" or "val"); ConfigError when the config has none.
  virtual std::shared_ptr<data::Dataset> dataset(const std::string& split) const = 0;
  /// Training (augmenting) or evaluation transforms, normalisation included.
  virtual std::shared_ptr<const data::Transform> transforms(bool training) const = 0;
  /// Runs the model (in eval mode, inference mode on) on one BGR image read from a file and
  /// writes `<stem>_overlay.png` and the task's own files into `out_dir`; returns the names
  /// written.
  virtual std::vector<std::string> predict_image(const cv::Mat& bgr, const std::string& stem,
                                                 const std::string& out_dir) = 0;
};

/// The network input of one BGR image read from a file: resized (bilinear) to height x width,
/// RGB in [0,1], normalised with mean/std -> [1,3,height,width] on `device`.
at::Tensor network_input(const cv::Mat& bgr, int64_t height, int64_t width,
                         const c10::Device& device,
                         const std::vector<double>& mean = core::kImageNetMean,
                         const std::vector<double>& std = core::kImageNetStd);

/// The dataset of one split ("train" or "val") of a run config; ConfigError when absent.
/// `masks` = false: COCO samples without class and instance masks (detection).
std::shared_ptr<data::Dataset> make_dataset(const RunConfig& config, const std::string& split,
                                            bool masks = true);
/// Training transforms (data.transforms, default resize + horizontal flip) + normalisation;
/// evaluation: resize + normalisation.
std::shared_ptr<const data::Transform> make_transforms(const RunConfig& config, bool training);

/// The task of `config.task` ("segmentation", "detection", "instance" or "classification") with its model on
/// `device`.
std::unique_ptr<CliTask> make_task(const RunConfig& config, const c10::Device& device);

}  // namespace ostrov::cli
