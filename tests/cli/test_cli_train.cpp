// The ostrov CLI end to end on tiny Fashion-MNIST scenes: make-scenes, train, resume, eval,
// predict, and the exit codes of bad configs and files.
#include "catch.h"

#include <algorithm>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support.h"

using ostrov::test::quote;
using ostrov::test::run;
using ostrov::test::TempDir;

namespace {

std::string cli() { return std::string(OSTROV_CLI); }

// A small U-Net config over DIR/train and DIR/val.
std::string write_config(const TempDir& dir, const nlohmann::json& train_overrides = {}) {
  nlohmann::json config = {
      {"task", "segmentation"},
      {"data",
       {{"format", "folder"},
        {"train", {{"root", dir / "train"}}},
        {"val", {{"root", dir / "val"}}},
        {"num_classes", 11},
        {"image_size", {32, 32}}}},
      {"model", {{"name", "unet"}, {"depth", 2}, {"base_width", 4}}},
      {"loss", {{"name", "cross_entropy"}}},
      {"train",
       {{"epochs", 2}, {"batch_size", 2}, {"optimizer", "adam"}, {"lr", 0.01}, {"workers", 0},
        {"seed", 3}, {"log_every", 1}, {"threads", 1}}}};
  if (train_overrides.is_object()) config["train"].update(train_overrides);
  const std::string path = dir / "run.json";
  std::ofstream(path) << config.dump(2);
  return path;
}

// The COCO files of DIR/<name> as a data split of a run config.
nlohmann::json coco_split(const TempDir& dir, const std::string& name) {
  return {{"annotations", dir / (name + "/instances.json")}, {"images", dir / (name + "/images")}};
}

// Checks every line of a metrics.jsonl (a finite loss; val lines carry `val_keys`) and returns
// the number of val lines.
int check_metrics_lines(const std::string& path, const std::vector<std::string>& val_keys) {
  std::ifstream lines(path);
  std::string line;
  int val = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    CHECK(std::isfinite(j["loss"].get<double>()));
    if (j["split"] == "val") {
      ++val;
      for (const auto& key : val_keys) CHECK(j.contains(key));
    }
  }
  return val;
}

void make_scenes(const TempDir& dir) {
  for (const char* split : {"train", "val"}) {
    auto r = run(cli() + " make-scenes --count 4 --size 64x64 --seed 1 --out " +
                     quote(dir / split),
                 true);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  }
}

}  // namespace

TEST_CASE("ostrov make-scenes writes the same files for the same seed", "[cli][train]") {
  TempDir dir;
  auto a = run(cli() + " make-scenes --count 3 --size 48x40 --seed 7 --out " + quote(dir / "a"), true);
  auto b = run(cli() + " make-scenes --count 3 --size 48x40 --seed 7 --out " + quote(dir / "b"), true);
  REQUIRE(a.exit_code == 0);
  REQUIRE(b.exit_code == 0);
  CHECK(ostrov::test::read_bytes(dir / "a/instances.json") ==
        ostrov::test::read_bytes(dir / "b/instances.json"));
  CHECK(ostrov::test::read_bytes(dir / "a/images/scene_000000.png") ==
        ostrov::test::read_bytes(dir / "b/images/scene_000000.png"));
  CHECK(std::filesystem::exists(dir / "a/masks/scene_000002.png"));
  auto bad = run(cli() + " make-scenes --count 3 --size 48by40 --out " + quote(dir / "c"), true);
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.output, Catch::Contains("48by40"));
}

