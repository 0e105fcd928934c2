#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "support.h"

using ostrov::test::run;

TEST_CASE("ostrov info prints versions and threads as JSON", "[cli]") {
  auto r = run(std::string(OSTROV_CLI) + " info --json");
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.output);
  CHECK(j["torch"].get<std::string>().rfind("1.13", 0) == 0);
  CHECK(j["intra_op_threads"].get<int>() == j["available_cores"].get<int>());
  CHECK(j.contains("blas"));
}

TEST_CASE("ostrov usage errors exit 2 with a message on stderr", "[cli]") {
  auto none = run(std::string(OSTROV_CLI) + " 2>&1");
  CHECK(none.exit_code == 2);
  auto unknown = run(std::string(OSTROV_CLI) + " frobnicate", /*merge_stderr=*/true);
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.output, Catch::Contains("frobnicate"));
  auto help = run(std::string(OSTROV_CLI) + " --help");
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.output, Catch::Contains("info"));
}

TEST_CASE("ostrov receptive-field prints AlexNet's pool5 field of 195 px", "[cli]") {
  auto r = run(std::string(OSTROV_CLI) + " receptive-field --preset alexnet --json");
  REQUIRE(r.exit_code == 0);
  auto rows = nlohmann::json::parse(r.output);
  CHECK(rows.back()["layer"] == "pool5");
  CHECK(rows.back()["receptive_field"] == 195);
  CHECK(rows.back()["jump"] == 32);
  auto table = run(std::string(OSTROV_CLI) + " receptive-field --preset vgg16");
  CHECK_THAT(table.output, Catch::Contains("pool5") && Catch::Contains("212"));
  auto bad = run(std::string(OSTROV_CLI) + " receptive-field --preset lenet", true);
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.output, Catch::Contains("lenet"));
}

TEST_CASE("ostrov receptive-field CONFIG prints the model's encoder table", "[cli]") {
  ostrov::test::TempDir dir;
  const std::string config = dir / "run.json";
  std::ofstream(config) << R"({"task": "segmentation", "model": {"name": "fcn8s"}})";
  auto r = run(std::string(OSTROV_CLI) + " receptive-field " + config + " --json", true);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto rows = nlohmann::json::parse(r.output);
  CHECK(rows.back()["receptive_field"] == 355);  // fc6 as a 6x6 conv over pool5
  auto neither = run(std::string(OSTROV_CLI) + " receptive-field", true);
  CHECK(neither.exit_code == 2);
  CHECK_THAT(neither.output, Catch::Contains("--preset"));
}
