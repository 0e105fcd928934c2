#pragma once
// Optimizers and learning-rate schedules from JSON, for the Trainer and for users' own loops.
//
//   "train": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": true,
//             "weight_decay": 1e-4,
//             "schedule": {"name": "poly", "power": 0.9, "warmup_steps": 100}}

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

namespace torch::optim {
class Optimizer;
}

namespace ostrov::train {

/// What make_optimizer reads (all but `lr` optional).
struct OptimizerConfig {
  std::string name = "sgd";  ///< "sgd" | "adam" | "adamw"
  double lr = 0.01;           ///< base learning rate (> 0), before the schedule
  double momentum = 0.9;      ///< sgd
  bool nesterov = false;      ///< sgd
  double weight_decay = 0.0;  ///< >= 0; L2 penalty (sgd, adam), decoupled decay (adamw)
  double beta1 = 0.9;         ///< adam, adamw
  double beta2 = 0.999;       ///< adam, adamw
  double eps = 1e-8;          ///< adam, adamw
};

/// Makes torch::optim::SGD / Adam / AdamW over `params`. ConfigError for an unknown name or a
/// non-positive lr, naming `where`.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& config,
                                                        std::vector<at::Tensor> params,
                                                        const std::string& where = "optimizer");

/// Learning rate as a function of the global step (0-based), multiplied onto the base lr:
///   constant; step (× gamma every step_size steps); multistep (× gamma at each milestone);
///   cosine (min_lr + (lr - min_lr)(1 + cos(pi t/T))/2); poly ((1 - t/T)^power, PSPNet);
/// with an optional linear warm-up from warmup_factor×lr over warmup_steps.
struct ScheduleConfig {
  std::string name = "constant";  ///< constant | step | multistep | cosine | poly
  int64_t step_size = 1000;         ///< step: steps between two decays by gamma (> 0)
  std::vector<int64_t> milestones;  ///< multistep: the steps at which lr decays by gamma
  double gamma = 0.1;               ///< step, multistep: factor of each decay
  double power = 0.9;               ///< poly: the exponent
  double min_lr = 0.0;              ///< cosine, poly: the lr at the end of the run
  int64_t warmup_steps = 0;         ///< steps of linear warm-up, any schedule (0 = none)
  double warmup_factor = 0.001;     ///< lr multiplier at step 0 of the warm-up, rising to 1
};

/// A ScheduleConfig bound to a base lr and a run length: the learning rate at each step.
class LrSchedule {
 public:
  /// `total_steps` is T of cosine and poly (at least 1 is used). ostrov::ConfigError for an
  /// unknown name, step_size <= 0 with "step", or warmup_steps < 0.
  LrSchedule(ScheduleConfig config, double base_lr, int64_t total_steps);
  /// The learning rate for `step` (progress step / total_steps).
  double lr_at(int64_t step) const;
  /// The learning rate at `progress` in [0,1] of the run (cosine and poly anneal over it; step,
  /// multistep and the warmup count steps): the Trainer passes elapsed / time_limit_s when a
  /// time budget runs out before the steps do, so a run stopped by its limit ends annealed.
  double lr_at(int64_t step, double progress) const;
  /// Sets every param group's lr to lr_at(step).
  void apply(torch::optim::Optimizer& optimizer, int64_t step) const;
  /// Sets every param group's lr to lr_at(step, progress).
  void apply(torch::optim::Optimizer& optimizer, int64_t step, double progress) const;
  /// The configuration given to the constructor.
  const ScheduleConfig& config() const { return config_; }

 private:
  ScheduleConfig config_;
  double base_lr_;
  int64_t total_steps_;
};

/// Reads the optimizer keys of a `train` section (optimizer, lr, momentum, nesterov,
/// weight_decay, betas, eps; other keys are left to the caller), and schedule_config_from_json
/// its `schedule` (a name, an object, or null for constant). ostrov::ConfigError naming `where`
/// (the file) and the key path (`train.lr`, `train.schedule.name`) for a wrong type, an unknown
/// schedule key, an unknown optimizer or schedule name, a non-positive lr or step_size, or a
/// negative weight_decay or warmup_steps.
OptimizerConfig optimizer_config_from_json(const nlohmann::json& train, const std::string& where);
ScheduleConfig schedule_config_from_json(const nlohmann::json& schedule, const std::string& where);

/// Global L2 norm of the gradients of `params`, clipped to `max_norm` (torch's
/// clip_grad_norm_); returns the norm before clipping. max_norm <= 0 only measures.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace ostrov::train
