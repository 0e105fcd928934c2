#pragma once
// The Trainer: epochs over a DataLoader, optimizer + LR schedule, gradient clipping,
// evaluation, checkpoints (last + best, atomic), DIR/metrics.jsonl, DIR/loss.png, progress,
// early stopping, a non-finite-loss guard, exact resume and data-parallel gradients.
//
// What is trained is a `Task`: it owns the model, turns a batch into a loss, and accumulates
// evaluation metrics. ostrov's CLI has tasks for segmentation, detection and instances; users
// write their own for anything else.
//
//   MyTask task(model);
//   auto optimizer = ostrov::train::make_optimizer({.name = "adam", .lr = 1e-3}, model->parameters());
//   ostrov::train::Trainer trainer(task, *optimizer, schedule, train_loader, &val_loader,
//                                  ostrov::train::TrainerOptions().epochs(5).out_dir("runs/a"));
//   auto result = trainer.fit();

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <torch/arg.h>
#include <torch/nn/module.h>

#include "ostrov/data/loader.h"
#include "ostrov/data/sample.h"
#include "ostrov/train/optim.h"
#include "ostrov/train/precision.h"

namespace torch::optim {
class Optimizer;
}

namespace ostrov::train {

class DataParallel;

/// What the Trainer trains and evaluates.
class Task {
 public:
  virtual ~Task() = default;
  /// The model whose parameters the optimizer updates (checkpointed by the Trainer).
  virtual torch::nn::Module& model() = 0;
  /// Scalar training loss of a batch already on the model's device (model in train mode).
  virtual at::Tensor loss(const data::Batch& batch) = 0;
  /// Clears the evaluation accumulators.
  virtual void begin_evaluation() = 0;
  /// Accumulates loss and metrics of one batch (model in eval mode, gradients off).
  virtual void evaluate(const data::Batch& batch) = 0;
  /// Sums the accumulators over ranks (called only with world_size > 1).
  virtual void merge(DataParallel& dp) {}
  /// The metrics of the pass, e.g. {"loss": 0.21, "miou": 0.83, "pixel_accuracy": 0.97}.
  virtual nlohmann::json end_evaluation() = 0;
};

/// Options of Trainer (chained setters).
struct TrainerOptions {
  /// Passes over the training loader.
  TORCH_ARG(int64_t, epochs) = 10;
  /// Stop after this many optimizer steps (0: epochs decide).
  TORCH_ARG(int64_t, max_steps) = 0;
  /// Stop (after the current step, then evaluate and save) once this much wall time has
  /// passed (0: no limit). The demo trains for a fixed time this way.
  TORCH_ARG(double, time_limit_s) = 0.0;
  /// Folder for last.pt, best.pt, metrics.jsonl, loss.png ("" writes nothing).
  TORCH_ARG(std::string, out_dir) = "";
  /// Train records (metrics.jsonl and the log) every N steps.
  TORCH_ARG(int64_t, log_every) = 10;
  /// Evaluate every N epochs (and at the end).
  TORCH_ARG(int64_t, eval_every) = 1;
  /// Also write last.pt every N steps (0: at the end of each epoch only).
  TORCH_ARG(int64_t, checkpoint_every) = 0;
  /// Metric of the evaluation that decides best.pt and early stopping.
  TORCH_ARG(std::string, best_metric) = "loss";
  /// Higher is better for best_metric (true for miou, map; false for loss).
  TORCH_ARG(bool, higher_is_better) = false;
  /// Stop after N evaluations without improvement (0: never).
  TORCH_ARG(int64_t, early_stopping) = 0;
  /// Clip the global gradient norm (0: off).
  TORCH_ARG(double, grad_clip) = 0.0;
  /// Continue from out_dir/last.pt (model, optimizer, step, RNG, loader position).
  TORCH_ARG(bool, resume) = false;
  /// The run's config, stored in checkpoints.
  TORCH_ARG(nlohmann::json, config) = nlohmann::json::object();
  /// Device the batches are moved to (the model must already be there).
  TORCH_ARG(c10::Device, device) = c10::Device(c10::kCPU);
  /// Arithmetic of the training forward passes (parse_precision checks it against the device);
  /// evaluations run in float32, so metrics and post-processing see float32 outputs. fp16
  /// scales the loss with a GradScaler: a step whose gradients overflow is skipped, train
  /// records carry `loss_scale` (the scale after the step's update), checkpoints the scaler's
  /// state.
  TORCH_ARG(Precision, precision) = Precision::fp32;
  /// Dynamic loss scaling (GradScaler with torch.amp's defaults) at any precision; fp16 turns it
  /// on whatever this says. With it a step whose loss is not finite is skipped like one whose
  /// gradients overflow (train records carry loss_scale and skipped_steps), and the run stops
  /// when a skip brings the scale below 1 (from 65536: 17 skips in a row).
  TORCH_ARG(bool, loss_scaling) = false;
  /// Progress bar on stderr: "auto" (when stderr is a terminal), "bar", "log".
  TORCH_ARG(std::string, progress) = "auto";
  /// Free bytes out_dir's disk must have before training starts; -1 (default) estimates it
  /// as room for last.pt, best.pt and the temporary copy of an atomic save, each holding the
  /// model and up to two optimizer moments per parameter. fit() fails with ostrov::IoError
  /// before the first step when out_dir cannot be created or written, or is short of space.
  TORCH_ARG(int64_t, min_free_bytes) = -1;
};

/// What one optimizer step did (given to callbacks).
struct StepInfo {
  int64_t step = 0;   ///< 1-based count of optimizer steps so far
  int64_t epoch = 0;  ///< 0-based epoch of the step
  int64_t batch = 0;  ///< index of the batch within the epoch
  int64_t batches_per_epoch = 0;   ///< the training loader's num_batches()
  double loss = 0.0;               ///< training loss of this step's batch
  double lr = 0.0;                 ///< learning rate of this step (first param group)
  double images_per_second = 0.0;  ///< this rank's rate x world_size, over ~1 s windows
};

/// Hooks Trainer::fit() calls on every rank; override the ones you need (the defaults do
/// nothing).
class Callback {
 public:
  virtual ~Callback() = default;
  /// After every optimizer step.
  virtual void on_step(const StepInfo& info) {}
  /// After every evaluation: the 0-based epoch just trained, the step count, the metrics.
  virtual void on_evaluation(int64_t epoch, int64_t step, const nlohmann::json& metrics) {}
};

/// What Trainer::fit() returns.
struct TrainResult {
  int64_t steps = 0;               ///< optimizer steps in all, those before a resume included
  int64_t epochs = 0;              ///< epochs completed
  double seconds = 0.0;            ///< wall time of this fit() call
  nlohmann::json last_evaluation;  ///< metrics of the final evaluation (null if none)
  /// The metrics.jsonl record (epoch, step, split, metrics) of the evaluation best by
  /// best_metric, this call's or one before a resume; null if none.
  nlohmann::json best_evaluation;
  std::string stop_reason;         ///< "epochs", "max_steps", "time_limit", "early_stopping"
  std::vector<double> losses;      ///< training loss of every step of this call
};

/// Runs the training loop described at the top of this header.
class Trainer {
 public:
  /// `val` may be null (no evaluation); `dp` may be null (one process).
  Trainer(Task& task, torch::optim::Optimizer& optimizer, LrSchedule schedule,
          data::DataLoader& train, data::DataLoader* val, TrainerOptions options,
          DataParallel* dp = nullptr);
  /// Adds a callback; callbacks are called in the order added.
  void add_callback(std::shared_ptr<Callback> callback);
  /// Trains; throws ostrov::Error on a non-finite loss (naming the step; last.pt keeps the
  /// last good state) — with loss scaling, when skipped steps bring the loss scale below 1 —
  /// and passes data errors through.
  TrainResult fit();
  /// One evaluation pass over `loader` (model in eval mode, no gradients); merged over ranks.
  nlohmann::json evaluate(data::DataLoader& loader);

 private:
  void save(const std::string& name, int64_t step, int64_t epoch, int64_t batch_in_epoch,
            const nlohmann::json& extra);
  bool is_main() const;

  Task& task_;
  torch::optim::Optimizer& optimizer_;
  LrSchedule schedule_;
  data::DataLoader& train_;
  data::DataLoader* val_;
  TrainerOptions options_;
  DataParallel* dp_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  nlohmann::json best_;
  GradScaler scaler_;
};

/// Moves a batch's tensors to `device`. To a CUDA device each tensor is first copied into
/// page-locked (pinned) host memory unless it is pinned already (LoaderOptions::pin_memory),
/// so that the copy to the GPU is asynchronous (non-blocking) and returns before the GPU has
/// it; other devices copy directly. A CPU device returns the batch.
data::Batch to_device(const data::Batch& batch, const c10::Device& device);

}  // namespace ostrov::train
