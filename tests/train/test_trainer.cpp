#include "catch.h"

#include <chrono>
#include <fstream>
#include <thread>

#include <cmath>
#include <functional>
#include <limits>
#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/optim/optimizer.h>

#include "ostrov/core/error.h"
#include "ostrov/core/runtime.h"
#include "ostrov/data/dataset.h"
#include "ostrov/data/loader.h"
#include "ostrov/io/checkpoint.h"
#include "ostrov/train/history.h"
#include "ostrov/train/precision.h"
#include "ostrov/train/trainer.h"
#include "support.h"

using namespace ostrov;

namespace {

// Random images whose class mask is "red channel > 0.5".
class ToyDataset : public data::Dataset {
 public:
  explicit ToyDataset(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  data::Sample get(int64_t index) const override {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(index) + 1);
    data::Sample s;
    s.image = at::rand({3, 8, 8}, gen);
    s.mask = (s.image[0] > 0.5).to(at::kLong);
    s.image_id = index;
    return s;
  }

 private:
  int64_t n_;
};

class ToyTask : public train::Task {
 public:
  explicit ToyTask(double poison = 0.0) : poison_(poison) {
    net_ = torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)),
                                 torch::nn::ReLU(), torch::nn::Dropout2d(0.3),
                                 torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 2, 1)));
  }
  torch::nn::Module& model() override { return *net_; }
  at::Tensor loss(const data::Batch& b) override {
    auto l = at::cross_entropy_loss(net_->forward(b.images), b.masks);
    return poison_ != 0.0 ? l * poison_ : l;
  }
  void begin_evaluation() override {
    sum_ = 0;
    count_ = 0;
    correct_ = 0;
    pixels_ = 0;
  }
  void evaluate(const data::Batch& b) override {
    auto logits = net_->forward(b.images);
    sum_ += at::cross_entropy_loss(logits, b.masks).item<double>() * b.size();
    count_ += b.size();
    correct_ += logits.argmax(1).eq(b.masks).sum().item<int64_t>();
    pixels_ += b.masks.numel();
  }
  nlohmann::json end_evaluation() override {
    return {{"loss", sum_ / count_}, {"pixel_accuracy", double(correct_) / pixels_}};
  }
  torch::nn::Sequential net_{nullptr};

 private:
  double poison_;
  double sum_ = 0;
  int64_t count_ = 0, correct_ = 0, pixels_ = 0;
};

struct Run {
  std::shared_ptr<data::Dataset> train_set = std::make_shared<ToyDataset>(16);
  std::shared_ptr<data::Dataset> val_set = std::make_shared<ToyDataset>(8);
  data::DataLoader train{train_set, data::LoaderOptions(4).shuffle(true).seed(3).workers(1)};
  data::DataLoader val{val_set, data::LoaderOptions(4)};
};

// Adam at 0.02 with a cosine schedule over `schedule_steps`, validating on run.val unless
// `validate` is false; `callback` (if any) sees every step.
train::TrainResult fit(ToyTask& task, Run& run, train::TrainerOptions options,
                       int64_t schedule_steps = 100, bool validate = true,
                       std::shared_ptr<train::Callback> callback = nullptr) {
  train::OptimizerConfig adam;
  adam.name = "adam";
  adam.lr = 0.02;
  auto optimizer = train::make_optimizer(adam, task.net_->parameters());
  train::ScheduleConfig sched;
  sched.name = "cosine";
  train::LrSchedule schedule(sched, 0.02, schedule_steps);
  train::Trainer trainer(task, *optimizer, schedule, run.train, validate ? &run.val : nullptr,
                         options.progress("log"));
  if (callback) trainer.add_callback(callback);
  return trainer.fit();
}

