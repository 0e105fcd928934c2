#include "ostrov/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "ostrov/core/error.h"
#include "ostrov/core/progress.h"
#include "ostrov/core/runtime.h"
#include "ostrov/io/checkpoint.h"
#include "ostrov/train/distributed.h"
#include "ostrov/train/history.h"

namespace fs = std::filesystem;

namespace ostrov::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

using core::format_duration;

// One-line progress on stderr, redrawn in place on a terminal.
class Progress {
 public:
  Progress(bool bar, int64_t log_every, double time_limit)
      : bar_(bar), log_every_(log_every), time_limit_(time_limit) {}
  void update(const StepInfo& info, int64_t total_steps, double elapsed) {
    double eta = info.step > 0 && total_steps > 0
                     ? elapsed / static_cast<double>(info.step) *
                           static_cast<double>(total_steps - info.step)
                     : 0.0;
    if (time_limit_ > 0.0) eta = std::min(eta, std::max(0.0, time_limit_ - elapsed));
    if (bar_) {
      const int width = 24;
      const double frac = total_steps > 0 ? static_cast<double>(info.step) / total_steps : 0.0;
      const int filled = static_cast<int>(frac * width);
      std::fprintf(stderr, "\r[%s%s] step %lld/%lld epoch %lld  loss %.4f  %.1f img/s  ETA %s ",
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   static_cast<long long>(info.step), static_cast<long long>(total_steps),
                   static_cast<long long>(info.epoch), info.loss, info.images_per_second,
                   format_duration(eta).c_str());
      std::fflush(stderr);
    } else if (log_every_ > 0 && info.step % log_every_ == 0) {
      core::logger()->info("step {}/{} epoch {} loss {:.4f} lr {:.3g} {:.1f} img/s ETA {}",
                           info.step, total_steps, info.epoch, info.loss, info.lr,
                           info.images_per_second, format_duration(eta));
    }
  }
  void end_line() {
    if (bar_) std::fprintf(stderr, "\n");
  }

 private:
  bool bar_;
  int64_t log_every_;
  double time_limit_;
};

std::string mib(double bytes) { return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024.0)); }

// Fails before training when `dir` cannot hold the checkpoints: it cannot be created, a file
// cannot be written there, or its disk has less than `needed` bytes free.
void check_output_dir(const fs::path& dir, int64_t needed) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir.string() + ": cannot create the output folder: " + ec.message());
  const fs::path probe = dir / ".ostrov-write-test";
  {
    std::FILE* f = std::fopen(probe.c_str(), "wb");
    const bool ok = f != nullptr && std::fputs("ostrov", f) >= 0 && std::fflush(f) == 0;
    const int err = errno;
    if (f != nullptr) std::fclose(f);
    fs::remove(probe, ec);
    if (!ok) {
      throw IoError(dir.string() + ": the output folder is not writable (" +
                    std::strerror(err) + "); choose another with --out");
    }
  }
  const auto space = fs::space(dir, ec);
  if (!ec && static_cast<double>(space.available) < static_cast<double>(needed)) {
    throw IoError(dir.string() + ": only " + mib(static_cast<double>(space.available)) +
                  " free on its disk, the checkpoints of this run need about " +
                  mib(static_cast<double>(needed)) + "; free space or choose another --out");
  }
}

bool better(double candidate, double best, bool higher) {
  return higher ? candidate > best : candidate < best;
}

}  // namespace

data::Batch to_device(const data::Batch& batch, const c10::Device& device) {
  if (device.is_cpu()) return batch;
  data::Batch out = batch;
  const bool pin = device.is_cuda();
  auto move = [&](at::Tensor& t) {
    if (!t.defined()) return;
    if (pin && t.is_cpu() && !t.is_pinned()) t = t.pin_memory();
    t = t.to(device, /*non_blocking=*/true);
  };
  move(out.images);
  move(out.masks);
  for (auto* list : {&out.instances, &out.boxes, &out.labels}) {
    for (auto& t : *list) move(t);
  }
  return out;
}

Trainer::Trainer(Task& task, torch::optim::Optimizer& optimizer, LrSchedule schedule,
                 data::DataLoader& train, data::DataLoader* val, TrainerOptions options,
                 DataParallel* dp)
    : task_(task),
      optimizer_(optimizer),
      schedule_(std::move(schedule)),
      train_(train),
      val_(val),
      options_(std::move(options)),
      dp_(dp),
      scaler_(GradScalerOptions().enabled(options_.loss_scaling() ||
                                          options_.precision() == Precision::fp16)) {
  TORCH_CHECK(options_.epochs() > 0 || options_.max_steps() > 0,
              "Trainer: epochs or max_steps must be positive");
}

void Trainer::add_callback(std::shared_ptr<Callback> callback) {
  callbacks_.push_back(std::move(callback));
}

