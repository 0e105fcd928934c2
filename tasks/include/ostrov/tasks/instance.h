#pragma once
// Task "instance": the models of models::build_instance (model keys are documented there),
// each trained by the InstanceObjective registered under its name, under one config shape,
// all evaluated the same way on COCO instance masks: class-agnostic mask AP (every object is
// "an object", since DeepColoring, Deep Watershed and UNetBorder have no classes), SBD and
// |DiC| (the CVPPP scores).
//
// Losses: deep_coloring {"name": "halo", "margin", "mu"}; deep_watershed "direction" and/or
// "energy" terms (default {"terms": [{"name": "direction"}, {"name": "energy"}]}) on targets
// from the instance masks (losses::watershed_targets); ssd_mask SSDObjective's keys plus
// MaskObjective's (objectives.h); unet_border weighted_cross_entropy (the default, w(x) from
// the instance masks), cross_entropy, soft_dice and/or ce_dice terms on its 3-class or
// foreground target (losses::unet_three_class_target).
// Data: format "coco" with image_size (masks are resized with the image, nearest). Metrics:
// ap50 (COCO AP@0.5 on masks, 101-point), ap (AP@[.5:.95]), ap75, sbd, abs_dic, dic, loss;
// ssd_mask also class_ap50 and class_ap (with its classes, as COCO rates Mask R-CNN).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ostrov/metrics/instance.h"
#include "ostrov/models/instance/build.h"
#include "ostrov/tasks/task.h"

namespace ostrov::tasks {

/// How one instance model kind is trained: its loss on a batch and, in evaluation, the
/// instances it finds in the same pass.
class InstanceObjective {
 public:
  virtual ~InstanceObjective() = default;
  /// The batch's loss for `model` in its current mode; with `found`, also one
  /// InstancePrediction per image (evaluation, model in eval mode).
  virtual at::Tensor loss(const models::InstanceModel& model, const data::Batch& batch,
                          std::vector<models::InstancePrediction>* found) = 0;
  /// Moves the objective's own tensors (loss weights) to `device`.
  virtual void to(const c10::Device& device) { (void)device; }
};

/// The training objective of the instance model registered under `name` (see
/// models::register_instance_model): `make` reads the config's `loss` section (null when
/// absent: the kind's default) and throws ConfigError naming the key for bad ones.
/// Built in: deep_coloring (halo), deep_watershed (direction + energy), ssd_mask (SSDObjective
/// + MaskObjective), unet_border (weighted_cross_entropy).
struct InstanceObjectiveEntry {
  /// Builds the objective from the run config (reads its `loss` section).
  using Make = std::function<std::unique_ptr<InstanceObjective>(const RunConfig& config)>;
  std::string name;  ///< the instance model's name (config `model.name`)
  Make make;         ///< required
};

/// Adds the objective of a user's instance model kind; ostrov::Error when the name is taken.
void register_instance_objective(InstanceObjectiveEntry entry);

/// The objective for `config.model["name"]`; ConfigError naming the key when no objective is
/// registered under it or the `loss` section does not suit it.
std::unique_ptr<InstanceObjective> make_instance_objective(const RunConfig& config);

/// The "instance" task: one mask per object (see the file comment).
class InstanceTask : public Task {
 public:
  /// Builds the instance model of config.model and its objective (make_instance_objective)
  /// on `device`; ConfigError naming the key for bad ones.
  InstanceTask(const RunConfig& config, const c10::Device& device);

  torch::nn::Module& model() override { return *net_.module; }
  at::Tensor loss(const data::Batch& batch) override;
  void begin_evaluation() override;
  void evaluate(const data::Batch& batch) override;
  /// Gathers every rank's per-image results (masks as run-length codes), so the metrics of
  /// N processes equal those of one.
  void merge(train::DataParallel& dp) override;
  nlohmann::json end_evaluation() override;

  std::vector<Prediction> predict(const at::Tensor& images,
                                  const std::vector<ops::GridSize>& sizes) const override;
  /// The objects (ssd_mask: the detections counted as objects, see
  /// models::InstanceNetwork::counted_masks; the JSON keeps every detection with its score).
  cv::Mat overlay(const cv::Mat& bgr, const Prediction& prediction) const override;
  /// {"boxes", "scores", "labels", "masks": [COCO compressed RLE at the input's size]}.
  nlohmann::json prediction_json(const Prediction& prediction) const override;

  /// The instance model (also model()).
  const models::InstanceModel& network() const { return net_; }

 private:
  models::InstanceModel net_;
  std::unique_ptr<InstanceObjective> objective_;
  // Evaluation: per image the predicted and true instances, kept until end_evaluation so
  // that ranks can exchange them.
  struct EvalImage {
    at::Tensor masks, scores, labels;  // predicted, after the class-agnostic selection
    at::Tensor class_masks, class_scores, class_labels;  // ssd_mask: every detection
    at::Tensor counted;                // predicted label image (SBD, DiC)
    at::Tensor truth, truth_labels;
  };
  std::vector<EvalImage> eval_;
  double loss_sum_ = 0.0;
  int64_t loss_count_ = 0;
};

}  // namespace ostrov::tasks