// A ToyTask that keeps a copy of its parameters before each step and lets `alter` change the
// loss of the n-th call (1-based), to make one step overflow.
class RecordingTask : public ToyTask {
 public:
  explicit RecordingTask(std::function<at::Tensor(const at::Tensor&, int)> alter)
      : alter_(std::move(alter)) {}
  at::Tensor loss(const data::Batch& b) override {
    std::vector<at::Tensor> copy;
    for (const auto& p : net_->parameters()) copy.push_back(p.detach().clone());
    before.push_back(copy);
    return alter_(ToyTask::loss(b), ++calls_);
  }
  /// Whether the parameters before steps a and b (0-based) are equal.
  bool same(size_t a, size_t b) const {
    for (size_t i = 0; i < before[a].size(); ++i) {
      if (!at::equal(before[a][i], before[b][i])) return false;
    }
    return true;
  }
  std::vector<std::vector<at::Tensor>> before;  ///< parameters before each step

 private:
  std::function<at::Tensor(const at::Tensor&, int)> alter_;
  int calls_ = 0;
};

}  // namespace

TEST_CASE("Trainer learns, writes last/best checkpoints, metrics.jsonl and loss.png", "[train][trainer]") {
  test::TempDir dir;
  core::seed_everything(1);
  ToyTask task;
  Run run;
  auto result = fit(task, run,
                    train::TrainerOptions().epochs(3).out_dir(dir.path().string()).log_every(2)
                        .best_metric("pixel_accuracy").higher_is_better(true));
  CHECK(result.steps == 12);
  CHECK(result.epochs == 3);
  CHECK(result.stop_reason == "epochs");
  CHECK(result.losses.back() < result.losses.front());
  CHECK(result.last_evaluation["pixel_accuracy"].get<double>() > 0.6);  // chance: 0.5
  for (const char* name : {"last.pt", "best.pt", "metrics.jsonl", "loss.png"}) {
    CHECK(std::filesystem::exists(dir / name));
  }
  train::History history(dir / "metrics.jsonl", /*resume=*/true);
  int train_records = 0, val_records = 0;
  for (const auto& r : history.records()) {
    REQUIRE(r.contains("epoch"));
    REQUIRE(r.contains("step"));
    REQUIRE(r.contains("loss"));
    train_records += r["split"] == "train";
    val_records += r["split"] == "val";
  }
  CHECK(train_records == 6);
  CHECK(val_records == 3);
  double first_val = -1, last_val = -1;
  for (const auto& r : history.records()) {
    if (r["split"] != "val") continue;
    if (first_val < 0) first_val = r["loss"].get<double>();
    last_val = r["loss"].get<double>();
  }
  CHECK(last_val < first_val);
  CHECK(io::read_checkpoint_meta(dir / "last.pt").step == 12);
  CHECK(io::read_checkpoint_meta(dir / "best.pt").extra["metrics"].contains("pixel_accuracy"));
}

TEST_CASE("resume: N steps + resume + N steps gives exactly the losses of 2N steps", "[train][trainer]") {
  test::TempDir a, b;
  core::seed_everything(5);
  ToyTask straight;
  Run run_a;
  // 6 steps with 4 batches per epoch: the resume point (step 3) is inside epoch 0.
  auto full = fit(straight, run_a, train::TrainerOptions().epochs(10).max_steps(6).out_dir(a.path().string()));
  REQUIRE(full.losses.size() == 6);

  core::seed_everything(5);
  ToyTask first;
  Run run_b;
  auto part1 = fit(first, run_b, train::TrainerOptions().epochs(10).max_steps(3).out_dir(b.path().string()));
  REQUIRE(part1.losses.size() == 3);

  core::seed_everything(999);  // a different RNG state: the checkpoint must restore it
  ToyTask second;
  Run run_c;
  auto part2 = fit(second, run_c,
                   train::TrainerOptions().epochs(10).max_steps(6).out_dir(b.path().string()).resume(true));
  REQUIRE(part2.losses.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(part1.losses[i] == full.losses[i]);
    CHECK(part2.losses[i] == full.losses[3 + i]);  // exact on CPU
  }
  for (const auto& p : second.net_->named_parameters()) {
    CHECK(at::equal(p.value(), straight.net_->named_parameters()[p.key()]));
  }
}