bool Trainer::is_main() const { return dp_ == nullptr || dp_->is_main(); }

void Trainer::save(const std::string& name, int64_t step, int64_t epoch, int64_t batch_in_epoch,
                   const nlohmann::json& extra) {
  if (options_.out_dir().empty() || !is_main()) return;
  io::CheckpointMeta meta;
  meta.step = step;
  meta.epoch = epoch;
  meta.config = options_.config();
  meta.extra = extra;
  meta.extra["batch_in_epoch"] = batch_in_epoch;
  meta.extra["best"] = best_;
  if (scaler_.enabled()) meta.extra["grad_scaler"] = scaler_.state();
  io::save_checkpoint((fs::path(options_.out_dir()) / name).string(), task_.model(), &optimizer_,
                      meta);
}

nlohmann::json Trainer::evaluate(data::DataLoader& loader) {
  auto& model = task_.model();
  const bool was_training = model.is_training();
  model.eval();
  // Gradients are averaged but buffers (batch-norm statistics) are each rank's own: every rank
  // evaluates rank 0's model, the one its checkpoints hold (DDP's broadcast_buffers).
  if (dp_ != nullptr && dp_->world_size() > 1) dp_->broadcast_module(model);
  nlohmann::json metrics;
  {
    torch::NoGradGuard no_grad;
    task_.begin_evaluation();
    loader.set_epoch(0);
    while (auto batch = loader.next()) task_.evaluate(to_device(*batch, options_.device()));
    if (dp_ != nullptr && dp_->world_size() > 1) task_.merge(*dp_);
    metrics = task_.end_evaluation();
  }
  model.train(was_training);
  return metrics;
}

