// Crash safety of `ostrov train`: SIGKILL at random moments (checkpoints are written every step,
// so many kills land inside a save) never leaves an unreadable OUT/last.pt, and `--resume`
// after the kills ends with exactly the losses of an uninterrupted run.
#include "catch.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "ostrov/io/checkpoint.h"
#include "support.h"

extern char** environ;

using ostrov::test::quote;
using ostrov::test::run;
using ostrov::test::TempDir;

namespace {

// Starts `ostrov ARGS...` with stdout/stderr into `log` and the environment plus `env`
// ("NAME=value", replacing a variable of that name); returns its pid.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log,
                const std::vector<std::string>& env = {}) {
  std::vector<std::string> all = {OSTROV_CLI};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const auto name = entry.substr(0, entry.find('=') + 1);
    bool overridden = false;
    for (const auto& mine : env) overridden = overridden || mine.rfind(name, 0) == 0;
    if (!overridden) env_strings.push_back(entry);
  }
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  return pid;
}

// Waits up to `seconds` for `pid`; its wait status, or -1 (then the process is killed).
int wait_for(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

// (split, step) -> loss, the last line for each key winning (a resumed run rewrites the steps
// after its checkpoint).
std::map<std::pair<std::string, int64_t>, double> losses(const std::string& metrics) {
  std::map<std::pair<std::string, int64_t>, double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    out[{j.at("split").get<std::string>(), j.at("step").get<int64_t>()}] = j.at("loss").get<double>();
  }
  return out;
}

}  // namespace

TEST_CASE("ostrov train killed with SIGKILL keeps a loadable last.pt and resumes exactly",
          "[cli][train][crash]") {
  TempDir dir;
  for (const char* split : {"train", "val"}) {
    auto r = run(std::string(OSTROV_CLI) + " make-scenes --count 8 --size 48x48 --seed 2 --out " +
                     quote(dir / split), true);
    REQUIRE(r.exit_code == 0);
  }
  nlohmann::json config = {
      {"task", "segmentation"},
      {"data", {{"format", "folder"}, {"train", {{"root", dir / "train"}}},
                {"val", {{"root", dir / "val"}}}, {"num_classes", 11}, {"image_size", {32, 32}}}},
      {"model", {{"name", "unet"}, {"depth", 2}, {"base_width", 8}}},
      {"loss", {{"name", "cross_entropy"}}},
      {"train", {{"epochs", 50}, {"batch_size", 2}, {"optimizer", "adam"}, {"lr", 0.01},
                 {"workers", 0}, {"seed", 5}, {"log_every", 1}, {"threads", 1},
                 {"checkpoint_every", 1}}}};
  const std::string config_path = dir / "run.json";
  std::ofstream(config_path) << config.dump(2);

  // The uninterrupted run.
  auto reference = run(std::string(OSTROV_CLI) + " train " + quote(config_path) + " --out " +
                           quote(dir / "reference"), true);
  INFO(reference.output);
  REQUIRE(reference.exit_code == 0);

  // Kill, check, resume, kill again... at seeded random moments.
  const std::string out = dir / "killed";
  const std::string last = out + "/last.pt";
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> delay_ms(200, 1500);
  int kills_with_checkpoint = 0;
  for (int round = 0; round < 8; ++round) {
    std::vector<std::string> args = {"train", config_path, "--out", out};
    if (std::filesystem::exists(last)) args.push_back("--resume");
    const pid_t pid = spawn_cli(args, dir / "killed.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status)) {
      INFO("round " << round << ": the run ended before the kill");
      REQUIRE(WEXITSTATUS(status) == 0);
      break;
    }
    REQUIRE(WTERMSIG(status) == SIGKILL);
    if (std::filesystem::exists(last)) {
      ++kills_with_checkpoint;
      INFO("round " << round);
      CHECK_NOTHROW(ostrov::io::read_checkpoint_meta(last));  // checksum verified
    }
    // Only complete files: no temporary checkpoint is left visible as last.pt/best.pt. (On a
    // loaded machine the kill can come before the run has created its folder.)
    if (!std::filesystem::exists(out)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(out)) {
      const auto name = entry.path().filename().string();
      if (name.size() > 3 && name.substr(name.size() - 3) == ".pt") {
        CHECK_NOTHROW(ostrov::io::read_checkpoint_meta(entry.path().string()));
      }
    }
  }
  CHECK(kills_with_checkpoint >= 1);

  auto finish = run(std::string(OSTROV_CLI) + " train " + quote(config_path) + " --out " + quote(out) +
                        (std::filesystem::exists(last) ? " --resume" : ""), true);
  INFO(finish.output);
  REQUIRE(finish.exit_code == 0);

  const auto expected = losses(dir / "reference/metrics.jsonl");
  const auto got = losses(out + "/metrics.jsonl");
  REQUIRE(expected.size() == got.size());
  for (const auto& [key, loss] : expected) {
    INFO(key.first << " step " << key.second);
    REQUIRE(got.count(key) == 1);
    CHECK(got.at(key) == loss);  // exact: resume restores model, optimiser, RNG and loader
  }
}