TEST_CASE("a crash during an evaluation resumes into that evaluation and not past it", "[train][trainer]") {
  // The process dies (here: an exception) while epoch 1 is being evaluated. The resumed run
  // must evaluate epoch 1 again, so metrics.jsonl ends as the uninterrupted run's.
  struct CrashingTask : ToyTask {
    int evaluations = 0;
    void begin_evaluation() override {
      if (++evaluations == 2) throw std::runtime_error("simulated crash during evaluation");
      ToyTask::begin_evaluation();
    }
  };
  const auto options = [](const test::TempDir& dir) {
    return train::TrainerOptions().epochs(3).log_every(1).out_dir(dir.path().string())
        .best_metric("pixel_accuracy").higher_is_better(true);
  };
  const auto val_losses = [](const test::TempDir& dir) {
    std::vector<std::pair<int64_t, double>> out;
    const train::History history(dir / "metrics.jsonl", true);
    for (const auto& r : history.records()) {
      if (r["split"] == "val") out.emplace_back(r["step"].get<int64_t>(), r["loss"].get<double>());
    }
    return out;
  };
  test::TempDir a, b;
  core::seed_everything(8);
  ToyTask straight;
  Run run_a;
  fit(straight, run_a, options(a));

  core::seed_everything(8);
  CrashingTask crashing;
  Run run_b;
  CHECK_THROWS_WITH(fit(crashing, run_b, options(b)), Catch::Contains("simulated crash"));
  CHECK(io::read_checkpoint_meta(b / "last.pt").extra.value("evaluation_pending", false));

  core::seed_everything(123);
  ToyTask resumed;
  Run run_c;
  auto rest = fit(resumed, run_c, options(b).resume(true));
  CHECK(rest.steps == 12);
  const auto expected = val_losses(a), got = val_losses(b);
  REQUIRE(expected.size() == 3);
  CHECK(got == expected);  // epoch 1's evaluation is there, once, with the same loss
}

TEST_CASE("a non-finite loss stops training with the step and keeps last.pt good", "[train][trainer]") {
  test::TempDir dir;
  ToyTask task(std::nan(""));
  Run run;
  CHECK_THROWS_WITH(fit(task, run, train::TrainerOptions().epochs(1).out_dir(dir.path().string())),
                    Catch::Contains("non-finite") && Catch::Contains("step 1"));
  CHECK_FALSE(std::filesystem::exists(dir / "last.pt"));
  ToyTask fresh;
  Run run2;
  CHECK_THROWS_WITH(fit(fresh, run2, train::TrainerOptions().resume(true).out_dir(dir.path().string())),
                    Catch::Contains("last.pt"));
}

TEST_CASE("early stopping and time limit end training with their reason", "[train][trainer]") {
  ToyTask task;
  Run run;
  auto r = fit(task, run, train::TrainerOptions().epochs(50).best_metric("loss").early_stopping(1)
                              .time_limit_s(30));
  CHECK((r.stop_reason == "early_stopping" || r.epochs < 50));
  ToyTask quick;
  Run run2;
  auto t = fit(quick, run2, train::TrainerOptions().epochs(1000).time_limit_s(0.2));
  CHECK(t.stop_reason == "time_limit");
  CHECK(t.seconds < 10.0);
}

namespace {

struct SlowTask : ToyTask {
  at::Tensor loss(const data::Batch& b) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    return ToyTask::loss(b);
  }
};

struct LrLog : train::Callback {
  void on_step(const train::StepInfo& info) override { lrs.push_back(info.lr); }
  std::vector<double> lrs;
};

}  // namespace

