#include "catch.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/version.h>

#include "ostrov/train/distributed.h"
#include "support.h"

using ostrov::test::run;

TEST_CASE("ostrov info prints versions and threads as JSON", "[cli]") {
  auto r = run(std::string(OSTROV_CLI) + " info --json");
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.output);
  // The LibTorch the CLI was built against (1.13 on Debian 12, 2.6 on Debian 13).
  const std::string built = std::to_string(TORCH_VERSION_MAJOR) + "." +
                            std::to_string(TORCH_VERSION_MINOR) + ".";
  CHECK(j["torch"].get<std::string>().rfind(built, 0) == 0);
  CHECK(j["intra_op_threads"].get<int>() == j["available_cores"].get<int>());
  CHECK(j.contains("blas"));
  // Whether this build has NCCL, as the library says (CMake found it with a CUDA LibTorch).
  CHECK(j["nccl"].get<bool>() == ostrov::train::nccl_available());
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

TEST_CASE("ostrov config --check validates keys and data paths without training", "[cli]") {
  ostrov::test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "train");
  std::filesystem::create_directories(dir.path() / "val");
  nlohmann::json config = {
      {"task", "segmentation"},
      {"data",
       {{"format", "folder"},
        {"train", {{"root", dir / "train"}}},
        {"val", {{"root", dir / "val"}}},
        {"num_classes", 3}}},
      {"model", {{"name", "unet"}, {"depth", 2}, {"base_width", 4}}},
      {"train", {{"epochs", 1}}}};
  const std::string path = dir / "run.json";
  std::ofstream(path) << config.dump(2);
  const std::string check = std::string(OSTROV_CLI) + " config --check '" + path + "'";

  const auto ok = run(check);
  INFO(ok.output);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.output, Catch::Contains("ok (task segmentation, model unet, 3 classes)"));
  // A folder that is not there, through --set as well: exit 2 naming the key; nothing trained.
  const auto missing = run(check + " --set data.val.root=/no/such/folder", true);
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.output, Catch::Contains("data.val.root") && Catch::Contains("/no/such/folder"));
  // A model key the model does not read.
  config["model"]["depht"] = 3;
  std::ofstream(path) << config.dump(2);
  const auto typo = run(check, true);
  CHECK(typo.exit_code == 2);
  CHECK_THAT(typo.output, Catch::Contains("model.depht"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "runs"));
}

TEST_CASE("ostrov train: a device, precision, backend or loss the run cannot use exits 2 naming the key", "[cli]") {
  ostrov::test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "train");
  nlohmann::json config = {
      {"task", "segmentation"},
      {"data", {{"format", "folder"}, {"train", {{"root", dir / "train"}}}, {"num_classes", 2}}},
      {"model", {{"name", "unet"}, {"depth", 2}, {"base_width", 4}}},
      {"train", {{"epochs", 1}}}};
  const std::string path = dir / "run.json";
  std::ofstream(path) << config.dump(2);
  const std::string train = std::string(OSTROV_CLI) + " train '" + path + "' --out '" +
                            (dir / "out") + "'";
  // Each --set the run cannot use exits 2 naming the key, before anything is written.
  auto refused = [&](const std::string& set, const std::string& message) {
    INFO(set);
    const auto r = run(train + " --set " + set, true);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, Catch::Contains(message));
  };
  refused("train.precision=fp16", "run.json: train.precision \"fp16\" needs a CUDA device");
  refused("train.precision=fp8", "train.precision: unknown precision \"fp8\"");
  // The segmentation task gives its loss class scores and a class map only.
  refused("loss.name=weighted_cross_entropy",
          "run.json: key loss.name: loss \"weighted_cross_entropy\"");
  refused("train.distributed_backend=mpi", "train.distributed_backend: unknown backend \"mpi\"");
  refused("train.distributed_backend=nccl",
          "run.json: train.distributed_backend: backend \"nccl\" needs a CUDA device, the "
          "device is cpu");
  if (!torch::cuda::is_available()) {
    const auto cuda = run(train + " --set train.device=cuda", true);
    CHECK(cuda.exit_code == 2);
    CHECK_THAT(cuda.output, Catch::Contains("run.json: train.device: device \"cuda\" requested but "
                                            "CUDA is not available") &&
                                Catch::Contains("`ostrov info` reports cuda: false, cuda_devices: 0"));
  }
  CHECK_FALSE(std::filesystem::exists(dir.path() / "out" / "last.pt"));
}