TEST_CASE("distributed faults: a dead rank, a missing rank and a wrong port end with an error",
          "[cli][train][crash][distributed]") {
  TempDir dir;
  auto r = run(std::string(OSTROV_CLI) + " make-scenes --count 8 --size 48x48 --seed 2 --out " +
                   quote(dir / "train"), true);
  REQUIRE(r.exit_code == 0);
  nlohmann::json config = {
      {"task", "segmentation"},
      {"data", {{"format", "folder"}, {"train", {{"root", dir / "train"}}}, {"num_classes", 11},
                {"image_size", {32, 32}}}},
      {"model", {{"name", "unet"}, {"depth", 2}, {"base_width", 8}}},
      {"train", {{"epochs", 100000}, {"batch_size", 2}, {"optimizer", "adam"}, {"lr", 0.01},
                 {"workers", 0}, {"seed", 5}, {"log_every", 1}, {"threads", 1},
                 {"distributed_timeout_s", 6}}}};
  const std::string config_path = dir / "run.json";
  std::ofstream(config_path) << config.dump(2);
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  auto port = [&rng] { return std::to_string(std::uniform_int_distribution<int>(20000, 60000)(rng)); };
  auto env = [](int rank, const std::string& p) {
    return std::vector<std::string>{"RANK=" + std::to_string(rank), "WORLD_SIZE=2",
                                    "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + p};
  };

  SECTION("WORLD_SIZE larger than the ranks started: rank 0 gives up after the timeout") {
    const std::string p = port();
    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = spawn_cli({"train", config_path, "--out", dir / "a"}, dir / "a.log", env(0, p));
    const int status = wait_for(pid, 90);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto log = ostrov::test::read_bytes(dir / "a.log");
    INFO(log);
    REQUIRE(status != -1);  // no hang
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 1);
    CHECK_THAT(log, Catch::Contains("WORLD_SIZE=2") && Catch::Contains("MASTER_PORT=" + p));
    CHECK(seconds < 60);
  }
  SECTION("a wrong MASTER_PORT: rank 1 names the address it could not reach") {
    const std::string p = port();
    const pid_t pid = spawn_cli({"train", config_path, "--out", dir / "b"}, dir / "b.log", env(1, p));
    const int status = wait_for(pid, 90);
    const auto log = ostrov::test::read_bytes(dir / "b.log");
    INFO(log);
    REQUIRE(status != -1);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 1);
    CHECK_THAT(log, Catch::Contains("127.0.0.1:" + p));
  }
  SECTION("killing rank 1 mid-training makes rank 0 exit with an error, not hang") {
    const std::string p = port();
    const pid_t r0 = spawn_cli({"train", config_path, "--out", dir / "c"}, dir / "r0.log", env(0, p));
    const pid_t r1 = spawn_cli({"train", config_path, "--out", dir / "c"}, dir / "r1.log", env(1, p));
    bool training = false;
    for (int i = 0; i < 600 && !training; ++i) {  // up to 60 s for the first steps
      training = ostrov::test::read_bytes(dir / "r0.log").find("step 3/") != std::string::npos;
      if (!training) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!training) {
      ::kill(r0, SIGKILL);
      ::kill(r1, SIGKILL);
      ::waitpid(r0, nullptr, 0);
      ::waitpid(r1, nullptr, 0);
      FAIL("the two ranks never trained:\n" << ostrov::test::read_bytes(dir / "r0.log") << ostrov::test::read_bytes(dir / "r1.log"));
    }
    ::kill(r1, SIGKILL);
    ::waitpid(r1, nullptr, 0);
    const int status = wait_for(r0, 60);
    const auto log = ostrov::test::read_bytes(dir / "r0.log");
    INFO(log);
    REQUIRE(status != -1);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 1);
    CHECK_THAT(log, Catch::Contains("another rank may have died"));
  }
}