TEST_CASE("a run stopped by its time budget ends with its cosine annealed", "[train][trainer]") {
  SlowTask task;
  Run run;
  auto lrs = std::make_shared<LrLog>();
  // 1000 epochs of 4 steps: by steps the run would still be at its start when 0.6 s are over.
  const auto r = fit(task, run, train::TrainerOptions().epochs(1000).time_limit_s(0.6),
                     /*schedule_steps=*/4000, /*validate=*/false, lrs);
  CHECK(r.stop_reason == "time_limit");
  REQUIRE(lrs->lrs.size() >= 3);
  CHECK(lrs->lrs.front() == Approx(0.02).epsilon(0.01));  // the budget has barely begun
  // The last step started after more than 3/4 of the budget: lr <= 0.02 * (1 + cos(0.75 pi)) / 2.
  CHECK(lrs->lrs.back() < 0.003);
  CHECK(lrs->lrs.back() < lrs->lrs[lrs->lrs.size() / 2]);
}

TEST_CASE("an output folder that cannot be created or lacks space fails before the first step",
          "[train][trainer]") {
  test::TempDir dir;
  {  // A regular file where a folder should be (root ignores permissions, this it cannot).
    std::ofstream(dir / "file") << "x";
  }
  ToyTask task;
  Run run;
  const std::string under_file = dir / "file/run";
  CHECK_THROWS_WITH(fit(task, run, train::TrainerOptions().epochs(1).out_dir(under_file)),
                    Catch::Contains(under_file) && Catch::Contains("cannot create"));
  // A disk too small for the checkpoints (the requirement raised instead of filling the disk).
  ToyTask task2;
  Run run2;
  const std::string out = dir / "run";
  CHECK_THROWS_WITH(
      fit(task2, run2, train::TrainerOptions().epochs(1).out_dir(out).min_free_bytes(int64_t{1} << 62)),
      Catch::Contains(out) && Catch::Contains("free on its disk"));
  CHECK_FALSE(std::filesystem::exists(dir / "run/last.pt"));
  CHECK_FALSE(std::filesystem::exists(dir / "run/metrics.jsonl"));
  // The estimate of a small model fits, and no probe file is left behind.
  ToyTask task3;
  Run run3;
  fit(task3, run3, train::TrainerOptions().epochs(1).out_dir(out));
  CHECK(std::filesystem::exists(dir / "run/last.pt"));
  CHECK_FALSE(std::filesystem::exists(dir / "run/.ostrov-write-test"));
}

TEST_CASE("parse_precision: fp32, bf16 on CPU, fp16 only on CUDA, unknown names", "[train][precision]") {
  const c10::Device cpu(c10::kCPU);
  CHECK(train::parse_precision("fp32", cpu) == train::Precision::fp32);
  CHECK(train::parse_precision("bf16", cpu) == train::Precision::bf16);
  CHECK(train::parse_precision("fp16", c10::Device(c10::kCUDA, 0)) == train::Precision::fp16);
  CHECK_THROWS_AS(train::parse_precision("fp16", cpu), ConfigError);
  CHECK_THROWS_WITH(train::parse_precision("fp16", cpu, "run.json: train.precision"),
                    Catch::StartsWith("run.json: train.precision \"fp16\" needs a CUDA device") &&
                        Catch::Contains("use bf16 or fp32"));
  CHECK_THROWS_WITH(train::parse_precision("half", cpu),
                    Catch::Contains("train.precision: unknown precision \"half\"") &&
                        Catch::Contains("fp32, bf16 or fp16"));
  CHECK_THROWS_WITH(train::parse_precision("bf16", c10::Device(c10::kMeta)),
                    Catch::Contains("only on CPU and CUDA"));
  CHECK(train::precision_name(train::Precision::bf16) == "bf16");
  CHECK(train::precision_from_name("fp16") == train::Precision::fp16);  // no device yet
  CHECK_THROWS_WITH(train::precision_from_name("half", "a.json: train.precision"),
                    Catch::StartsWith("a.json: train.precision: unknown precision \"half\""));
  CHECK(train::autocast_dtype(train::Precision::fp16) == at::kHalf);
  CHECK(train::autocast_dtype(train::Precision::fp32) == at::kFloat);
}