TEST_CASE("every examples/configs/*.json trains a step on tiny data at its own paths", "[cli]") {
  // Shipped configs drift when options change: each one must still parse, build its model and
  // train one step on tiny data where the config looks for it. Their paths are relative to the
  // config file (../../scenes/{train,val}: COCO + masks; ../../items/{train,val}: class
  // folders), so each config is copied to examples/configs/ of a scratch checkout root and run
  // from another folder.
  using ostrov::test::quote;
  ostrov::test::TempDir dir;
  const std::string cli = std::string(OSTROV_CLI);
  const std::string here = "cd " + quote(dir.path().string()) + " && ";
  for (const char* split : {"train", "val"}) {
    auto scenes = run(here + cli + " make-scenes --count 2 --size 64x64 --seed 3 --out scenes/" +
                          split, true);
    INFO(scenes.output);
    REQUIRE(scenes.exit_code == 0);
    auto items = run(here + cli + " make-scenes --layout classes --count 24 --size 48x48 "
                                  "--min-scale 24 --max-scale 44 --seed 2 --out items/" + split,
                     true);
    INFO(items.output);
    REQUIRE(items.exit_code == 0);
  }
  const std::filesystem::path configs =
      std::filesystem::path(OSTROV_SOURCE_DIR) / "examples/configs";
  const std::filesystem::path copies = dir.path() / "examples/configs";
  std::filesystem::create_directories(copies);
  std::filesystem::create_directories(dir.path() / "elsewhere");
  const std::string elsewhere = "cd " + quote((dir.path() / "elsewhere").string()) + " && ";
  int count = 0;
  for (const auto& source : std::filesystem::directory_iterator(configs)) {
    if (source.path().extension() != ".json") continue;
    ++count;
    const std::filesystem::path config_path = copies / source.path().filename();
    std::filesystem::copy_file(source.path(), config_path);
    INFO(config_path.string());
    std::ifstream in(config_path);
    const auto config = nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
    // A starting-weights file is the user's (`ostrov export` of an earlier run): none here.
    const std::string no_weights =
        config["model"].contains("backbone_weights") ? " --set model.backbone_weights=" : "";
    const std::string out = "run_" + config_path.stem().string();
    auto r = run(elsewhere + cli + " train " + quote(config_path.string()) + " --out " + out +
                     " --set train.max_steps=1 --set train.batch_size=2 --set train.workers=0" +
                     no_weights,
                 /*merge_stderr=*/true);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(std::filesystem::exists(dir.path() / "elsewhere" / out / "last.pt"));
  }
  CHECK(count >= 10);
}

TEST_CASE("ostrov config --schema prints every key of a task, bad use exits 2", "[cli]") {
  const auto schema = run(std::string(OSTROV_CLI) + " config --schema detection");
  INFO(schema.output);
  CHECK(schema.exit_code == 0);
  // Keys of the task's sections, of one model only, and of the SSD objective, with defaults.
  CHECK_THAT(schema.output, Catch::Contains("data.num_classes") && Catch::Contains("train.lr") &&
                                Catch::Contains("model.reduced_tail") &&
                                Catch::Contains("loss.neg_pos_ratio"));
  CHECK(schema.output.find("(undocumented)") == std::string::npos);
  const auto unknown = run(std::string(OSTROV_CLI) + " config --schema detektion", true);
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.output, Catch::Contains("detektion") && Catch::Contains("segmentation"));
  const auto neither = run(std::string(OSTROV_CLI) + " config", true);
  CHECK(neither.exit_code == 2);
  CHECK_THAT(neither.output, Catch::Contains("--check") && Catch::Contains("--schema"));
}
