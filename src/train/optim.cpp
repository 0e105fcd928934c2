#include "ostrov/train/optim.h"

#include <algorithm>
#include <cmath>

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"

namespace ostrov::train {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerConfig& c,
                                                        std::vector<at::Tensor> params,
                                                        const std::string& where) {
  if (!(c.lr > 0.0)) throw ConfigError(where + ": lr must be positive, got " + std::to_string(c.lr));
  if (c.weight_decay < 0.0) {
    throw ConfigError(where + ": weight_decay must be >= 0, got " + std::to_string(c.weight_decay));
  }
  if (c.name == "sgd") {
    if (c.nesterov && c.momentum <= 0.0) {
      throw ConfigError(where + ": nesterov needs momentum > 0");
    }
    return std::make_unique<torch::optim::SGD>(
        std::move(params), torch::optim::SGDOptions(c.lr)
                               .momentum(c.momentum)
                               .nesterov(c.nesterov)
                               .weight_decay(c.weight_decay));
  }
  if (c.name == "adam") {
    return std::make_unique<torch::optim::Adam>(
        std::move(params), torch::optim::AdamOptions(c.lr)
                               .betas({c.beta1, c.beta2})
                               .eps(c.eps)
                               .weight_decay(c.weight_decay));
  }
  if (c.name == "adamw") {
    return std::make_unique<torch::optim::AdamW>(
        std::move(params), torch::optim::AdamWOptions(c.lr)
                               .betas({c.beta1, c.beta2})
                               .eps(c.eps)
                               .weight_decay(c.weight_decay));
  }
  throw ConfigError(where + ": unknown optimizer \"" + c.name + "\" (expected sgd, adam or adamw)");
}

LrSchedule::LrSchedule(ScheduleConfig config, double base_lr, int64_t total_steps)
    : config_(std::move(config)), base_lr_(base_lr), total_steps_(std::max<int64_t>(total_steps, 1)) {
  const auto& n = config_.name;
  if (n != "constant" && n != "step" && n != "multistep" && n != "cosine" && n != "poly") {
    throw ConfigError("schedule: unknown name \"" + n +
                      "\" (expected constant, step, multistep, cosine or poly)");
  }
  if (n == "step" && config_.step_size <= 0) {
    throw ConfigError("schedule.step_size must be positive, got " +
                      std::to_string(config_.step_size));
  }
  if (config_.warmup_steps < 0) throw ConfigError("schedule.warmup_steps must be >= 0");
}

double LrSchedule::lr_at(int64_t step) const {
  return lr_at(step, static_cast<double>(std::min(step, total_steps_)) /
                         static_cast<double>(std::max<int64_t>(total_steps_, 1)));
}

double LrSchedule::lr_at(int64_t step, double progress) const {
  const auto& c = config_;
  const double t = std::clamp(progress, 0.0, 1.0);
  const double total = 1.0;
  double lr = base_lr_;
  if (c.name == "step") {
    lr = base_lr_ * std::pow(c.gamma, static_cast<double>(step / c.step_size));
  } else if (c.name == "multistep") {
    int passed = 0;
    for (int64_t m : c.milestones) passed += step >= m ? 1 : 0;
    lr = base_lr_ * std::pow(c.gamma, passed);
  } else if (c.name == "cosine") {
    lr = c.min_lr + (base_lr_ - c.min_lr) * 0.5 * (1.0 + std::cos(M_PI * t / total));
  } else if (c.name == "poly") {
    lr = c.min_lr + (base_lr_ - c.min_lr) * std::pow(1.0 - t / total, c.power);
  }
  if (step < c.warmup_steps) {
    const double alpha = static_cast<double>(step) / static_cast<double>(c.warmup_steps);
    lr *= c.warmup_factor * (1.0 - alpha) + alpha;
  }
  return lr;
}