TEST_CASE("AutocastGuard runs convolutions in bfloat16 on the CPU, nests and restores", "[train][precision]") {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 4, 3));
  const auto x = at::rand({1, 3, 8, 8});
  const auto reference = conv->forward(x);
  const c10::Device cpu(c10::kCPU);
  {
    train::AutocastGuard fp32(cpu, train::Precision::fp32);  // changes nothing
    CHECK(conv->forward(x).scalar_type() == at::kFloat);
  }
  {
    train::AutocastGuard outer(cpu, train::Precision::bf16);
    const auto y = conv->forward(x);
    CHECK(y.scalar_type() == at::kBFloat16);
    // bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    const double diff = (y.to(at::kFloat) - reference).abs().max().item<double>();
    CHECK(diff > 0.0);
    CHECK(diff < 2e-2 * reference.abs().max().item<double>() + 1e-3);
    {
      train::AutocastGuard inner(cpu, train::Precision::bf16);
      CHECK(conv->forward(x).scalar_type() == at::kBFloat16);
    }
    CHECK(conv->forward(x).scalar_type() == at::kBFloat16);  // the inner guard left it on
  }
  CHECK(conv->forward(x).scalar_type() == at::kFloat);  // off again
}

TEST_CASE("GradScaler: torch.amp's scale, unscale, skip on overflow, back-off and growth", "[train][precision]") {
  auto w = at::zeros({2}).requires_grad_(true);
  const std::vector<at::Tensor> params{w};
  train::GradScaler scaler(train::GradScalerOptions().init_scale(8.0).growth_interval(2));
  CHECK(scaler.scale(at::scalar_tensor(3.0)).item<double>() == 24.0);
  // Step 1: finite gradients (16, 8) scaled by 8 come back as (2, 1).
  w.mutable_grad() = at::tensor({16.0f, 8.0f});
  CHECK(scaler.unscale(params));
  CHECK(at::equal(w.grad(), at::tensor({2.0f, 1.0f})));
  scaler.update();
  CHECK(scaler.scale_value() == 8.0);  // one finite step of the two growth needs
  // Step 2: finite again, so the scale doubles.
  w.mutable_grad() = at::tensor({8.0f, 8.0f});
  CHECK(scaler.unscale(params));
  scaler.update();
  CHECK(scaler.scale_value() == 16.0);
  // Step 3: an overflow: reported, the scale halves, the growth count restarts.
  w.mutable_grad() = at::tensor({std::numeric_limits<float>::infinity(), 1.0f});
  CHECK_FALSE(scaler.unscale(params));
  scaler.update();
  CHECK(scaler.scale_value() == 8.0);
  CHECK(scaler.skipped_steps() == 1);
  w.mutable_grad() = at::tensor({std::nanf(""), 1.0f});
  CHECK_FALSE(scaler.unscale(params));
  scaler.update();
  CHECK(scaler.scale_value() == 4.0);
  // One finite step does not grow it (the count restarted at the overflow).
  w.mutable_grad() = at::tensor({1.0f, 1.0f});
  CHECK(scaler.unscale(params));
  scaler.update();
  CHECK(scaler.scale_value() == 4.0);
  // State round trip, and a malformed state names the key.
  train::GradScaler restored(train::GradScalerOptions().init_scale(8.0).growth_interval(2));
  restored.load_state(scaler.state());
  CHECK(restored.scale_value() == 4.0);
  CHECK(restored.skipped_steps() == 2);
  w.mutable_grad() = at::tensor({1.0f, 1.0f});
  CHECK(restored.unscale(params));
  restored.update();
  CHECK(restored.scale_value() == 8.0);  // the restored growth count was 1
  CHECK_THROWS_WITH(restored.load_state({{"scale", 2.0}}), Catch::Contains("\"growth_tracker\""));
  CHECK_THROWS_WITH(restored.load_state({{"scale", 2.0}, {"growth_tracker", 2}, {"skipped_steps", 0}}),
                    Catch::Contains("[0, growth_interval = 2)"));
  // The scale stops growing where float32 would overflow (torch keeps it a float32 tensor).
  train::GradScaler huge(train::GradScalerOptions().init_scale(3e38).growth_interval(1));
  w.mutable_grad() = at::tensor({1.0f, 1.0f});
  huge.unscale(params);
  huge.update();
  CHECK(huge.scale_value() == 3e38);
  CHECK_THROWS_WITH(restored.load_state({{"scale", -1.0}, {"growth_tracker", 0}, {"skipped_steps", 0}}),
                    Catch::Contains("positive"));
  // Disabled: the loss passes through, gradients are only checked.
  train::GradScaler off(train::GradScalerOptions().enabled(false));
  CHECK(off.scale(at::scalar_tensor(3.0)).item<double>() == 3.0);
  w.mutable_grad() = at::tensor({16.0f, 8.0f});
  CHECK(off.unscale(params));
  CHECK(at::equal(w.grad(), at::tensor({16.0f, 8.0f})));
  CHECK(off.scale_value() == 1.0);
}

