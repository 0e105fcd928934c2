#include "catch.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include "ostrov/core/error.h"
#include "ostrov/train/optim.h"

using namespace ostrov;
using namespace ostrov::train;

TEST_CASE("make_optimizer builds SGD, Adam and AdamW with the configured options", "[train][optim]") {
  auto w = at::zeros({3}).requires_grad_();
  OptimizerConfig c;
  c.name = "sgd";
  c.lr = 0.5;
  c.momentum = 0.8;
  c.nesterov = true;
  auto sgd = make_optimizer(c, {w});
  auto& o = static_cast<torch::optim::SGDOptions&>(sgd->param_groups()[0].options());
  CHECK(o.lr() == 0.5);
  CHECK(o.momentum() == 0.8);
  CHECK(o.nesterov());
  c.name = "adamw";
  c.weight_decay = 0.01;
  CHECK(make_optimizer(c, {w})->param_groups()[0].options().get_lr() == 0.5);
  c.name = "rmsprop";
  CHECK_THROWS_WITH(make_optimizer(c, {w}, "run.json"),
                    Catch::Contains("run.json") && Catch::Contains("rmsprop"));
  c.name = "sgd";
  c.lr = -1;
  CHECK_THROWS_AS(make_optimizer(c, {w}), ConfigError);
}

TEST_CASE("LrSchedule: step, multistep, cosine, poly and warm-up", "[train][optim]") {
  ScheduleConfig s;
  s.name = "step";
  s.step_size = 10;
  s.gamma = 0.5;
  LrSchedule step(s, 1.0, 100);
  CHECK(step.lr_at(0) == 1.0);
  CHECK(step.lr_at(9) == 1.0);
  CHECK(step.lr_at(10) == 0.5);
  CHECK(step.lr_at(25) == 0.25);

  s.name = "multistep";
  s.milestones = {5, 8};
  LrSchedule multi(s, 2.0, 100);
  CHECK(multi.lr_at(4) == 2.0);
  CHECK(multi.lr_at(5) == 1.0);
  CHECK(multi.lr_at(8) == 0.5);

  s.name = "cosine";
  s.min_lr = 0.1;
  LrSchedule cosine(s, 1.1, 100);
  CHECK(cosine.lr_at(0) == Approx(1.1));
  CHECK(cosine.lr_at(50) == Approx(0.6));
  CHECK(cosine.lr_at(100) == Approx(0.1));

  s.name = "poly";
  s.min_lr = 0.0;
  s.power = 0.9;
  LrSchedule poly(s, 0.01, 1000);
  CHECK(poly.lr_at(500) == Approx(0.01 * std::pow(0.5, 0.9)));  // PSPNet's lr (1-t/T)^0.9

  s.name = "constant";
  s.warmup_steps = 10;
  s.warmup_factor = 0.1;
  LrSchedule warm(s, 1.0, 100);
  CHECK(warm.lr_at(0) == Approx(0.1));
  CHECK(warm.lr_at(5) == Approx(0.55));
  CHECK(warm.lr_at(10) == 1.0);

  auto w = at::zeros({1}).requires_grad_();
  torch::optim::SGD opt({w}, torch::optim::SGDOptions(1.0));
  step.apply(opt, 20);
  CHECK(opt.param_groups()[0].options().get_lr() == 0.25);

  s.name = "exponential";
  CHECK_THROWS_WITH(LrSchedule(s, 1.0, 10), Catch::Contains("exponential"));
}

TEST_CASE("LrSchedule::lr_at(step, progress): cosine and poly anneal over a time budget",
          "[train][optim]") {
  ScheduleConfig s;
  s.name = "cosine";
  s.min_lr = 0.0;
  LrSchedule cosine(s, 0.2, 1000);
  // Step 10 of 1000, but half the time budget gone: the lr of the run's middle.
  CHECK(cosine.lr_at(10, 0.5) == Approx(0.1));
  CHECK(cosine.lr_at(10, 1.0) == Approx(0.0).margin(1e-12));
  CHECK(cosine.lr_at(10, 3.0) == Approx(0.0).margin(1e-12));  // clamped
  CHECK(cosine.lr_at(250, 0.25) == Approx(cosine.lr_at(250)));  // the same when steps lead
  s.name = "poly";
  s.power = 1.0;
  LrSchedule poly(s, 1.0, 10);
  CHECK(poly.lr_at(1, 0.75) == Approx(0.25));
  // Step schedules and the warm-up count steps.
  s.name = "step";
  s.step_size = 5;
  s.gamma = 0.1;
  s.warmup_steps = 4;
  s.warmup_factor = 0.5;
  LrSchedule step(s, 1.0, 100);
  CHECK(step.lr_at(6, 0.9) == Approx(0.1));
  CHECK(step.lr_at(2, 0.9) == Approx(0.75));  // warm-up halfway: 0.5 * 0.5 + 0.5
}