TEST_CASE("ostrov train, resume, eval and predict on tiny scenes", "[cli][train]") {
  TempDir dir;
  make_scenes(dir);
  const std::string config = write_config(dir);
  const std::string out = dir / "run";
  auto t = run(cli() + " train " + quote(config) + " --out " + quote(out), true);
  INFO(t.output);
  REQUIRE(t.exit_code == 0);
  for (const char* f : {"last.pt", "best.pt", "metrics.jsonl", "loss.png"}) {
    CHECK(std::filesystem::exists(out + "/" + f));
  }
  // metrics.jsonl: one object per line with epoch, step, split, loss; val lines carry miou.
  std::ifstream lines(out + "/metrics.jsonl");
  std::string line;
  int val = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    CHECK(j.contains("epoch"));
    CHECK(j.contains("step"));
    CHECK(j.contains("loss"));
    if (j["split"] == "val") {
      ++val;
      CHECK(j.contains("miou"));
    }
  }
  CHECK(val == 2);

  // --resume with more epochs continues from step 4 (2 epochs x 2 batches).
  auto r = run(cli() + " train " + quote(config) + " --out " + quote(out) +
                   " --resume --set train.epochs=3",
               true);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("resuming") && Catch::Contains("step 4"));

  auto e = run(cli() + " eval " + quote(config) + " --checkpoint " + quote(out + "/best.pt"));
  REQUIRE(e.exit_code == 0);
  auto metrics = nlohmann::json::parse(e.output);  // stdout holds only the JSON object
  CHECK(metrics["miou"].is_number());
  CHECK(metrics["pixel_accuracy"].get<double>() > 0.0);
  CHECK(metrics["iou_per_class"].size() == 11);

  auto p = run(cli() + " predict " + quote(config) + " --checkpoint " + quote(out + "/best.pt") +
                   " --input " + quote(dir / "val/images") + " --output " + quote(dir / "pred"),
               true);
  INFO(p.output);
  REQUIRE(p.exit_code == 0);
  CHECK(std::filesystem::exists(dir / "pred/scene_000000.png"));
  CHECK(std::filesystem::exists(dir / "pred/scene_000000_overlay.png"));
}

TEST_CASE("ostrov train and eval: config errors exit 2 naming the key, data errors exit 1", "[cli][train]") {
  TempDir dir;
  make_scenes(dir);
  const std::string config = write_config(dir);
  auto unknown = run(cli() + " train " + quote(config) + " --out " + quote(dir / "o") +
                         " --set train.lrr=0.1",
                     true);
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.output, Catch::Contains("run.json") && Catch::Contains("train.lrr"));
  auto type = run(cli() + " train " + quote(config) + " --set train.lr=fast", true);
  CHECK(type.exit_code == 2);
  CHECK_THAT(type.output, Catch::Contains("train.lr"));
  auto path = run(cli() + " train " + quote(config) + " --set data.val.root=/no/such/dir", true);
  CHECK(path.exit_code == 2);
  CHECK_THAT(path.output, Catch::Contains("data.val.root"));
  auto missing = run(cli() + " eval " + quote(config) + " --checkpoint " + quote(dir / "none.pt"), true);
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.output, Catch::Contains("none.pt"));
  // A mask with a label >= num_classes is a data error naming the file.
  auto labels = run(cli() + " train " + quote(config) + " --out " + quote(dir / "o2") +
                        " --set data.num_classes=3",
                    true);
  CHECK(labels.exit_code == 1);
  CHECK_THAT(labels.output, Catch::Contains("scene_"));
}

