#include "catch.h"

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

TEST_CASE("read_json reports the file, line and column of a syntax error", "[io][json]") {
  TempDir dir;
  const std::string good = dir / "good.json";
  test::write_bytes(good, R"({"a": {"b": 1}})");
  CHECK(io::read_json(good)["a"]["b"] == 1);

  const std::string bad = dir / "bad.json";
  test::write_bytes(bad, "{\n  \"a\": 1,\n  \"b\": ,\n}\n");
  CHECK_THROWS_AS(io::read_json(bad), ConfigError);
  CHECK_THROWS_WITH(io::read_json(bad), Catch::Contains("bad.json:3:"));
  CHECK_THROWS_AS(io::read_json(dir / "missing.json"), IoError);
  CHECK_THROWS_WITH(io::read_json(dir / "missing.json"), Catch::Contains("missing.json"));
}

TEST_CASE("read_json accepts // and /* */ comments in a config", "[io][json]") {
  TempDir dir;
  const std::string path = dir / "commented.json";
  test::write_bytes(path, "// a U-Net for my scans\n{\n  \"model\": {\"name\": \"unet\"}, /* 4 levels */\n"
                          "  \"url\": \"http://example.org/a//b\" // inside a string it stays\n}\n");
  const auto j = io::read_json(path);
  CHECK(j["model"]["name"] == "unet");
  CHECK(j["url"] == "http://example.org/a//b");
  CHECK(j.size() == 2);
  // An unterminated comment is a syntax error with its line.
  test::write_bytes(path, "{\"a\": 1 /* never closed\n}\n");
  CHECK_THROWS_WITH(io::read_json(path), Catch::Contains("commented.json:"));
}

TEST_CASE("apply_override sets dotted keys with JSON or string values", "[io][json]") {
  io::Json config = {{"train", {{"lr", 0.1}}}, {"data", {{"val", {{"root", "/a"}}}}}};
  io::apply_override(config, "train.lr=0.01");
  io::apply_override(config, "data.val.root=/x/y");
  io::apply_override(config, "model.sizes=[1,2,3]");
  io::apply_override(config, "train.amp=true");
  CHECK(config["train"]["lr"] == 0.01);
  CHECK(config["data"]["val"]["root"] == "/x/y");
  CHECK(config["model"]["sizes"] == io::Json::array({1, 2, 3}));
  CHECK(config["train"]["amp"] == true);
  CHECK_THROWS_AS(io::apply_override(config, "novalue"), ConfigError);
  CHECK_THROWS_WITH(io::apply_override(config, "train.lr.x=1"), Catch::Contains("train.lr"));
  CHECK_THROWS_WITH(io::apply_override(config, "a..b=1"), Catch::Contains("empty key"));
}

TEST_CASE("ConfigReader types, defaults, required keys and unknown keys", "[io][json]") {
  io::Json j = {{"epochs", 5}, {"lr", 0.1}, {"name", "unet"}, {"nested", {{"x", 1}}}, {"lrr", 2}};
  io::ConfigReader r(j, "run.json", "train");
  CHECK(r.get<int>("epochs", 1) == 5);
  CHECK(r.get<double>("lr", 0.0) == 0.1);
  CHECK(r.get<double>("momentum", 0.9) == 0.9);
  CHECK(r.required<std::string>("name") == "unet");
  CHECK_THROWS_WITH(r.required<int>("batch_size"),
                    Catch::Contains("run.json") && Catch::Contains("train.batch_size"));
  CHECK_THROWS_WITH(r.get<int>("name", 0), Catch::Contains("train.name must be an integer"));
  auto nested = r.child("nested");
  CHECK(nested.get<int>("x", 0) == 1);
  nested.finish();
  CHECK_THROWS_WITH(r.finish(), Catch::Contains("unknown key train.lrr"));
  CHECK_THROWS_AS(io::ConfigReader(io::Json::array(), "f.json", "model"), ConfigError);
}
