#include "catch.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/losses/build.h"

using namespace ostrov::losses;
using nlohmann::json;

TEST_CASE("losses::build makes one loss or a weighted sum from JSON", "[losses][config]") {
  at::manual_seed(8);
  LossInputs in;
  in.logits = at::randn({2, 3, 4, 4});
  in.target = at::randint(0, 3, {2, 4, 4}, at::kLong);

  auto single = build(json{{"name", "ce_dice"}, {"ce_weight", 2}, {"dice_weight", 0.5},
                           {"class_weights", {1, 2, 3}}},
                      "run.json");
  auto out = single(in);
  const double ce = functional::cross_entropy(in.logits, in.target, {1, 2, 3}).item<double>();
  const double dice = functional::soft_dice(in.logits, in.target).item<double>();
  CHECK(out.total.item<double>() == Approx(2 * ce + 0.5 * dice).epsilon(1e-6));
  REQUIRE(out.terms.size() == 1);
  CHECK(out.terms[0].first == "ce_dice");

  auto sum = build(json::parse(R"({"terms": [
      {"name": "cross_entropy", "weight": 1, "ignore_index": 255},
      {"name": "soft_dice", "weight": 0.5, "skip_absent": true}]})"),
                   "run.json");
  out = sum(in);
  const double dice_present = functional::soft_dice(in.logits, in.target, 1e-6, 255, true).item<double>();
  const double plain_ce = functional::cross_entropy(in.logits, in.target).item<double>();
  CHECK(out.total.item<double>() == Approx(plain_ce + 0.5 * dice_present).epsilon(1e-6));
  REQUIRE(out.terms.size() == 2);
  CHECK(out.terms[1].first == "soft_dice");
  CHECK(out.terms[1].second.item<double>() == Approx(dice_present));
  CHECK(sum->children().size() == 2);
  auto copy = std::dynamic_pointer_cast<CompositeLossImpl>(sum->clone());
  REQUIRE(copy);
  CHECK(copy->forward(in).total.item<double>() == Approx(out.total.item<double>()));

  // A term that needs inputs the caller did not give names them.
  auto multibox = build(json{{"name", "multibox"}, {"alpha", 1.0}}, "run.json");
  CHECK_THROWS_WITH(multibox(in), Catch::Contains("multibox") && Catch::Contains("locations"));
}

TEST_CASE("losses::build rejects unknown keys and names with the key path", "[losses][config]") {
  CHECK_THROWS_AS(build(json{{"name", "soft_dice"}, {"epss", 1}}, "run.json"), ostrov::ConfigError);
  CHECK_THROWS_WITH(build(json{{"name", "soft_dice"}, {"epss", 1}}, "run.json"),
                    Catch::Contains("run.json") && Catch::Contains("loss.epss"));
  CHECK_THROWS_WITH(build(json::parse(R"({"terms": [{"name": "soft_dice"}, {"name": "cross_entropy", "wieght": 2}]})"),
                          "run.json"),
                    Catch::Contains("loss.terms[1].wieght"));
  CHECK_THROWS_WITH(build(json{{"name", "focal"}}, "run.json"),
                    Catch::Contains("loss.name") && Catch::Contains("focal") &&
                        Catch::Contains("cross_entropy"));
  CHECK_THROWS_WITH(build(json{{"name", "soft_dice"}, {"eps", "small"}}, "run.json"),
                    Catch::Contains("loss.eps"));
  CHECK_THROWS_WITH(build(json{{"terms", json::array()}}, "run.json"), Catch::Contains("loss.terms"));
  CHECK_THROWS_WITH(build(json::parse(R"({"terms": [{"name": "soft_dice"}], "name": "x"})"), "run.json"),
                    Catch::Contains("loss.name"));
  CHECK_THROWS_WITH(build(json{{"name", "multibox"}, {"alpha", -1}}, "run.json"),
                    Catch::Contains("loss") && Catch::Contains("alpha"));
  CHECK_THROWS_AS(build(json{{"weight", 1}}, "run.json"), ostrov::ConfigError);
}

namespace {

// A user's loss: scale * mean |logits|.
struct MeanAbsImpl : torch::nn::Module, LossTermModule {
  explicit MeanAbsImpl(double scale) : scale(scale) {}
  at::Tensor compute(const LossInputs& in) override {
    return need(in.logits, "mean_abs", "logits").abs().mean() * scale;
  }
  double scale;
};

}  // namespace