TEST_CASE("ostrov train, eval and predict a light SSD on tiny COCO scenes", "[cli][train][detection]") {
  TempDir dir;
  make_scenes(dir);
  {  // One training image without objects: it must train without NaN (background only).
    const std::string file = dir / "train/instances.json";
    std::ifstream in(file);
    auto coco = nlohmann::json::parse(in);
    in.close();
    auto& anns = coco["annotations"];
    const auto first_image = coco["images"][0]["id"];
    nlohmann::json kept = nlohmann::json::array();
    for (const auto& a : anns) {
      if (a["image_id"] != first_image) kept.push_back(a);
    }
    REQUIRE(kept.size() < anns.size());
    anns = kept;
    std::ofstream(file) << coco.dump();
  }
  nlohmann::json config = {
      {"task", "detection"},
      {"data", {{"format", "coco"}, {"train", coco_split(dir, "train")}, {"val", coco_split(dir, "val")},
                {"num_classes", 11}}},
      {"model", {{"name", "ssd_light"}, {"image_size", 64}}},
      {"loss", {{"name", "multibox"}}},
      {"train",
       {{"epochs", 2}, {"batch_size", 2}, {"optimizer", "adam"}, {"lr", 0.001}, {"workers", 0},
        {"seed", 3}, {"log_every", 1}, {"threads", 1}}}};
  const std::string path = dir / "ssd.json";
  std::ofstream(path) << config.dump(2);
  const std::string out = dir / "run";
  auto t = run(cli() + " train " + quote(path) + " --out " + quote(out), true);
  INFO(t.output);
  REQUIRE(t.exit_code == 0);
  CHECK(check_metrics_lines(out + "/metrics.jsonl", {"map50", "map"}) == 2);

  // The Hungarian matcher trains through the same command.
  auto h = run(cli() + " train " + quote(path) + " --out " + quote(dir / "hungarian") +
                   " --set loss.matcher=hungarian --set train.epochs=1",
               true);
  INFO(h.output);
  CHECK(h.exit_code == 0);

  auto e = run(cli() + " eval " + quote(path) + " --checkpoint " + quote(out + "/last.pt"));
  REQUIRE(e.exit_code == 0);
  auto metrics = nlohmann::json::parse(e.output);
  CHECK(metrics["map50"].get<double>() >= 0.0);
  CHECK(metrics["map50"].get<double>() <= 1.0);
  CHECK(metrics["map"].is_number());
  CHECK(metrics["images"] == 4);

  auto p = run(cli() + " predict " + quote(path) + " --checkpoint " + quote(out + "/last.pt") +
                   " --input " + quote(dir / "val/images/scene_000001.png") + " --output " +
                   quote(dir / "pred"),
               true);
  INFO(p.output);
  REQUIRE(p.exit_code == 0);
  CHECK(std::filesystem::exists(dir / "pred/scene_000001_overlay.png"));
  std::ifstream json_file(dir / "pred/scene_000001.json");
  const auto pred = nlohmann::json::parse(json_file);
  REQUIRE(pred["boxes"].size() == pred["scores"].size());
  REQUIRE(pred["boxes"].size() == pred["labels"].size());
  REQUIRE(pred["boxes"].size() > 0);  // score threshold 0.01 over 11 classes: an untrained
                                      // net still passes it somewhere
  for (size_t i = 0; i < pred["boxes"].size(); ++i) {
    const auto& b = pred["boxes"][i];
    CHECK(b[0].get<double>() >= 0.0);
    CHECK(b[2].get<double>() <= 64.0);  // input-image pixels (the scenes are 64x64)
    const auto label = pred["labels"][i].get<int64_t>();
    CHECK(label >= 1);  // the dataset's category ids, 1..10
    CHECK(label <= 10);
  }

  auto bad = run(cli() + " train " + quote(path) + " --out " + quote(dir / "bad") +
                     " --set loss.matcher=greedy",
                 true);
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.output, Catch::Contains("loss.matcher") && Catch::Contains("greedy"));
  auto folder = run(cli() + " train " + quote(path) + " --out " + quote(dir / "bad") +
                        " --set data.format=folder --set data.train.root=" + quote(dir / "train"),
                    true);
  CHECK(folder.exit_code == 2);
  CHECK_FALSE(std::filesystem::exists(dir / "bad/last.pt"));
}