TEST_CASE("Trainer with loss scaling skips the step whose gradients overflow and checkpoints the scale",
          "[train][precision]") {
  // The loss of the 3rd step is multiplied by 1e35: finite in float32, but x65536 it is not,
  // so its gradients overflow. That step must leave the parameters as they were.
  test::TempDir dir;
  core::seed_everything(4);
  RecordingTask task([](const at::Tensor& l, int call) { return call == 3 ? l * 1e35 : l; });
  Run run;
  auto result = fit(task, run,
                    train::TrainerOptions().epochs(1).log_every(1).loss_scaling(true)
                        .out_dir(dir.path().string()),
                    100, /*validate=*/false);
  REQUIRE(result.steps == 4);
  REQUIRE(task.before.size() == 4);
  CHECK_FALSE(task.same(0, 1));  // step 1 updated
  CHECK_FALSE(task.same(1, 2));  // step 2 updated
  CHECK(task.same(2, 3));        // step 3 overflowed: skipped
  std::vector<double> scales;
  const train::History history(dir / "metrics.jsonl", true);
  for (const auto& r : history.records()) {
    if (r["split"] == "train") scales.push_back(r["loss_scale"].get<double>());
  }
  CHECK((scales == std::vector<double>{65536.0, 65536.0, 32768.0, 32768.0}));
  const auto state = io::read_checkpoint_meta(dir / "last.pt").extra["grad_scaler"];
  CHECK(state["scale"].get<double>() == 32768.0);
  CHECK(state["skipped_steps"].get<int64_t>() == 1);
  CHECK(state["growth_tracker"].get<int64_t>() == 1);
}

