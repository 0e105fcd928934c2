#pragma once
// A task's whole run, as `ostrov train` and `ostrov eval` do it, for applications:
//
//   auto config = ostrov::tasks::load_run_config("unet.json");
//   auto result = ostrov::tasks::train(config, ostrov::tasks::TrainRunOptions().out_dir("runs/unet"));
//   auto task = ostrov::tasks::load_task(config, "runs/unet/best.pt", torch::kCPU);
//   nlohmann::json metrics = ostrov::tasks::evaluate(*task);   // {"miou": ..., ...}

#include <memory>
#include <string>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <torch/arg.h>

#include "ostrov/tasks/config.h"
#include "ostrov/tasks/task.h"
#include "ostrov/train/trainer.h"

namespace ostrov::tasks {

/// Options of tasks::train: the run folder and what to do when it holds a run already.
struct TrainRunOptions {
  /// The run folder: last.pt, best.pt, metrics.jsonl, loss.png, config.json, train.log.
  TORCH_ARG(std::string, out_dir) = "runs/latest";
  /// Continue from out_dir/last.pt.
  TORCH_ARG(bool, resume) = false;
  /// Train into a folder that holds files already (they are overwritten).
  TORCH_ARG(bool, force) = false;
};

/// ConfigError when `out_dir` exists and is not empty while neither `resume` nor `force` is
/// set, so that a run is never overwritten by accident.
void check_run_folder(const TrainRunOptions& options);

/// Trains `config`'s task: datasets, loaders, optimizer, schedule and the Trainer, data-parallel
/// when the environment names a rank (RANK/WORLD_SIZE, as torchrun and `ostrov train --nproc`
/// set them). Rank 0 writes config.json (the resolved config, class names included) and
/// train.log (everything the "ostrov" logger printed) into the run folder; the checkpoints
/// carry the resolved config, so they predict with no config and no data.
train::TrainResult train(const RunConfig& config, const TrainRunOptions& options);

/// The task of `config` on `device` with `checkpoint`'s weights, in eval mode. The config's
/// starting weights (model.weights, model.backbone_weights) are not read: the checkpoint
/// replaces every weight. Class names and ids the config lacks come from the checkpoint.
/// IoError naming the file when it is missing, damaged or of another model.
std::unique_ptr<Task> load_task(RunConfig config, const std::string& checkpoint,
                                const c10::Device& device);

/// One evaluation pass over data.val (batch size and workers from config.train): the task's
/// metrics, e.g. {"loss": 0.21, "miou": 0.83, ...}. The network runs in `precision`
/// (autocast; train::parse_precision's checks against the task's device).
nlohmann::json evaluate(Task& task, train::Precision precision = train::Precision::fp32);

}  // namespace ostrov::tasks