TEST_CASE("ostrov train, eval and predict DeepColoring on tiny COCO scenes", "[cli][train][instance]") {
  TempDir dir;
  make_scenes(dir);
  nlohmann::json config = {
      {"task", "instance"},
      {"data", {{"format", "coco"}, {"train", coco_split(dir, "train")}, {"val", coco_split(dir, "val")},
                {"num_classes", 11}, {"image_size", {32, 32}}}},
      {"model", {{"name", "deep_coloring"}, {"num_colors", 4}, {"depth", 2}, {"base_width", 4},
                 {"min_size", 2}}},
      {"loss", {{"name", "halo"}, {"margin", 2}, {"mu", 5.0}}},
      {"train",
       {{"epochs", 2}, {"batch_size", 2}, {"optimizer", "adam"}, {"lr", 0.01}, {"workers", 0},
        {"seed", 3}, {"log_every", 1}, {"threads", 1}}}};
  const std::string path = dir / "dc.json";
  std::ofstream(path) << config.dump(2);
  const std::string out = dir / "run";
  auto t = run(cli() + " train " + quote(path) + " --out " + quote(out), true);
  INFO(t.output);
  REQUIRE(t.exit_code == 0);
  CHECK(check_metrics_lines(out + "/metrics.jsonl", {"ap50", "sbd", "abs_dic"}) == 2);

  auto e = run(cli() + " eval " + quote(path) + " --checkpoint " + quote(out + "/last.pt"));
  REQUIRE(e.exit_code == 0);
  auto metrics = nlohmann::json::parse(e.output);
  CHECK(metrics["images"] == 4);
  CHECK(metrics["sbd"].get<double>() >= 0.0);
  CHECK(metrics["sbd"].get<double>() <= 1.0);
  CHECK(metrics["abs_dic"].get<double>() >= 0.0);

  auto p = run(cli() + " predict " + quote(path) + " --checkpoint " + quote(out + "/last.pt") +
                   " --input " + quote(dir / "val/images/scene_000002.png") + " --output " +
                   quote(dir / "pred"),
               true);
  INFO(p.output);
  REQUIRE(p.exit_code == 0);
  CHECK(std::filesystem::exists(dir / "pred/scene_000002_overlay.png"));
  std::ifstream json_file(dir / "pred/scene_000002.json");
  const auto pred = nlohmann::json::parse(json_file);
  REQUIRE(pred["masks"].size() == pred["boxes"].size());
  REQUIRE(pred["scores"].size() == pred["boxes"].size());
  for (const auto& m : pred["masks"]) {
    CHECK(m["size"] == nlohmann::json::array({64, 64}));  // the input's size, not the network's
    CHECK(m["counts"].is_string());
  }

  auto bad = run(cli() + " train " + quote(path) + " --out " + quote(dir / "bad") +
                     " --set model.name=yolo",
                 true);
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.output, Catch::Contains("model.name") && Catch::Contains("yolo"));

  // A run folder is never trained over by accident.
  auto again = run(cli() + " train " + quote(path) + " --out " + quote(out), true);
  CHECK(again.exit_code == 2);
  CHECK_THAT(again.output, Catch::Contains(out) && Catch::Contains("--force"));
  CHECK(std::filesystem::exists(out + "/last.pt"));

  // Two processes evaluate together: their merged metrics equal one process's evaluation of
  // the same weights, which needs no config (the checkpoint carries it).
  auto dp = run(cli() + " train " + quote(path) + " --out " + quote(dir / "dp") +
                    " --nproc 2 --set train.epochs=1",
                true);
  INFO(dp.output);
  REQUIRE(dp.exit_code == 0);
  std::ifstream lines(dir / "dp/metrics.jsonl");
  std::string line;
  nlohmann::json merged;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["split"] == "val") merged = j;
  }
  REQUIRE(merged.is_object());
  auto one = run(cli() + " eval --checkpoint " + quote(dir / "dp/last.pt"));
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  const auto single = nlohmann::json::parse(one.output);
  CHECK(merged["images"] == 4);
  CHECK(single["images"] == 4);
  for (const char* key : {"ap50", "ap", "sbd", "abs_dic", "loss"}) {
    INFO(key);
    CHECK(merged[key].get<double>() == Approx(single[key].get<double>()).margin(1e-6));
  }
}