TEST_CASE("optimizer and schedule configs from JSON reject unknown keys", "[train][optim]") {
  auto c = optimizer_config_from_json({{"optimizer", "adam"}, {"lr", 0.001}, {"betas", {0.8, 0.9}}},
                                      "run.json");
  CHECK(c.name == "adam");
  CHECK(c.beta1 == 0.8);
  auto s = schedule_config_from_json({{"name", "poly"}, {"power", 0.5}}, "run.json");
  CHECK(s.name == "poly");
  CHECK(s.power == 0.5);
  CHECK(schedule_config_from_json("cosine", "run.json").name == "cosine");
  CHECK_THROWS_WITH(schedule_config_from_json({{"name", "poly"}, {"powr", 0.5}}, "run.json"),
                    Catch::Contains("train.schedule.powr"));
  CHECK_THROWS_WITH(optimizer_config_from_json({{"lr", "fast"}}, "run.json"),
                    Catch::Contains("train.lr must be a number"));
}

TEST_CASE("clip_grad_norm returns the norm and scales gradients", "[train][optim]") {
  auto a = at::zeros({2}).requires_grad_();
  auto b = at::zeros({1}).requires_grad_();
  (a * at::tensor({3.0f, 0.0f})).sum().add((b * 4.0).sum()).backward();
  CHECK(clip_grad_norm({a, b}, 0.0) == Approx(5.0));
  CHECK(clip_grad_norm({a, b}, 1.0) == Approx(5.0));
  CHECK(a.grad()[0].item<double>() == Approx(0.6).epsilon(1e-5));
  CHECK(b.grad()[0].item<double>() == Approx(0.8).epsilon(1e-5));
}

TEST_CASE("optimizer and schedule configs name the file and key path of a bad value", "[train][optim]") {
  using Catch::Contains;
  const nlohmann::json good = {{"optimizer", "adam"}, {"lr", 0.01}};
  CHECK(optimizer_config_from_json(good, "run.json").lr == 0.01);
  auto with = [&](const char* key, nlohmann::json value) {
    auto j = good;
    j[key] = std::move(value);
    return j;
  };
  CHECK_THROWS_AS(optimizer_config_from_json(with("lr", -0.1), "run.json"), ConfigError);
  CHECK_THROWS_WITH(optimizer_config_from_json(with("lr", -0.1), "run.json"),
                    Contains("run.json") && Contains("train.lr") && Contains("-0.1"));
  CHECK_THROWS_WITH(optimizer_config_from_json(with("weight_decay", -1), "run.json"),
                    Contains("train.weight_decay"));
  CHECK_THROWS_WITH(optimizer_config_from_json(with("optimizer", "rmsprop"), "run.json"),
                    Contains("train.optimizer") && Contains("rmsprop"));

  CHECK(schedule_config_from_json("cosine", "run.json").name == "cosine");
  CHECK_THROWS_AS(schedule_config_from_json("cosinus", "run.json"), ConfigError);
  CHECK_THROWS_WITH(schedule_config_from_json("cosinus", "run.json"),
                    Contains("run.json") && Contains("train.schedule") && Contains("cosinus"));
  CHECK_THROWS_WITH(schedule_config_from_json({{"name", "warp"}}, "run.json"),
                    Contains("train.schedule.name"));
  CHECK_THROWS_WITH(schedule_config_from_json({{"name", "step"}, {"step_size", 0}}, "run.json"),
                    Contains("train.schedule.step_size"));
  CHECK_THROWS_WITH(schedule_config_from_json({{"name", "cosine"}, {"warmup_steps", -3}}, "run.json"),
                    Contains("train.schedule.warmup_steps"));
}