TEST_CASE("Trainer with loss scaling skips a step whose loss is not finite and stops below scale 1",
          "[train][precision]") {
  // The 2nd loss gets +inf: its gradients with respect to the parameters are still finite, so
  // only the trainer's own poisoning of the gradients makes the scaler skip the step.
  test::TempDir dir;
  core::seed_everything(4);
  RecordingTask task([](const at::Tensor& l, int call) {
    return call == 2 ? l + std::numeric_limits<double>::infinity() : l;
  });
  Run run;
  auto result = fit(task, run,
                    train::TrainerOptions().epochs(1).log_every(1).loss_scaling(true)
                        .out_dir(dir.path().string()),
                    100, /*validate=*/false);
  REQUIRE(result.steps == 4);
  REQUIRE(task.before.size() == 4);
  CHECK(std::isinf(result.losses[1]));
  CHECK_FALSE(task.same(0, 1));  // step 1 updated
  CHECK(task.same(1, 2));        // step 2's loss was infinite: skipped
  CHECK_FALSE(task.same(2, 3));  // step 3 updated again
  std::vector<double> scales;
  std::vector<int64_t> skipped;
  std::vector<bool> loss_logged;
  const train::History history(dir / "metrics.jsonl", true);
  for (const auto& r : history.records()) {
    if (r["split"] != "train") continue;
    scales.push_back(r["loss_scale"].get<double>());
    skipped.push_back(r["skipped_steps"].get<int64_t>());
    loss_logged.push_back(r["loss"].is_number());
  }
  CHECK((scales == std::vector<double>{65536.0, 32768.0, 32768.0, 32768.0}));
  CHECK((skipped == std::vector<int64_t>{0, 1, 1, 1}));
  // The skipped step's window has no finite loss to average: its record says so with null.
  CHECK((loss_logged == std::vector<bool>{true, false, true, true}));

  // A loss that is never finite is not a passing overflow: 17 halvings take the scale from
  // 65536 to 0.5, and the run stops there.
  ToyTask poisoned(std::nan(""));
  Run run2;
  CHECK_THROWS_WITH(fit(poisoned, run2, train::TrainerOptions().epochs(5).loss_scaling(true)),
                    Catch::Contains("at step 17") && Catch::Contains("17 steps in a row") &&
                        Catch::Contains("loss scale fell to 0.5"));
}

TEST_CASE("Trainer: loss scaling by a power of two changes no step, and clipping sees unscaled gradients",
          "[train][precision]") {
  // SGD's step is linear in the gradient, so a scaler that did not unscale, or clipped the
  // scaled gradients, would move the parameters differently; x65536 and back is exact.
  auto run = [](bool scaling) {
    core::seed_everything(9);
    ToyTask task;
    Run data;
    train::OptimizerConfig sgd;
    sgd.name = "sgd";
    sgd.lr = 0.1;
    auto optimizer = train::make_optimizer(sgd, task.net_->parameters());
    train::LrSchedule schedule(train::ScheduleConfig{}, 0.1, 100);
    train::Trainer trainer(task, *optimizer, schedule, data.train, nullptr,
                           train::TrainerOptions().epochs(1).max_steps(3).grad_clip(0.05)
                               .loss_scaling(scaling).progress("log"));
    trainer.fit();
    return task.net_->parameters();
  };
  const auto plain = run(false), scaled = run(true);
  REQUIRE(plain.size() == scaled.size());
  for (size_t i = 0; i < plain.size(); ++i) CHECK(at::allclose(plain[i], scaled[i], 1e-6, 1e-7));
}

TEST_CASE("Trainer in bf16 on the CPU: autocast in the training passes, evaluation in float32", "[train][precision]") {
  core::seed_everything(6);
  ToyTask fp32_task;
  Run run_a;
  auto fp32 = fit(fp32_task, run_a, train::TrainerOptions().epochs(1).max_steps(3));
  core::seed_everything(6);
  ToyTask bf16_task;
  Run run_b;
  auto bf16 = fit(bf16_task, run_b,
                  train::TrainerOptions().epochs(1).max_steps(3).precision(train::Precision::bf16));
  REQUIRE(bf16.losses.size() == 3);
  // Same start, same batches: the first loss differs only by bfloat16 rounding.
  CHECK(bf16.losses[0] != fp32.losses[0]);
  CHECK(std::abs(bf16.losses[0] - fp32.losses[0]) < 2e-2 * fp32.losses[0]);
  for (double l : bf16.losses) CHECK(std::isfinite(l));
  const double val_fp32 = fp32.last_evaluation["loss"].get<double>();
  const double val_bf16 = bf16.last_evaluation["loss"].get<double>();
  CHECK(std::abs(val_bf16 - val_fp32) < 0.05 * val_fp32);
  // Parameters stay float32 (autocast casts inputs of each op, not the weights).
  for (const auto& p : bf16_task.net_->parameters()) CHECK(p.scalar_type() == at::kFloat);
}
