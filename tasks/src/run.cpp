#include "ostrov/tasks/run.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>

#include <c10/core/InferenceMode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <torch/optim/optimizer.h>

#include "ostrov/core/device.h"
#include "ostrov/core/error.h"
#include "ostrov/core/progress.h"
#include "ostrov/core/random.h"
#include "ostrov/core/runtime.h"
#include "ostrov/data/loader.h"
#include "ostrov/io/checkpoint.h"
#include "ostrov/io/json.h"
#include "ostrov/train/distributed.h"
#include "ostrov/train/optim.h"
#include "ostrov/train/precision.h"

namespace fs = std::filesystem;

namespace ostrov::tasks {

namespace {

// What the "ostrov" logger prints while it lives: kept in memory until open() names the file,
// then written there, so that a run that fails before its first step leaves no file behind.
class RunLog : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void open(const std::string& path) {
    std::lock_guard<std::mutex> lock(mutex_);
    file_.open(path, std::ios::app);
    if (!file_) throw IoError(path + ": cannot write the run's log");
    file_ << buffer_;
    buffer_.clear();
    file_.flush();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    if (file_.is_open()) {
      file_.write(formatted.data(), static_cast<std::streamsize>(formatted.size()));
    } else {
      buffer_.append(formatted.data(), formatted.size());
    }
  }
  void flush_() override {
    if (file_.is_open()) file_.flush();
  }

 private:
  std::string buffer_;
  std::ofstream file_;
};

// Adds a sink to the "ostrov" logger while it lives.
class AttachedSink {
 public:
  explicit AttachedSink(std::shared_ptr<spdlog::sinks::sink> sink) : sink_(std::move(sink)) {
    sink_->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
    core::logger()->sinks().push_back(sink_);
  }
  ~AttachedSink() {
    auto& sinks = core::logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  AttachedSink(const AttachedSink&) = delete;
  AttachedSink& operator=(const AttachedSink&) = delete;

 private:
  std::shared_ptr<spdlog::sinks::sink> sink_;
};

// Writes config.json and opens train.log once the run has made a step (or finished).
class RunFiles : public train::Callback {
 public:
  RunFiles(std::string dir, nlohmann::json config, std::shared_ptr<RunLog> log)
      : dir_(std::move(dir)), config_(std::move(config)), log_(std::move(log)) {}
  void on_step(const train::StepInfo&) override { write(); }
  void write() {
    if (written_) return;
    written_ = true;
    io::write_json((fs::path(dir_) / "config.json").string(), config_);
    log_->open((fs::path(dir_) / "train.log").string());
  }