TEST_CASE("ostrov train, eval and predict Deep Watershed, SSDMask and the two-stage Mask R-CNN",
          "[cli][train][instance]") {
  TempDir dir;
  make_scenes(dir);
  {
    // Messy training data that must train without a crash or NaN: the first image has no
    // objects, one annotation has an empty mask (all-zero RLE) and one a 2x2-pixel object,
    // smaller than min_size.
    const auto file = dir / "train/instances.json";
    std::ifstream in(file);
    auto coco = nlohmann::json::parse(in);
    in.close();
    const auto first_image = coco["images"][0]["id"];
    nlohmann::json kept = nlohmann::json::array();
    for (const auto& a : coco["annotations"]) {
      if (a["image_id"] != first_image) kept.push_back(a);
    }
    REQUIRE(kept.size() >= 2);
    kept[0]["segmentation"] = {{"counts", {64 * 64}}, {"size", {64, 64}}};
    kept[1]["segmentation"] = nlohmann::json::array({{10, 10, 12, 10, 12, 12, 10, 12}});
    kept[1]["bbox"] = {10, 10, 2, 2};
    kept[1]["area"] = 4;
    coco["annotations"] = kept;
    std::ofstream(file) << coco.dump();
  }
  const nlohmann::json models = {
      {"deep_watershed",
       {{"model", {{"name", "deep_watershed"}, {"num_levels", 6}, {"cut_level", 2}, {"depth", 2},
                   {"base_width", 4}, {"min_size", 2}}},
        {"loss", {{"terms", {{{"name", "direction"}}, {{"name", "energy"}, {"weight", 2}}}}}}}},
      {"ssd_mask",
       {{"model", {{"name", "ssd_mask"}, {"feature_channels", 8}, {"mask_channels", 8},
                   {"mask_convs", 1}, {"roi_size", 7}}},
        {"loss", {{"name", "multibox"}, {"mask_weight", 2.0}, {"box_jitter", 0.1}}}}},
      {"mask_rcnn",
       {{"model", {{"name", "mask_rcnn"}, {"backbone_channels", 16}, {"fpn_channels", 8},
                   {"representation_size", 16}, {"mask_channels", 8}}},
        {"loss", {{"loss_mask_weight", 2.0}}}}}};
  for (const auto& [name, parts] : models.items()) {
    INFO(name);
    nlohmann::json config = {
        {"task", "instance"},
        {"data", {{"format", "coco"}, {"train", coco_split(dir, "train")},
                  {"val", coco_split(dir, "val")}, {"num_classes", 11}, {"image_size", {64, 64}}}},
        {"model", parts["model"]},
        {"loss", parts["loss"]},
        {"train",
         {{"epochs", 2}, {"batch_size", 2}, {"optimizer", "adam"}, {"lr", 0.01}, {"workers", 0},
          {"seed", 3}, {"log_every", 1}, {"threads", 1}}}};
    const std::string path = dir / (name + ".json");
    std::ofstream(path) << config.dump(2);
    const std::string out = dir / (name + "_run");
    auto t = run(cli() + " train " + quote(path) + " --out " + quote(out), true);
    INFO(t.output);
    REQUIRE(t.exit_code == 0);
    CHECK(check_metrics_lines(out + "/metrics.jsonl", {"ap50", "sbd", "abs_dic"}) == 2);

    auto e = run(cli() + " eval " + quote(path) + " --checkpoint " + quote(out + "/last.pt"));
    REQUIRE(e.exit_code == 0);
    auto metrics = nlohmann::json::parse(e.output);
    CHECK(metrics["images"] == 4);
    CHECK(metrics["ap50"].is_number());
    CHECK(metrics["abs_dic"].get<double>() >= 0.0);

    const std::filesystem::path pred_dir = dir / (name + "_pred");
    auto p = run(cli() + " predict " + quote(path) + " --checkpoint " + quote(out + "/last.pt") +
                     " --input " + quote(dir / "val/images/scene_000002.png") + " --output " +
                     quote(pred_dir),
                 true);
    INFO(p.output);
    REQUIRE(p.exit_code == 0);
    CHECK(std::filesystem::exists(pred_dir / "scene_000002_overlay.png"));
    std::ifstream json_file(pred_dir / "scene_000002.json");
    const auto pred = nlohmann::json::parse(json_file);
    REQUIRE(pred["masks"].size() == pred["boxes"].size());
    REQUIRE(pred["labels"].size() == pred["boxes"].size());
    for (size_t i = 0; i < pred["masks"].size(); ++i) {
      CHECK(pred["masks"][i]["size"] == nlohmann::json::array({64, 64}));
      const auto label = pred["labels"][i].get<int64_t>();
      // ssd_mask and mask_rcnn name the dataset's category ids (1..10); Deep Watershed says
      // "an object" (0).
      CHECK(label == (name != "deep_watershed" ? std::clamp<int64_t>(label, 1, 10) : 0));
    }
  }
  // A loss the model cannot use, and a bad mask-loss key: exit 2 naming the key.
  const std::string ws = dir / "deep_watershed.json";
  auto bad = run(cli() + " train " + quote(ws) + " --out " + quote(dir / "bad") +
                     " --set 'loss={\"name\":\"halo\"}'",
                 true);
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.output, Catch::Contains("deep_watershed"));
  auto jitter = run(cli() + " train " + quote(dir / "ssd_mask.json") + " --out " +
                        quote(dir / "bad") + " --set loss.box_jitter=0.9",
                    true);
  CHECK(jitter.exit_code == 2);
  CHECK_THAT(jitter.output, Catch::Contains("loss.box_jitter"));
  CHECK_FALSE(std::filesystem::exists(dir / "bad/last.pt"));
}