void LrSchedule::apply(torch::optim::Optimizer& optimizer, int64_t step) const {
  const double lr = lr_at(step);
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

void LrSchedule::apply(torch::optim::Optimizer& optimizer, int64_t step, double progress) const {
  const double lr = lr_at(step, progress);
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

OptimizerConfig optimizer_config_from_json(const nlohmann::json& train, const std::string& where) {
  io::ConfigReader r(train, where, "train");
  OptimizerConfig c;
  c.name = r.get<std::string>("optimizer", c.name);
  c.lr = r.get<double>("lr", c.lr);
  c.momentum = r.get<double>("momentum", c.momentum);
  c.nesterov = r.get<bool>("nesterov", c.nesterov);
  c.weight_decay = r.get<double>("weight_decay", c.weight_decay);
  c.eps = r.get<double>("eps", c.eps);
  const auto betas = r.get<std::vector<double>>("betas", {c.beta1, c.beta2});
  if (betas.size() != 2) throw ConfigError(where + ": train.betas must have 2 numbers");
  c.beta1 = betas[0];
  c.beta2 = betas[1];
  // Checked here as well as in make_optimizer, so that the message names the key path.
  if (c.name != "sgd" && c.name != "adam" && c.name != "adamw") {
    throw ConfigError(where + ": key " + r.path_of("optimizer") + ": unknown optimizer \"" +
                      c.name + "\" (expected sgd, adam or adamw)");
  }
  if (!(c.lr > 0.0)) {
    throw ConfigError(where + ": key " + r.path_of("lr") + " must be positive, got " +
                      nlohmann::json(c.lr).dump());
  }
  if (!(c.weight_decay >= 0.0)) {
    throw ConfigError(where + ": key " + r.path_of("weight_decay") + " must be >= 0, got " +
                      nlohmann::json(c.weight_decay).dump());
  }
  return c;  // other train keys are checked by the caller's reader
}

namespace {

// The checks of LrSchedule's constructor, with messages naming the file and the key path
// (`schedule` is "name" or {"name": ..., ...} under train.schedule).
void check_schedule(const ScheduleConfig& c, const std::string& where, bool object_form) {
  const std::string key = "train.schedule";
  const auto& n = c.name;
  if (n != "constant" && n != "step" && n != "multistep" && n != "cosine" && n != "poly") {
    throw ConfigError(where + ": key " + key + (object_form ? ".name" : "") +
                      ": unknown schedule \"" + n +
                      "\" (expected constant, step, multistep, cosine or poly)");
  }
  if (n == "step" && c.step_size <= 0) {
    throw ConfigError(where + ": key " + key + ".step_size must be positive, got " +
                      std::to_string(c.step_size));
  }
  if (c.warmup_steps < 0) {
    throw ConfigError(where + ": key " + key + ".warmup_steps must be >= 0, got " +
                      std::to_string(c.warmup_steps));
  }
}

}  // namespace

ScheduleConfig schedule_config_from_json(const nlohmann::json& schedule, const std::string& where) {
  ScheduleConfig c;
  if (schedule.is_null()) return c;
  if (schedule.is_string()) {
    c.name = schedule.get<std::string>();
    check_schedule(c, where, /*object_form=*/false);
    return c;
  }
  io::ConfigReader r(schedule, where, "train.schedule");
  c.name = r.get<std::string>("name", c.name);
  c.step_size = r.get<int64_t>("step_size", c.step_size);
  c.milestones = r.get<std::vector<int64_t>>("milestones", c.milestones);
  c.gamma = r.get<double>("gamma", c.gamma);
  c.power = r.get<double>("power", c.power);
  c.min_lr = r.get<double>("min_lr", c.min_lr);
  c.warmup_steps = r.get<int64_t>("warmup_steps", c.warmup_steps);
  c.warmup_factor = r.get<double>("warmup_factor", c.warmup_factor);
  r.finish();
  check_schedule(c, where, /*object_form=*/true);
  return c;
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> with_grad;
  for (const auto& p : params) {
    if (p.grad().defined()) with_grad.push_back(p);
  }
  if (with_grad.empty()) return 0.0;
  if (max_norm <= 0.0) {
    double sq = 0.0;
    for (const auto& p : with_grad) sq += p.grad().pow(2).sum().item<double>();
    return std::sqrt(sq);
  }
  return torch::nn::utils::clip_grad_norm_(with_grad, max_norm);
}

}  // namespace ostrov::train