 private:
  std::string dir_;
  nlohmann::json config_;
  std::shared_ptr<RunLog> log_;
  bool written_ = false;
};

}  // namespace

void check_run_folder(const TrainRunOptions& options) {
  const auto& dir = options.out_dir();
  if (options.resume() || options.force() || !fs::is_directory(dir) || fs::is_empty(dir)) return;
  throw ConfigError(dir + ": the run folder holds files already; pass --resume to continue "
                          "its run or --force to train over it");
}

train::TrainResult train(const RunConfig& config, const TrainRunOptions& options) {
  const auto env = train::DistributedEnv::from_environment();
  if (env.rank == 0) check_run_folder(options);
  const c10::Device device = train::rank_device(config_device(config), config.train.device, env);
  // This rank's GPU becomes the current device (torch.cuda.set_device(local_rank) in a
  // torchrun script), so what uses the current device — new streams, c10d — lands on it too.
  // Through the device-guard registry, which a CPU-only LibTorch also compiles against.
  if (device.is_cuda()) c10::impl::getDeviceGuardImpl(device.type())->setDevice(device);
  const train::Precision precision =
      train::parse_precision(config.train.precision, device, config.path + ": train.precision");
  const std::string backend = train::collective_backend(
      config.train.distributed_backend, device, config.path + ": train.distributed_backend",
      device.is_cuda() && train::ranks_share_device(config.train.device, env));
  core::set_num_threads(config.train.threads > 0
                            ? static_cast<int>(config.train.threads)
                            : std::max(1, core::available_cores() / env.world_size));
  core::seed_everything(config.train.seed);

  auto task = make_task(config, device);
  auto train_set = task->dataset("train");
  std::shared_ptr<data::Dataset> val_set;
  if (!config.data.val.empty()) val_set = task->dataset("val");
  data::DataLoader train_loader(
      train_set, data::LoaderOptions(config.train.batch_size)
                     .shuffle(true)
                     .drop_last(true)
                     .workers(config.train.workers)
                     .seed(config.train.seed)
                     .transform(task->transforms(/*training=*/true))
                     .rank(env.rank)
                     .world_size(env.world_size)
                     .pin_memory(device.is_cuda()));
  std::unique_ptr<data::DataLoader> val_loader;
  if (val_set) {
    val_loader = std::make_unique<data::DataLoader>(
        val_set, data::LoaderOptions(config.train.batch_size)
                     .workers(config.train.workers)
                     .transform(task->transforms(/*training=*/false))
                     .rank(env.rank)
                     .world_size(env.world_size)
                     .pin_memory(device.is_cuda()));
  }
  auto optimizer = train::make_optimizer(config.train.optimizer, task->model().parameters(),
                                         config.path + ": train");
  const int64_t total_steps = config.train.max_steps > 0
                                  ? config.train.max_steps
                                  : config.train.epochs * train_loader.num_batches();
  train::LrSchedule schedule(config.train.schedule, config.train.optimizer.lr, total_steps);
  train::DataParallel dp(
      env, train::DataParallelOptions()
               .timeout(std::chrono::milliseconds(
                   static_cast<int64_t>(config.train.distributed_timeout_s * 1000.0)))
               .backend(backend)
               .device(device));

  const auto resolved = task->resolved_config();
  const std::string& best = config.train.best_metric;
  train::Trainer trainer(*task, *optimizer, schedule, train_loader, val_loader.get(),
                         train::TrainerOptions()
                             .epochs(config.train.epochs)
                             .max_steps(config.train.max_steps)
                             .time_limit_s(config.train.time_limit_s)
                             .out_dir(options.out_dir())
                             .log_every(config.train.log_every)
                             .eval_every(config.train.eval_every)
                             .checkpoint_every(config.train.checkpoint_every)
                             .best_metric(val_loader ? best : "loss")
                             .higher_is_better(val_loader && best != "loss")
                             .early_stopping(config.train.early_stopping)
                             .grad_clip(config.train.grad_clip)
                             .resume(options.resume())
                             .config(resolved)
                             .device(device)
                             .precision(precision),
                         &dp);
  std::unique_ptr<AttachedSink> attached;
  std::shared_ptr<RunFiles> files;
  if (dp.is_main()) {
    auto log = std::make_shared<RunLog>();
    attached = std::make_unique<AttachedSink>(log);
    files = std::make_shared<RunFiles>(options.out_dir(), resolved, log);
    trainer.add_callback(files);
  }
  const auto result = trainer.fit();
  if (files) files->write();  // also when the run had no step left (a resume at its end)
  if (dp.is_main()) {
    core::logger()->info("trained {} steps ({} epochs, {:.1f} s, stopped by {}); final: {}",
                         result.steps, result.epochs, result.seconds, result.stop_reason,
                         result.last_evaluation.dump());
    core::logger()->info("wrote {}/last.pt, best.pt, metrics.jsonl, loss.png, config.json, "
                         "train.log", options.out_dir());
  }
  return result;
}

std::unique_ptr<Task> load_task(RunConfig config, const std::string& checkpoint,
                                const c10::Device& device) {
  if (!fs::is_regular_file(checkpoint)) throw IoError(checkpoint + ": no such checkpoint file");
  if (config.model.is_object()) {
    config.model.erase("weights");
    config.model.erase("backbone_weights");
    config.json["model"] = config.model;
  }
  if (config.data.class_names.empty()) {
    const auto stored = io::read_checkpoint_meta(checkpoint).config;
    if (stored.is_object() && stored.contains("data") && stored["data"].is_object()) {
      const auto& data = stored["data"];
      const auto n = static_cast<size_t>(config.data.num_classes);
      if (data.contains("class_names") && data["class_names"].size() == n &&
          data.contains("category_ids") && data["category_ids"].size() == n) {
        config.data.class_names = data["class_names"].get<std::vector<std::string>>();
        config.data.category_ids = data["category_ids"].get<std::vector<int64_t>>();
        config.json["data"]["class_names"] = data["class_names"];
        config.json["data"]["category_ids"] = data["category_ids"];
      }
    }
  }
  const bool named = !config.data.class_names.empty();
  auto task = make_task(config, device);
  io::load_checkpoint(checkpoint, task->model());
  task->model().eval();
  if (!named) {
    // A checkpoint from before checkpoints carried class names: ask the config's data, if any.
    for (const char* split : {"val", "train"}) {
      const auto& s = std::string(split) == "val" ? config.data.val : config.data.train;
      if (s.empty()) continue;
      try {
        task->dataset(split);
        break;
      } catch (const Error&) {
        // The data is gone: predictions then report contiguous labels.
      }
    }
  }
  return task;
}

nlohmann::json evaluate(Task& task, train::Precision precision) {
  train::parse_precision(train::precision_name(precision), task.device(), "eval: precision");
  const auto& config = task.config();
  const auto dataset = task.dataset("val");
  data::DataLoader loader(dataset,
                          data::LoaderOptions(config.train.batch_size)
                              .workers(config.train.workers)
                              .transform(task.transforms(/*training=*/false))
                              .pin_memory(task.device().is_cuda()));
  task.model().eval();
  task.begin_evaluation();
  core::ProgressLine progress("eval", dataset->size(), "images",
                              core::stderr_is_terminal() ? &std::cerr : nullptr);
  {
    c10::InferenceMode guard;
    train::AutocastGuard autocast(task.device(), precision);
    while (auto batch = loader.next()) {
      task.evaluate(train::to_device(*batch, task.device()));
      progress.advance(batch->size());
    }
  }
  progress.finish();
  return task.end_evaluation();
}

}  // namespace ostrov::tasks