TEST_CASE("ostrov classification: class folders, train, eval, predict, export into a light SSD",
          "[cli][train][classification]") {
  TempDir dir;
  for (const char* split : {"train", "val"}) {
    auto r = run(cli() + " make-scenes --layout classes --count 24 --size 48x48 --min-scale 24 "
                         "--max-scale 44 --seed 2 --out " + quote(dir / ("items_" + std::string(split))),
                 true);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  }
  CHECK(std::filesystem::exists(dir / "items_train/classes.txt"));
  auto two = run(cli() + " make-scenes --layout classes --count 2 --max-items 3 --out " +
                     quote(dir / "items_bad"),
                 true);
  CHECK(two.exit_code == 2);
  CHECK_THAT(two.output, Catch::Contains("--layout classes"));
  CHECK_FALSE(std::filesystem::exists(dir / "items_bad"));

  nlohmann::json config = {
      {"task", "classification"},
      {"data",
       {{"format", "image_folder"},
        {"train", {{"root", dir / "items_train"}}},
        {"val", {{"root", dir / "items_val"}}},
        {"num_classes", 10},
        {"image_size", {48, 48}}}},
      {"model", {{"name", "resnet18"}, {"backbone_channels", 8}}},
      {"loss", {{"name", "cross_entropy"}, {"label_smoothing", 0.1}}},
      {"train",
       {{"epochs", 2}, {"batch_size", 4}, {"optimizer", "adam"}, {"lr", 0.002}, {"workers", 0},
        {"seed", 3}, {"log_every", 1}, {"threads", 1}}}};
  const std::string path = dir / "cls.json";
  std::ofstream(path) << config.dump(2);
  const std::string out = dir / "cls";
  auto t = run(cli() + " train " + quote(path) + " --out " + quote(out), true);
  INFO(t.output);
  REQUIRE(t.exit_code == 0);
  CHECK(check_metrics_lines(out + "/metrics.jsonl", {"accuracy", "top5_accuracy"}) == 2);

  auto e = run(cli() + " eval " + quote(path) + " --checkpoint " + quote(out + "/best.pt"));
  REQUIRE(e.exit_code == 0);
  const auto metrics = nlohmann::json::parse(e.output);
  CHECK(metrics["accuracy"].get<double>() >= 0.0);
  CHECK(metrics["accuracy"].get<double>() <= metrics["top5_accuracy"].get<double>());
  CHECK(metrics["accuracy_per_class"].size() == 10);

  // predict: top classes best first, probabilities summing to at most 1.
  std::string image;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir / "items_val")) {
    if (entry.path().extension() == ".png") image = entry.path().string();
  }
  auto p = run(cli() + " predict " + quote(path) + " --checkpoint " + quote(out + "/best.pt") +
                   " --input " + quote(image) + " --output " + quote(dir / "pred"),
               true);
  INFO(p.output);
  REQUIRE(p.exit_code == 0);
  const std::string stem = std::filesystem::path(image).stem().string();
  CHECK(std::filesystem::exists(dir / ("pred/" + stem + "_overlay.png")));
  std::ifstream pred_file(dir / ("pred/" + stem + ".json"));
  const auto pred = nlohmann::json::parse(pred_file);
  REQUIRE(pred["top"].size() == 5);
  CHECK(pred["top"][0]["probability"].get<double>() >= pred["top"][1]["probability"].get<double>());
  CHECK(pred["top"][0]["name"].get<std::string>().find('_') == 1);  // "3_Dress"-like folder names

  // export -> a torchvision-keyed state_dict; it starts a light SSD of the same width.
  const std::string weights = dir / "resnet18_w8.pt";
  auto x = run(cli() + " export " + quote(path) + " --checkpoint " + quote(out + "/best.pt") +
                   " --output " + quote(weights),
               true);
  INFO(x.output);
  REQUIRE(x.exit_code == 0);
  auto py = ostrov::test::run_python(
      dir, "import torch\nsd = torch.load('" + weights + "')\nprint(sd['fc.weight'].shape[0], "
           "sd['conv1.weight'].shape[0], len(sd))\n");
  INFO(py.output);
  CHECK(py.output.find("10 8 ") != std::string::npos);
  make_scenes(dir);
  nlohmann::json ssd = {
      {"task", "detection"},
      {"data", {{"format", "coco"}, {"train", coco_split(dir, "train")}, {"val", coco_split(dir, "val")},
                {"num_classes", 11}}},
      {"model", {{"name", "ssd_light"}, {"image_size", 64}, {"backbone_channels", 8},
                 {"backbone_weights", weights}}},
      {"train", {{"max_steps", 1}, {"batch_size", 2}, {"workers", 0}, {"threads", 1}}}};
  const std::string ssd_path = dir / "ssd.json";
  std::ofstream(ssd_path) << ssd.dump(2);
  auto s = run(cli() + " train " + quote(ssd_path) + " --out " + quote(dir / "ssd"), true);
  INFO(s.output);
  CHECK(s.exit_code == 0);
  auto wrong = run(cli() + " train " + quote(ssd_path) + " --out " + quote(dir / "ssd64") +
                       " --set model.backbone_channels=16",
                   true);
  CHECK(wrong.exit_code != 0);
  CHECK_THAT(wrong.output, Catch::Contains("resnet18_w8.pt"));

  // The same file starts a ResNet-18 U-Net on the scenes (a segmentation folder too); its
  // checkpoint then evaluates without the starting file.
  nlohmann::json seg = {
      {"task", "segmentation"},
      {"data", {{"format", "folder"}, {"train", {{"root", dir / "train"}}},
                {"val", {{"root", dir / "val"}}}, {"num_classes", 11}, {"image_size", {48, 48}}}},
      {"model", {{"name", "unet"}, {"backbone", "resnet18"}, {"backbone_channels", 8},
                 {"backbone_weights", weights}}},
      {"train", {{"max_steps", 2}, {"batch_size", 2}, {"workers", 0}, {"threads", 1}}}};
  const std::string seg_path = dir / "seg.json";
  std::ofstream(seg_path) << seg.dump(2);
  auto u = run(cli() + " train " + quote(seg_path) + " --out " + quote(dir / "seg"), true);
  INFO(u.output);
  REQUIRE(u.exit_code == 0);
  std::filesystem::rename(weights, weights + ".moved");
  auto ue = run(cli() + " eval " + quote(seg_path) + " --checkpoint " +
                quote(dir / "seg/last.pt"), true);
  INFO(ue.output);
  CHECK(ue.exit_code == 0);
  CHECK_THAT(ue.output, Catch::Contains("miou"));
  std::filesystem::rename(weights + ".moved", weights);

  // Bad input: class count, format, output path.
  auto classes = run(cli() + " train " + quote(path) + " --out " + quote(dir / "bad") +
                         " --set data.num_classes=5",
                     true);
  CHECK(classes.exit_code == 2);
  CHECK_THAT(classes.output, Catch::Contains("items_train") && Catch::Contains("10 class folders"));
  auto format = run(cli() + " train " + quote(path) + " --out " + quote(dir / "bad") +
                        " --set data.format=folder",
                    true);
  CHECK(format.exit_code == 2);
  CHECK_THAT(format.output, Catch::Contains("image_folder"));
  auto nowhere = run(cli() + " export " + quote(path) + " --checkpoint " + quote(out + "/best.pt") +
                         " --output " + quote(dir / "no/such/folder/w.pt"),
                     true);
  CHECK(nowhere.exit_code == 1);
  CHECK_THAT(nowhere.output, Catch::Contains("no/such/folder"));
  CHECK_FALSE(std::filesystem::exists(dir / "bad/last.pt"));
}
