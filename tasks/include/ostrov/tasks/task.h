#pragma once
// A task: what ostrov trains, evaluates and runs for one kind of problem (segmentation,
// detection, instance, classification). A task owns its model, builds its datasets and
// transforms from a RunConfig, computes the training objective and the evaluation metrics
// (train::Task), and turns network outputs into Predictions at the input image's size.
//
// Tasks are found by name in a registry (docs/architecture.md "Adding a task"):
//
//   auto config = ostrov::tasks::load_run_config("unet.json");
//   auto task = ostrov::tasks::make_task(config, torch::kCPU);   // the "segmentation" entry
//   auto train_set = task->dataset("train");

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <opencv2/core/mat.hpp>

#include "ostrov/data/dataset.h"
#include "ostrov/data/transforms.h"
#include "ostrov/ops/priors.h"
#include "ostrov/tasks/config.h"
#include "ostrov/tasks/prediction.h"
#include "ostrov/train/trainer.h"

namespace ostrov::tasks {

/// Base of the tasks (segmentation, detection, instance, classification): a train::Task that
/// also builds its datasets and transforms and predicts images. Subclasses build the model.
class Task : public train::Task {
 public:
  /// Keeps `config` and `device`; class names and category ids come from config.data, or
  /// "class <i>" and the labels themselves until a dataset names them.
  Task(RunConfig config, const c10::Device& device);

  /// The run config the task was made from.
  const RunConfig& config() const { return config_; }
  /// The device the model is on and the inputs of predict() must be on.
  const c10::Device& device() const { return device_; }

  /// The dataset of one split ("train" or "val"); ConfigError naming the key when the config
  /// has none or its files are missing. The first dataset built names the classes (and, for
  /// COCO, their category ids) unless the config does.
  virtual std::shared_ptr<data::Dataset> dataset(const std::string& split);
  /// Training (augmenting) or evaluation transforms, normalisation included. The evaluation
  /// transform is also predict's pre-processing: one code path for both.
  virtual std::shared_ptr<const data::Transform> transforms(bool training) const;

  /// The network input's size {H, W} (what the evaluation transform resizes to).
  virtual ops::GridSize input_size() const;
  /// Predictions of a batch: `images` [N,3,H,W] after transforms(false), on device();
  /// `sizes` the N original image sizes the results are mapped back to. The model must be in
  /// eval mode. Safe to call from several threads at once: it changes no state.
  virtual std::vector<Prediction> predict(const at::Tensor& images,
                                          const std::vector<ops::GridSize>& sizes) const = 0;
  /// One image [3,H,W] (RGB in [0,1], not resized, on device()) predicted at its own
  /// resolution by overlapping tiles of input_size() that share `overlap` pixels (U-Net's
  /// overlap-tile strategy). The default throws ostrov::Error: only tasks whose output is a
  /// per-pixel map can stitch tiles.
  virtual Prediction predict_tiled(const at::Tensor& image, int64_t overlap) const;
  /// The prediction drawn over the image (BGR, the prediction's size).
  virtual cv::Mat overlay(const cv::Mat& bgr, const Prediction& prediction) const = 0;
  /// The JSON written beside the image by `ostrov predict` (null: none; segmentation writes
  /// its mask as a PNG instead). Default: {"boxes", "scores", "labels"}.
  virtual nlohmann::json prediction_json(const Prediction& prediction) const;

  /// The config with what training learned about the data (class names, category ids):
  /// what checkpoints store, so that they predict with no config and no data.
  nlohmann::json resolved_config() const;
  /// Names of the contiguous labels 0..num_classes-1.
  const std::vector<std::string>& class_names() const { return class_names_; }
  /// The dataset's category id of each contiguous label (the label itself without one).
  const std::vector<int64_t>& category_ids() const { return category_ids_; }

 protected:
  /// Called by dataset() with each dataset built: takes class names and ids from it when the
  /// config had none. The default reads CocoDataset and ImageFolder.
  virtual void describe_classes(const data::Dataset& dataset);
  /// COCO data: whether samples need class and instance masks (a detector needs none).
  virtual bool needs_masks() const { return true; }

  RunConfig config_;                      ///< what config() returns
  c10::Device device_;                    ///< what device() returns
  std::vector<std::string> class_names_;  ///< what class_names() returns
  std::vector<int64_t> category_ids_;     ///< what category_ids() returns
  /// True once the class names are fixed (by the config or by a dataset already read), so
  /// describe_classes() leaves them alone.
  bool classes_from_config_ = false;
};

/// A task kind in the registry.
struct TaskEntry {
  std::string name;                  ///< the config's `task`
  std::string description;           ///< one line, for --help and docs
  std::string best_metric;           ///< train.best_metric's default
  std::vector<std::string> formats;  ///< data.format values accepted; the first is the default
  /// Builds the task (and its model on the device) from a validated config; required.
  std::function<std::unique_ptr<Task>(const RunConfig&, const c10::Device&)> make;
  /// Optional: check the `model` and the `loss` section without building the model or
  /// reading a file (ConfigError naming the key), so that parse_run_config reports their
  /// problems with the others'.
  std::function<void(const RunConfig&)> validate_model;
  /// Optional, as validate_model, for the `loss` section.
  std::function<void(const RunConfig&)> validate_loss;
  /// For `ostrov config --schema` (tasks/schema.h): the `model.name` values the task builds,
  /// and, when its loss section picks a loss by `loss.name`, those names. Each is probed to
  /// list the keys it reads.
  std::function<std::vector<std::string>()> model_names;
  /// Optional: the `loss.name` values, when the loss section picks a loss by name.
  std::function<std::vector<std::string>()> loss_names;
};

/// Adds a task kind (user tasks too); ostrov::Error when the name is taken.
void register_task(TaskEntry entry);
/// The entry named `name`; ConfigError naming `where` and the known names otherwise.
const TaskEntry& find_task(const std::string& name, const std::string& where = "");
/// The registered names, sorted.
std::vector<std::string> task_names();
/// The task of `config.task` with its model on `device`.
std::unique_ptr<Task> make_task(const RunConfig& config, const c10::Device& device);

/// Training transforms (data.transforms, default resize + horizontal flip) + normalisation;
/// evaluation: resize to data.image_size + ImageNet normalisation.
std::shared_ptr<const data::Transform> default_transforms(const RunConfig& config, bool training);

}  // namespace ostrov::tasks