TEST_CASE("losses::register_loss: a user's term in a weighted sum, with the same checks",
          "[losses][config]") {
  const auto names = loss_names();
  CHECK(std::vector<std::string>(names.begin(), names.begin() + 7) ==
        std::vector<std::string>{"cross_entropy", "soft_dice", "ce_dice", "multibox", "halo",
                                 "direction", "energy"});
  const LossEntry entry{"mean_abs", [](ostrov::io::ConfigReader& r) -> LossTerm::Make {
                          const auto scale = r.get<double>("scale", 1.0);
                          return [scale] { return std::make_shared<MeanAbsImpl>(scale); };
                        }};
  if (std::find(names.begin(), names.end(), "mean_abs") == names.end()) register_loss(entry);
  CHECK_THROWS_WITH(register_loss(entry), Catch::Contains("\"mean_abs\" exists"));
  CHECK_THROWS_AS(register_loss({"ce_dice", entry.parse}), ostrov::Error);

  LossInputs in;
  in.logits = at::randn({2, 3, 4, 4});
  in.target = at::randint(0, 3, {2, 4, 4}, at::kLong);
  auto loss = build(json{{"terms", {{{"name", "cross_entropy"}},
                                    {{"name", "mean_abs"}, {"weight", 0.5}, {"scale", 2}}}}},
                    "run.json");
  const auto out = loss(in);
  const double ce = functional::cross_entropy(in.logits, in.target).item<double>();
  const double abs = in.logits.abs().mean().item<double>();
  REQUIRE(out.terms.size() == 2);
  CHECK(out.terms[1].first == "mean_abs");
  CHECK(out.terms[1].second.item<double>() == Approx(2 * abs));
  CHECK(out.total.item<double>() == Approx(ce + 0.5 * 2 * abs));
  // A clone (as a data-parallel replica) rebuilds the terms.
  auto copy = std::dynamic_pointer_cast<CompositeLossImpl>(loss->clone());
  REQUIRE(copy != nullptr);
  CHECK(copy->forward(in).total.item<double>() == Approx(out.total.item<double>()));

  CHECK_THROWS_WITH(build(json{{"name", "mean_abs"}, {"scael", 2}}, "run.json"),
                    Catch::Contains("run.json") && Catch::Contains("loss.scael"));
  CHECK_THROWS_WITH(build(json{{"name", "mean_abss"}}, "run.json"),
                    Catch::Contains("unknown loss \"mean_abss\"") && Catch::Contains("mean_abs"));
  // A term that is missing what it reads names the field.
  LossInputs empty;
  CHECK_THROWS_WITH(build(json{{"name", "mean_abs"}}, "run.json")(empty),
                    Catch::Contains("loss term \"mean_abs\" needs LossInputs::logits"));
  // A registered module that is not a loss term is refused when the config is read.
  const auto n = loss_names();
  if (std::find(n.begin(), n.end(), "not_a_term") == n.end()) {
    register_loss({"not_a_term", [](ostrov::io::ConfigReader&) -> LossTerm::Make {
                     return [] { return std::make_shared<torch::nn::Module>(); };
                   }});
  }
  CHECK_THROWS_WITH(build(json{{"name", "not_a_term"}}, "run.json"),
                    Catch::Contains("is not a losses::LossTermModule"));
}

TEST_CASE("build_class_map_loss refuses terms that need more than class scores and a class map",
          "[losses][config]") {
  const auto fit = class_map_loss_names();
  CHECK((fit == std::vector<std::string>{"cross_entropy", "soft_dice", "ce_dice"}));
  CHECK_NOTHROW(build_class_map_loss({{"name", "ce_dice"}}, "s.json"));
  CHECK_THROWS_WITH(build_class_map_loss({{"name", "weighted_cross_entropy"}}, "s.json"),
                    Catch::Contains("s.json: key loss.name: loss \"weighted_cross_entropy\" needs "
                                    "more than class scores and a class map") &&
                        Catch::Contains("cross_entropy, soft_dice, ce_dice"));
  CHECK_THROWS_WITH(
      build_class_map_loss({{"terms", {{{"name", "cross_entropy"}}, {{"name", "multibox"}}}}},
                           "s.json"),
      Catch::Contains("loss.terms[1].name: loss \"multibox\""));
  // build itself takes them all (the instance objectives read these names through it).
  CHECK_NOTHROW(build({{"name", "weighted_cross_entropy"}}, "s.json"));
}
