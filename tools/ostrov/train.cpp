// `ostrov train CONFIG.json [--out DIR] [--set key=value ...] [--resume] [--nproc N]`

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/logger.h>
#include <torch/optim/optimizer.h>

#include "commands.h"
#include "ostrov/core/device.h"
#include "ostrov/core/error.h"
#include "ostrov/core/runtime.h"
#include "ostrov/data/loader.h"
#include "ostrov/train/distributed.h"
#include "ostrov/train/optim.h"
#include "ostrov/train/trainer.h"
#include "run_config.h"
#include "task.h"

extern char** environ;

namespace ostrov::cli {

namespace {

struct TrainArgs {
  std::string config;
  std::string out = "runs/latest";
  std::vector<std::string> overrides;
  bool resume = false;
  int nproc = 1;
};

// Starts `nproc` copies of this program with torchrun's variables and waits for them; when one
// fails the others are stopped, and its exit code is returned.
int spawn_workers(int nproc, int argc, char** argv) {
  std::random_device rd;
  const int port = 20000 + static_cast<int>(rd() % 20000);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < nproc; ++rank) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    env_strings.push_back("RANK=" + std::to_string(rank));
    env_strings.push_back("LOCAL_RANK=" + std::to_string(rank));
    env_strings.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env_strings.push_back("MASTER_ADDR=127.0.0.1");
    env_strings.push_back("MASTER_PORT=" + std::to_string(port));
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    pid_t pid = 0;
    const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
    if (posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, envp.data()) != 0) {
      for (pid_t p : pids) kill(p, SIGTERM);
      throw Error("cannot start worker process " + std::to_string(rank));
    }
    pids.push_back(pid);
  }
  int result = kExitOk;
  size_t remaining = pids.size();
  while (remaining > 0) {
    int status = 0;
    const pid_t done = wait(&status);
    if (done < 0) break;
    --remaining;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : kExitRuntime;
    if (code != kExitOk && result == kExitOk) {
      result = code;
      for (pid_t p : pids) {
        if (p != done) kill(p, SIGTERM);  // no hang: the others would wait on collectives
      }
    }
  }
  (void)argc;
  return result;
}

}  // namespace

Command add_train(CLI::App& app, int argc, char** argv) {
  auto* sub = app.add_subcommand("train", "Train a model from a JSON config");
  auto args = std::make_shared<TrainArgs>();
  sub->add_option("config", args->config, "Run config (JSON)")->required();
  sub->add_option("--out", args->out, "Output folder: last.pt, best.pt, metrics.jsonl, loss.png");
  sub->add_option("--set", args->overrides, "Override a config key: key.path=value")
      ->take_all();
  sub->add_flag("--resume", args->resume, "Continue from OUT/last.pt");
  sub->add_option("--nproc", args->nproc, "Train data-parallel on N local processes")
      ->check(CLI::Range(1, 64));
  return [sub, args, argc, argv]() {
    if (!sub->parsed()) return -1;
    const bool is_worker = std::getenv("WORLD_SIZE") != nullptr;
    if (args->nproc > 1 && !is_worker) return spawn_workers(args->nproc, argc, argv);

    const RunConfig config = load_run_config(args->config, args->overrides);
    const auto env = train::DistributedEnv::from_environment();
    const c10::Device device = core::parse_device(config.train.device);
    core::set_num_threads(config.train.threads > 0
                              ? static_cast<int>(config.train.threads)
                              : std::max(1, core::available_cores() / env.world_size));
    core::seed_everything(config.train.seed);

    if (config.task == "instance" && env.world_size > 1) {
      throw ConfigError(config.path + ": task instance trains in one process for now (no --nproc)");
    }
    auto task_ptr = make_task(config, device);
    CliTask& task = *task_ptr;
    auto train_set = task.dataset("train");
    std::shared_ptr<data::Dataset> val_set;
    if (!config.data.val.root.empty() || !config.data.val.annotations.empty()) {
      val_set = task.dataset("val");
    }
    data::DataLoader train_loader(
        train_set, data::LoaderOptions(config.train.batch_size)
                       .shuffle(true)
                       .drop_last(true)
                       .workers(config.train.workers)
                       .seed(config.train.seed)
                       .transform(task.transforms(/*training=*/true))
                       .rank(env.rank)
                       .world_size(env.world_size));
    std::unique_ptr<data::DataLoader> val_loader;
    if (val_set) {
      val_loader = std::make_unique<data::DataLoader>(
          val_set, data::LoaderOptions(config.train.batch_size)
                       .workers(config.train.workers)
                       .transform(task.transforms(/*training=*/false))
                       .rank(env.rank)
                       .world_size(env.world_size));
    }
    auto optimizer = train::make_optimizer(config.train.optimizer, task.model().parameters(),
                                           config.path + ": train");
    const int64_t total_steps = config.train.max_steps > 0
                                    ? config.train.max_steps
                                    : config.train.epochs * train_loader.num_batches();
    train::LrSchedule schedule(config.train.schedule, config.train.optimizer.lr, total_steps);
    train::DataParallel dp(env, std::chrono::milliseconds(static_cast<int64_t>(
                                    config.train.distributed_timeout_s * 1000.0)));
    const std::string best = config.train.best_metric;
    train::Trainer trainer(task, *optimizer, schedule, train_loader, val_loader.get(),
                           train::TrainerOptions()
                               .epochs(config.train.epochs)
                               .max_steps(config.train.max_steps)
                               .time_limit_s(config.train.time_limit_s)
                               .out_dir(args->out)
                               .log_every(config.train.log_every)
                               .eval_every(config.train.eval_every)
                               .checkpoint_every(config.train.checkpoint_every)
                               .best_metric(val_loader ? best : "loss")
                               .higher_is_better(val_loader && best != "loss")
                               .early_stopping(config.train.early_stopping)
                               .grad_clip(config.train.grad_clip)
                               .resume(args->resume)
                               .config(config.json)
                               .device(device),
                           &dp);
    const auto result = trainer.fit();
    if (dp.is_main()) {
      core::logger()->info("trained {} steps ({} epochs, {:.1f} s, stopped by {}); final: {}",
                           result.steps, result.epochs, result.seconds, result.stop_reason,
                           result.last_evaluation.dump());
      core::logger()->info("wrote {}/last.pt, best.pt, metrics.jsonl, loss.png", args->out);
    }
    return kExitOk;
  };
}

}  // namespace ostrov::cli