TrainResult Trainer::fit() {
  const auto start = Clock::now();
  TrainResult result;
  auto& model = task_.model();
  const int64_t batches_per_epoch = train_.num_batches();
  if (batches_per_epoch <= 0) {
    throw DataError("Trainer: the training loader has no batches (empty dataset, or fewer samples "
                    "than batch_size with drop_last)");
  }
  const int64_t total_steps = options_.max_steps() > 0
                                  ? options_.max_steps()
                                  : options_.epochs() * batches_per_epoch;
  const bool write = !options_.out_dir().empty() && is_main();
  const fs::path dir(options_.out_dir());
  if (write) {
    int64_t needed = options_.min_free_bytes();
    if (needed < 0) {
      int64_t model_bytes = 0;
      for (const auto& t : model.parameters()) model_bytes += t.numel() * t.element_size();
      for (const auto& t : model.buffers()) model_bytes += t.numel() * t.element_size();
      needed = 3 * 3 * model_bytes;  // 3 files, each weights + 2 optimizer moments
    }
    check_output_dir(dir, needed);
  }

  int64_t step = 0, first_epoch = 0, skip = 0, restored_evals_without_improvement = 0;
  bool evaluation_pending = false;
  best_ = nullptr;
  if (options_.resume()) {
    const std::string last = (dir / "last.pt").string();
    if (!fs::exists(last)) throw IoError(last + ": no checkpoint to resume from");
    const auto meta = io::load_checkpoint(last, model, &optimizer_, /*restore_rng=*/true);
    step = meta.step;
    first_epoch = meta.epoch;
    skip = meta.extra.value("batch_in_epoch", int64_t{0});
    best_ = meta.extra.value("best", nlohmann::json());
    evaluation_pending = meta.extra.value("evaluation_pending", false);
    restored_evals_without_improvement =
        meta.extra.value("counters", nlohmann::json::object()).value("evals_without_improvement", int64_t{0});
    if (scaler_.enabled() && meta.extra.contains("grad_scaler")) {
      scaler_.load_state(meta.extra["grad_scaler"]);
    }
    core::logger()->info("resuming from {} at step {} (epoch {}, batch {})", last, step,
                         first_epoch, skip);
  }
  std::unique_ptr<History> history;
  if (write) {
    history = std::make_unique<History>((dir / "metrics.jsonl").string(), options_.resume());
    // A pending evaluation is run again: drop its record if it was written before the stop.
    if (options_.resume()) history->truncate_after(step, /*keep_evaluations_at_step=*/!evaluation_pending);
  }
  if (dp_ != nullptr) dp_->broadcast_module(model);

  const bool bar = options_.progress() == "bar" ||
                   (options_.progress() == "auto" && ::isatty(STDERR_FILENO) && is_main());
  Progress progress(bar, is_main() ? options_.log_every() : 0, options_.time_limit_s());
  std::vector<at::Tensor> params = model.parameters();
  int64_t evals_without_improvement = restored_evals_without_improvement;
  std::string stop;
  double loss_sum = 0.0;
  int64_t loss_count = 0;
  int64_t skipped_in_a_row = 0;
  auto window_start = Clock::now();
  int64_t window_images = 0;
  double images_per_second = 0.0;
  const int64_t last_epoch = options_.max_steps() > 0 && options_.epochs() <= 0
                                 ? std::numeric_limits<int64_t>::max()
                                 : std::max<int64_t>(options_.epochs(), 1);

  model.train();
  for (int64_t epoch = first_epoch; epoch < last_epoch && stop.empty(); ++epoch) {
    train_.set_epoch(epoch);
    int64_t b = 0;
    bool epoch_complete = true;
    while (auto batch = train_.next()) {
      if (b < skip) {  // resume inside an epoch: the loader order is a function of the epoch
        ++b;
        continue;
      }
      if (options_.max_steps() > 0 && step >= options_.max_steps()) {
        stop = "max_steps";
        epoch_complete = false;
        break;
      }
      const data::Batch on_device = to_device(*batch, options_.device());
      // With a time budget the schedule's progress is by steps or by time, whichever is
      // further, so a run stopped by train.time_limit_s ends its cosine/poly annealed.
      // (cosine and poly fall with progress, so the further one gives the lower rate).
      const double by_time =
          options_.time_limit_s() > 0.0
              ? std::min(seconds_since(start) / options_.time_limit_s(), 1.0)
              : 0.0;
      if (by_time > 0.0 && schedule_.lr_at(step, by_time) < schedule_.lr_at(step)) {
        schedule_.apply(optimizer_, step, by_time);
      } else {
        schedule_.apply(optimizer_, step);
      }
      optimizer_.zero_grad();
      at::Tensor loss;
      {
        AutocastGuard autocast(options_.device(), options_.precision());
        loss = task_.loss(on_device);
      }
      const double value = loss.item<double>();
      const bool finite_loss = std::isfinite(value);
      // The error messages' parts, built only when a run stops.
      const auto where = [&] {
        return "at step " + std::to_string(step + 1) + " (epoch " + std::to_string(epoch) +
               ", batch " + std::to_string(b) + ")";
      };
      const auto advice = [&] {
        return (write ? ", " + (dir / "last.pt").string() + " keeps the last good state"
                      : std::string()) +
               ". Lower the learning rate or check the data.";
      };
      if (!finite_loss && !scaler_.enabled()) {
        progress.end_line();
        throw Error("non-finite training loss (" + std::to_string(value) + ") " + where() +
                    "; training stopped" + advice());
      }
      if (finite_loss) {
        scaler_.scale(loss).backward();
      } else {
        // With loss scaling a non-finite loss (a float16 forward pass that overflowed) is
        // skipped as torch.amp's loop skips it: NaN gradients make unscale() find the overflow
        // on every rank after the average, so all ranks skip this step together and halve the
        // scale (a rank that skipped alone would leave the others' parameters behind).
        core::logger()->warn("step {}: non-finite loss ({}) at loss scale {}; step skipped",
                             step + 1, value, scaler_.scale_value());
        for (auto& p : params) {
          if (p.requires_grad()) {
            p.mutable_grad() = at::full_like(p, std::numeric_limits<double>::quiet_NaN());
          }
        }
      }
      if (dp_ != nullptr) dp_->average_gradients(model);
      // fp16: the gradients are unscaled before clipping; a step whose gradients overflowed is
      // skipped on every rank alike (they hold the same averaged gradients) and lowers the scale.
      const bool finite = !scaler_.enabled() || scaler_.unscale(params);
      if (finite) {
        if (options_.grad_clip() > 0.0) clip_grad_norm(params, options_.grad_clip());
        optimizer_.step();
        skipped_in_a_row = 0;
      } else {
        ++skipped_in_a_row;
        core::logger()->debug("step {}: gradients overflowed at loss scale {}; step skipped",
                              step + 1, scaler_.scale_value());
      }
      scaler_.update();
      // Skipping lowers the scale; once it is below 1 the float16 gradients overflow unscaled,
      // which no further skip can mend: the model diverged. Every rank sees the same averaged
      // gradients, so every rank stops here together.
      if (!finite && scaler_.scale_value() < 1.0) {
        progress.end_line();
        throw Error("non-finite gradients or losses " + where() + ", " +
                    std::to_string(skipped_in_a_row) + " steps in a row skipped (this rank's loss " +
                    std::to_string(value) + "), and the loss scale fell to " +
                    fmt::format("{}", scaler_.scale_value()) + " (below 1); training stopped" +
                    advice());
      }
      ++step;
      ++b;
      result.losses.push_back(value);
      if (finite_loss) {  // a skipped step's loss stays out of the logged mean
        loss_sum += value;
        ++loss_count;
      }
      window_images += on_device.size();
      const double window = seconds_since(window_start);
      if (window >= 1.0 || step == 1) {
        images_per_second = static_cast<double>(window_images) * (dp_ ? dp_->world_size() : 1) /
                            std::max(window, 1e-9);
        window_start = Clock::now();
        window_images = 0;
      }
      StepInfo info{step, epoch, b - 1, batches_per_epoch, value,
                    optimizer_.param_groups()[0].options().get_lr(), images_per_second};
      for (auto& cb : callbacks_) cb->on_step(info);
      progress.update(info, total_steps, seconds_since(start));
      if (history && options_.log_every() > 0 && step % options_.log_every() == 0) {
        nlohmann::json record = {{"epoch", epoch},
                                 {"step", step},
                                 {"split", "train"},
                                 {"loss", loss_count > 0
                                              ? loss_sum / static_cast<double>(loss_count)
                                              : std::numeric_limits<double>::quiet_NaN()},
                                 {"lr", info.lr},
                                 {"images_per_second", images_per_second}};
        if (scaler_.enabled()) {
          record["loss_scale"] = scaler_.scale_value();
          record["skipped_steps"] = scaler_.skipped_steps();
        }
        history->append(record);
        loss_sum = 0.0;
        loss_count = 0;
      }
      if (options_.checkpoint_every() > 0 && step % options_.checkpoint_every() == 0) {
        save("last.pt", step, epoch, b, {});
      }
      if (options_.time_limit_s() > 0.0 && seconds_since(start) >= options_.time_limit_s()) {
        stop = "time_limit";
      } else if (options_.max_steps() > 0 && step >= options_.max_steps()) {
        stop = "max_steps";
      }
      if (!stop.empty()) {
        epoch_complete = b >= batches_per_epoch;
        break;
      }
    }
    skip = 0;
    if (epoch_complete) result.epochs = epoch + 1;
    // Where a resume continues: the next epoch, or the next batch of this one.
    const int64_t resume_epoch = epoch_complete ? epoch + 1 : epoch;
    const int64_t resume_batch = epoch_complete ? 0 : b;
    // What a resume needs besides the model: the early-stopping counter as it is when saved.
    const auto counters = [&] {
      return nlohmann::json{{"evals_without_improvement", evals_without_improvement}};
    };

    const bool final_epoch = !stop.empty() || epoch + 1 >= last_epoch;
    if (val_ != nullptr && (final_epoch || (epoch + 1) % std::max<int64_t>(options_.eval_every(), 1) == 0)) {
      // Until the evaluation is recorded, a resume re-enters this epoch after its last batch
      // and evaluates again, so a crash during evaluation loses no evaluation.
      save("last.pt", step, epoch, b, {{"evaluation_pending", true}, {"counters", counters()}});
      progress.end_line();
      nlohmann::json metrics = evaluate(*val_);
      result.last_evaluation = metrics;
      for (auto& cb : callbacks_) cb->on_evaluation(epoch, step, metrics);
      nlohmann::json record = {{"epoch", epoch}, {"step", step}, {"split", "val"}};
      record.update(metrics);
      if (is_main()) {
        core::logger()->info("evaluation after epoch {} (step {}): {}", epoch, step, metrics.dump());
      }
      if (history) history->append(record);
      const auto& key = options_.best_metric();
      if (!metrics.contains(key) || !metrics[key].is_number()) {
        throw ConfigError("best metric \"" + key + "\" is not among the evaluation's metrics " +
                          metrics.dump());
      }
      const double value = metrics[key].get<double>();
      if (best_.is_null() || better(value, best_[key].get<double>(), options_.higher_is_better())) {
        best_ = record;
        evals_without_improvement = 0;
        save("best.pt", step, resume_epoch, resume_batch, {{"metrics", metrics}});
      } else {
        ++evals_without_improvement;
      }
      if (history) plot_history(history->records(), (dir / "loss.png").string(), key);
      if (options_.early_stopping() > 0 && evals_without_improvement >= options_.early_stopping() &&
          stop.empty()) {
        stop = "early_stopping";
      }
    } else if (history && final_epoch) {
      plot_history(history->records(), (dir / "loss.png").string());
    }
    save("last.pt", step, resume_epoch, resume_batch, {{"counters", counters()}});  // and a new best
  }
  progress.end_line();
  if (stop.empty() && options_.time_limit_s() > 0.0 && is_main()) {
    core::logger()->info("the {} epochs ended after {} of the {} time budget (train.time_limit_s); "
                         "raise train.epochs to use all of it",
                         options_.epochs(), format_duration(seconds_since(start)),
                         format_duration(options_.time_limit_s()));
  }
  result.steps = step;
  result.best_evaluation = best_;
  result.stop_reason = stop.empty() ? "epochs" : stop;
  result.seconds = seconds_since(start);
  return result;
}

}  // namespace ostrov::train
