// `ostrov train CONFIG.json [--out DIR] [--set key=value ...] [--resume] [--force] [--nproc N]`

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "ostrov/core/error.h"
#include "ostrov/tasks/config.h"
#include "ostrov/tasks/run.h"

extern char** environ;

namespace ostrov::cli {

namespace {

struct TrainArgs {
  std::string config;
  std::string out = "runs/latest";
  std::vector<std::string> overrides;
  bool resume = false;
  bool force = false;
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
    env_strings.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
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
  sub->add_option("--out", args->out,
                  "Run folder: last.pt, best.pt, metrics.jsonl, loss.png, config.json, train.log");
  sub->add_option("--set", args->overrides, "Override a config key: key.path=value")
      ->take_all();
  sub->add_flag("--resume", args->resume, "Continue from OUT/last.pt");
  sub->add_flag("--force", args->force, "Train into an OUT that holds files already");
  sub->add_option("--nproc", args->nproc, "Train data-parallel on N local processes")
      ->check(CLI::Range(1, 64));
  return [sub, args, argc, argv]() {
    if (!sub->parsed()) return -1;
    // Everything that can be checked before training is, once, in this process.
    const auto config = tasks::load_run_config(args->config, args->overrides);
    const auto options =
        tasks::TrainRunOptions().out_dir(args->out).resume(args->resume).force(args->force);
    const bool is_worker = std::getenv("WORLD_SIZE") != nullptr;
    if (!is_worker) tasks::check_run_folder(options);
    if (args->nproc > 1 && !is_worker) return spawn_workers(args->nproc, argc, argv);
    tasks::train(config, options);
    return kExitOk;
  };
}

}  // namespace ostrov::cli
