// tasks::Predictor: a checkpoint written by tasks::train predicts like `ostrov predict`, with
// no config and no training data, from several threads at once; bad input is refused clearly.
#include "catch.h"

#include <filesystem>
#include <fstream>
#include <thread>

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/image_folder.h"
#include "ostrov/io/checkpoint.h"
#include "ostrov/io/json.h"
#include "ostrov/ops/instance.h"
#include "ostrov/tasks/predictor.h"
#include "ostrov/tasks/run.h"
#include "ostrov/train/precision.h"
#include "ostrov/tasks/segmentation.h"
#include "tiny_runs.h"

namespace fs = std::filesystem;
using namespace ostrov;
using ostrov::test::quote;
using ostrov::test::run;
using ostrov::test::TempDir;

namespace {

std::string cli() { return std::string(OSTROV_CLI); }

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() &&
         (a.empty() || cv::countNonZero(a.reshape(1) != b.reshape(1)) == 0);
}

// `ostrov predict --checkpoint CKPT` (no config) on one image into DIR/<name>.
void cli_predict(const std::string& checkpoint, const std::string& image, const std::string& out) {
  auto r = run(cli() + " predict --checkpoint " + quote(checkpoint) + " --input " + quote(image) +
                   " --output " + quote(out),
               true);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

// Boxes, scores and labels of a Prediction against the JSON `ostrov predict` wrote.
void check_json_equals(const tasks::Prediction& p, const nlohmann::json& j) {
  REQUIRE(j["boxes"].size() == static_cast<size_t>(p.boxes.size(0)));
  for (int64_t i = 0; i < p.boxes.size(0); ++i) {
    for (int64_t k = 0; k < 4; ++k) {
      CHECK(j["boxes"][i][k].get<double>() == Approx(p.boxes[i][k].item<double>()).margin(1e-4));
    }
    CHECK(j["scores"][i].get<double>() == Approx(p.scores[i].item<double>()).margin(1e-6));
    CHECK(j["labels"][i].get<int64_t>() == p.labels[i].item<int64_t>());
  }
}

}  // namespace

TEST_CASE("Predictor: segmentation like ostrov predict, without data, batched, 4 threads",
          "[tasks][predictor]") {
  TempDir dir;
  test::write_tiny_scenes(dir);
  auto json = test::tiny_config(dir, "segmentation",
                                {{"name", "unet"}, {"depth", 2}, {"base_width", 4}});
  const auto out = test::train_tiny(dir, json, "seg");
  const std::string image_path = dir / "val/images/scene_000001.png";
  const cv::Mat image = core::read_image(image_path);

  const auto p = tasks::Predictor::load(out + "/best.pt", "cpu");
  CHECK(p.task() == "segmentation");
  CHECK(p.input_size() == ops::GridSize{32, 32});
  CHECK(p.class_names().size() == 11);
  const auto r = p.predict(image);
  REQUIRE(r.mask.type() == CV_8U);
  REQUIRE(r.mask.size() == image.size());  // the input's size, not the network's 32x32
  double lo = 0, hi = 0;
  cv::minMaxLoc(r.mask, &lo, &hi);
  REQUIRE(lo != hi);  // an untrained net's argmax varies: the comparisons below mean something
  CHECK(r.boxes.defined() == false);
  CHECK(r.top.empty());

  // By hand: the evaluation transform, the network, softmax, bilinear to 64x64, argmax.
  {
    auto task = tasks::load_task(p.config(), out + "/best.pt", torch::kCPU);
    std::mt19937_64 rng(0);
    data::Sample s;
    s.image = core::image_to_tensor(image);
    const auto x = (*task->transforms(false))(s, rng).image.unsqueeze(0);
    c10::InferenceMode guard;
    auto& net = dynamic_cast<tasks::SegmentationTask&>(*task);
    const auto probs = net.network().forward(x).softmax(1);
    const auto up = at::upsample_bilinear2d(probs, {64, 64}, false)[0].argmax(0).to(at::kByte);
    CHECK(same(r.mask, cv::Mat(64, 64, CV_8U, up.contiguous().data_ptr()).clone()));
  }

  // `ostrov predict` with no config writes the same mask.
  cli_predict(out + "/best.pt", image_path, dir / "cli");
  CHECK(same(cv::imread(dir / "cli/scene_000001.png", cv::IMREAD_UNCHANGED), r.mask));
  CHECK(fs::exists(dir / "cli/scene_000001_overlay.png"));
  const auto written = p.write(image, r, "mine", dir.path().string());
  CHECK(written == std::vector<std::string>{"mine.png", "mine_overlay.png"});
  CHECK(test::read_bytes(dir / "mine.png") == test::read_bytes(dir / "cli/scene_000001.png"));

  // Batched (images of different sizes), grey input, a 3x larger image.
  const cv::Mat other = core::read_image(dir / "val/images/scene_000002.png");
  cv::Mat big;
  cv::resize(image, big, cv::Size(192, 192));
  const auto batch = p.predict(std::vector<cv::Mat>{image, other, big});
  REQUIRE(batch.size() == 3);
  CHECK(same(batch[0].mask, r.mask));
  CHECK(same(batch[1].mask, p.predict(other).mask));
  CHECK(batch[2].mask.size() == cv::Size(192, 192));
  cv::Mat grey, grey_bgr, bgra;
  cv::cvtColor(image, grey, cv::COLOR_BGR2GRAY);
  cv::cvtColor(grey, grey_bgr, cv::COLOR_GRAY2BGR);
  CHECK(same(p.predict(grey).mask, p.predict(grey_bgr).mask));
  cv::cvtColor(image, bgra, cv::COLOR_BGR2BGRA);
  CHECK(same(p.predict(bgra).mask, r.mask));

  // Four threads predicting at once give what one thread gives.
  const std::vector<cv::Mat> inputs = {image, other, big};
  std::vector<std::vector<tasks::Prediction>> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (const auto& in : inputs) results[t].push_back(p.predict(in));
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& rs : results) {
    REQUIRE(rs.size() == 9);
    for (size_t i = 0; i < rs.size(); ++i) CHECK(same(rs[i].mask, batch[i % 3].mask));
  }

  // The training data deleted: the checkpoint alone still predicts the same.
  fs::remove_all(dir / "train");
  fs::remove_all(dir / "val");
  const auto alone = tasks::Predictor::load(out + "/best.pt", torch::kCPU);
  CHECK(same(alone.predict(image).mask, r.mask));
}

TEST_CASE("Predictor: bad images and files are refused naming what was expected",
          "[tasks][predictor][robustness]") {
  TempDir dir;
  test::write_tiny_scenes(dir, 2);
  auto json = test::tiny_config(dir, "segmentation",
                                {{"name", "unet"}, {"depth", 2}, {"base_width", 4}});
  json["train"]["max_steps"] = 1;
  const auto out = test::train_tiny(dir, json, "seg");
  const auto p = tasks::Predictor::load(out + "/last.pt");
  CHECK_THROWS_WITH(p.predict(cv::Mat()), Catch::Contains("image 0 is empty"));
  CHECK_THROWS_WITH(p.predict(cv::Mat(8, 8, CV_8UC2, cv::Scalar::all(1))),
                    Catch::Contains("2 channels"));
  CHECK_THROWS_WITH(p.predict(cv::Mat(8, 8, CV_16UC3, cv::Scalar::all(1))),
                    Catch::Contains("8-bit"));
  CHECK_THROWS_WITH(p.predict(std::vector<cv::Mat>{cv::Mat(8, 8, CV_8UC3), cv::Mat()}),
                    Catch::Contains("image 1 is empty"));

  CHECK_THROWS_AS(tasks::Predictor::load(dir / "none.pt"), IoError);
  CHECK_THROWS_WITH(tasks::Predictor::load(dir / "none.pt"), Catch::Contains("none.pt"));
  test::write_bytes(dir / "junk.pt", "this is not a checkpoint");
  CHECK_THROWS_AS(tasks::Predictor::load(dir / "junk.pt"), IoError);
  CHECK_THROWS_WITH(tasks::Predictor::load(dir / "junk.pt"), Catch::Contains("junk.pt"));
  // An ostrov checkpoint that carries no run config (saved by a user's own loop).
  torch::nn::Module bare;
  bare.register_parameter("w", at::zeros({2}));
  io::save_checkpoint(dir / "bare.pt", bare, nullptr, io::CheckpointMeta{});
  CHECK_THROWS_WITH(tasks::Predictor::load(dir / "bare.pt"),
                    Catch::Contains("bare.pt") && Catch::Contains("carries no run config"));
  // The checkpoint of another task's model: nothing is half loaded, the keys are named.
  auto det_json = test::tiny_config(dir, "detection", {{"name", "ssd_light"}, {"image_size", 64}});
  const auto det_config = tasks::parse_run_config(det_json, dir / "det.json");
  CHECK_THROWS_AS(tasks::Predictor::load(out + "/last.pt", det_config, torch::kCPU), IoError);
  CHECK_THROWS_WITH(tasks::Predictor::load(out + "/last.pt", det_config, torch::kCPU),
                    Catch::Contains("last.pt"));
}

TEST_CASE("Predictor: detection boxes in input pixels with the dataset's category ids",
          "[tasks][predictor]") {
  TempDir dir;
  test::write_tiny_scenes(dir);
  // Category ids 101..110: predictions must report these, not the contiguous labels 1..10.
  for (const char* split : {"train", "val"}) {
    const std::string file = dir / (std::string(split) + "/instances.json");
    auto coco = io::read_json(file);
    for (auto& c : coco["categories"]) c["id"] = c["id"].get<int64_t>() + 100;
    for (auto& a : coco["annotations"]) a["category_id"] = a["category_id"].get<int64_t>() + 100;
    io::write_json(file, coco);
  }
  auto json = test::tiny_config(dir, "detection", {{"name", "ssd_light"}, {"image_size", 64}});
  const auto out = test::train_tiny(dir, json, "det");
  const std::string image_path = dir / "val/images/scene_000001.png";
  const cv::Mat image = core::read_image(image_path);
  cv::Mat big;
  cv::resize(image, big, cv::Size(128, 96));

  const auto p = tasks::Predictor::load(out + "/last.pt");
  CHECK(p.task() == "detection");
  CHECK(p.input_size() == ops::GridSize{64, 64});
  CHECK(p.class_names().at(1) == "T-shirt/top");
  const auto r = p.predict(image);
  REQUIRE(r.boxes.size(0) > 0);  // score threshold 0.01 over 11 classes: an untrained net
                                 // still passes it somewhere
  CHECK(r.mask.empty());
  CHECK(r.names.size() == static_cast<size_t>(r.boxes.size(0)));
  CHECK(r.labels.min().item<int64_t>() >= 101);
  CHECK(r.labels.max().item<int64_t>() <= 110);
  CHECK(r.boxes.max().item<float>() <= 64.0f);
  for (size_t i = 0; i < r.names.size(); ++i) {
    const auto label = r.labels[static_cast<int64_t>(i)].item<int64_t>();
    CHECK(r.names[i] == p.class_names().at(static_cast<size_t>(label - 100)));
  }
  // On a 128x96 image the same detections come back scaled to its pixels.
  const auto scaled = p.predict(big);
  REQUIRE(scaled.boxes.size(0) == r.boxes.size(0));
  CHECK(at::allclose(scaled.boxes.select(1, 0), r.boxes.select(1, 0) * 2.0, 1e-3, 0.05));
  CHECK(at::allclose(scaled.boxes.select(1, 1), r.boxes.select(1, 1) * 1.5, 1e-3, 0.05));

  cli_predict(out + "/last.pt", image_path, dir / "cli");
  check_json_equals(r, io::read_json(dir / "cli/scene_000001.json"));

  // The evaluation's per-class AP is keyed by the same category ids.
  auto task = tasks::load_task(tasks::checkpoint_run_config(out + "/last.pt"), out + "/last.pt",
                               c10::Device(c10::kCPU));
  const auto per_class = tasks::evaluate(*task)["ap50_per_class"];
  REQUIRE_FALSE(per_class.empty());
  for (const auto& item : per_class.items()) {
    INFO(item.key());
    CHECK(std::stoi(item.key()) >= 101);
    CHECK(std::stoi(item.key()) <= 110);
  }

  fs::remove_all(dir / "train");
  fs::remove_all(dir / "val");
  const auto alone = tasks::Predictor::load(out + "/last.pt").predict(image);
  CHECK(at::equal(alone.labels, r.labels));
  CHECK(at::allclose(alone.boxes, r.boxes));
}

TEST_CASE("Predictor: instance masks at the input's size, like ostrov predict",
          "[tasks][predictor]") {
  TempDir dir;
  test::write_tiny_scenes(dir);
  auto json = test::tiny_config(dir, "instance",
                                {{"name", "deep_coloring"}, {"num_colors", 4}, {"depth", 2},
                                 {"base_width", 4}, {"min_size", 2}});
  json["loss"] = {{"name", "halo"}, {"margin", 2}, {"mu", 5.0}};
  const auto out = test::train_tiny(dir, json, "dc");
  const std::string image_path = dir / "val/images/scene_000002.png";
  const cv::Mat image = core::read_image(image_path);

  const auto p = tasks::Predictor::load(out + "/last.pt");
  const auto r = p.predict(image);
  REQUIRE(r.instance_masks.size() == static_cast<size_t>(r.boxes.size(0)));
  REQUIRE_FALSE(r.instance_masks.empty());
  for (size_t i = 0; i < r.instance_masks.size(); ++i) {
    CHECK(r.instance_masks[i].size() == image.size());
    CHECK(r.names[i] == "object");  // DeepColoring has no classes
  }
  CHECK(at::equal(r.labels, at::zeros({r.boxes.size(0)}, at::kLong)));
  // Each box encloses its mask.
  const auto first = at::from_blob(r.instance_masks[0].data, {64, 64}, at::kByte);
  CHECK(at::equal(ops::masks_to_boxes(first.unsqueeze(0))[0], r.boxes[0]));

  cli_predict(out + "/last.pt", image_path, dir / "cli");
  const auto j = io::read_json(dir / "cli/scene_000002.json");
  check_json_equals(r, j);
  REQUIRE(j["masks"].size() == r.instance_masks.size());
  for (size_t i = 0; i < r.instance_masks.size(); ++i) {
    const auto rle = ops::rle_from_string(j["masks"][i]["counts"].get<std::string>(), 64, 64);
    const auto decoded = ops::rle_decode(rle);
    CHECK(same(cv::Mat(64, 64, CV_8U, decoded.data_ptr()), r.instance_masks[i]));
  }
}

TEST_CASE("Predictor: classification's best classes with the class folders' names",
          "[tasks][predictor]") {
  TempDir dir;
  const data::FashionMnist items(data::FashionMnistSplit::kTrain);
  const auto options = data::SceneOptions().width(48).height(48).min_scale(24).max_scale(44)
                           .min_items(1).max_items(1).seed(2);
  data::write_item_folders(items, options, 12, dir / "items");
  const nlohmann::json json = {
      {"task", "classification"},
      {"data", {{"format", "image_folder"}, {"train", {{"root", dir / "items"}}},
                {"num_classes", 10}, {"image_size", {48, 48}}}},
      {"model", {{"name", "resnet18"}, {"backbone_channels", 8}}},
      {"train", test::tiny_train_section()}};
  const auto out = test::train_tiny(dir, json, "cls");
  std::string image_path;
  for (const auto& e : fs::recursive_directory_iterator(dir / "items")) {
    if (e.path().extension() == ".png") image_path = e.path().string();
  }
  const cv::Mat image = core::read_image(image_path);
  const auto p = tasks::Predictor::load(out + "/last.pt");
  CHECK(p.class_names() == data::item_folder_names());
  const auto r = p.predict(image);
  REQUIRE(r.top.size() == 5);
  double sum = 0;
  for (size_t i = 0; i < r.top.size(); ++i) {
    CHECK(r.top[i].name == data::item_folder_names().at(static_cast<size_t>(r.top[i].index)));
    if (i > 0) CHECK(r.top[i].probability <= r.top[i - 1].probability);
    sum += r.top[i].probability;
  }
  CHECK(sum <= 1.0 + 1e-6);
  CHECK(sum > 0.5 - 1e-6);  // five of ten classes hold at least half of the mass

  // `ostrov predict` with the class folders gone writes the same classes.
  fs::copy_file(image_path, dir / "item.png");
  fs::remove_all(dir / "items");
  cli_predict(out + "/last.pt", dir / "item.png", dir / "cli");
  const auto j = io::read_json(dir / "cli/item.json");
  REQUIRE(j["top"].size() == r.top.size());
  for (size_t i = 0; i < r.top.size(); ++i) {
    CHECK(j["top"][i]["class"] == r.top[i].index);
    CHECK(j["top"][i]["name"] == r.top[i].name);
    CHECK(j["top"][i]["probability"].get<double>() == Approx(r.top[i].probability));
  }
}

TEST_CASE("Predictor: overlapping tiles on a 3x larger image equal a whole-image pass",
          "[tasks][predictor]") {
  TempDir dir;
  test::write_tiny_scenes(dir, 2);
  auto json = test::tiny_config(dir, "segmentation",
                                {{"name", "unet"}, {"depth", 2}, {"base_width", 4}});
  json["train"]["max_steps"] = 1;
  json["data"]["image_size"] = {64, 64};
  const auto out = test::train_tiny(dir, json, "seg");
  const auto p = tasks::Predictor::load(out + "/last.pt");
  REQUIRE(p.input_size() == ops::GridSize{64, 64});
  cv::Mat big;  // 192 = 64 + 16 steps of 8: tiles start on the network's stride (4)
  cv::resize(core::read_image(dir / "val/images/scene_000001.png"), big, cv::Size(192, 192));

  // The network over the whole 192x192 image at once (it takes any size).
  auto task = tasks::load_task(p.config(), out + "/last.pt", torch::kCPU);
  auto& seg = dynamic_cast<tasks::SegmentationTask&>(*task);
  seg.keep_probabilities(true);
  c10::InferenceMode guard;
  const auto image = core::image_to_tensor(big);
  const auto whole = seg.network().forward(core::normalize(image).unsqueeze(0)).softmax(1)[0];

  // Margins of 28 pixels exceed the receptive field's reach (~23 pixels for this two-level
  // U-Net: `ostrov receptive-field` gives 32 at its bottleneck, the decoder adds ~14): equal
  // to float rounding.
  const auto tiled = seg.predict_tiled(image, /*overlap=*/56);
  REQUIRE(tiled.probabilities.sizes() == whole.sizes());
  CHECK(at::allclose(tiled.probabilities, whole, 1e-4, 1e-5));
  const auto via_predictor = p.predict(big, tasks::PredictOptions().tile(true).overlap(56));
  CHECK(via_predictor.mask.size() == cv::Size(192, 192));
  CHECK(same(via_predictor.mask, tiled.mask));
  // Without margins the tiles' borders show: the comparison above can fail.
  const auto seams = seg.predict_tiled(image, /*overlap=*/0);
  CHECK((seams.probabilities - whole).abs().max().item<double>() > 1e-3);
  // A size that is no whole number of steps is padded and cropped back.
  const auto odd = seg.predict_tiled(image.slice(1, 0, 150).slice(2, 0, 77), 56);
  CHECK(odd.mask.size() == cv::Size(77, 150));

  CHECK_THROWS_WITH(seg.predict_tiled(image, 64), Catch::Contains("overlap 64"));
  auto det_json = test::tiny_config(dir, "detection", {{"name", "ssd_light"}, {"image_size", 64}});
  auto det = tasks::make_task(tasks::parse_run_config(det_json, "d.json"), torch::kCPU);
  CHECK_THROWS_WITH(det->predict_tiled(image, 8), Catch::Contains("cannot predict by tiles"));
}

TEST_CASE("Predictor and evaluate in bf16: every task kind under autocast, results in float32",
          "[tasks][predictor][precision]") {
  TempDir dir;
  test::write_tiny_scenes(dir);
  const std::string image_path = dir / "val/images/scene_000001.png";
  const cv::Mat image = core::read_image(image_path);
  const nlohmann::json runs = {
      {"unet", {"segmentation", {{"name", "unet"}, {"depth", 2}, {"base_width", 4}}}},
      {"ssd_light", {"detection", {{"name", "ssd_light"}, {"image_size", 64}}}},
      {"faster_rcnn",
       {"detection", test::tiny_rcnn("faster_rcnn")}},
      {"mask_rcnn",
       {"instance", test::tiny_rcnn("mask_rcnn")}},
      {"deep_coloring", {"instance", {{"name", "deep_coloring"}, {"depth", 2}, {"base_width", 4}}}}};
  for (const auto& [name, run] : runs.items()) {
    INFO(name);
    auto json = test::tiny_config(dir, run[0].get<std::string>(), run[1]);
    if (name == "mask_rcnn") json["data"]["image_size"] = {64, 64};
    const std::string checkpoint = test::train_tiny(dir, json, name) + "/last.pt";

    const auto bf16 = tasks::Predictor::load(checkpoint, "cpu", "bf16");
    CHECK(bf16.precision() == train::Precision::bf16);
    const auto p = bf16.predict(image);
    for (const auto* t : {&p.probabilities, &p.boxes, &p.scores}) {
      if (t->defined()) CHECK(t->scalar_type() == at::kFloat);
    }
    CHECK(p.mask.empty() == (run[0] != "segmentation"));

    // The evaluation loss in bf16 is the float32 one up to bfloat16's rounding: close, but
    // not equal (equal would mean autocast never ran). The R-CNNs' validation losses sample
    // proposals ranked by rounded scores, so a few change: 15 % there (LibTorch 2.6 moves
    // Mask R-CNN's by 7 %), 5 % for the dense models.
    const bool rcnn = name == "faster_rcnn" || name == "mask_rcnn";
    auto task = tasks::load_task(tasks::checkpoint_run_config(checkpoint), checkpoint,
                                 c10::Device(c10::kCPU));
    const double fp32_loss = tasks::evaluate(*task)["loss"].get<double>();
    const double bf16_loss = tasks::evaluate(*task, train::Precision::bf16)["loss"].get<double>();
    CHECK(bf16_loss != fp32_loss);
    CHECK(std::abs(bf16_loss - fp32_loss) <= (rcnn ? 0.15 : 0.05) * std::abs(fp32_loss));
    CHECK(tasks::evaluate(*task)["loss"].get<double>() == fp32_loss);  // the guard is gone
  }
  // fp16 is CUDA's; on the CPU it is refused naming the option, before anything is read.
  CHECK_THROWS_WITH(tasks::Predictor::load("missing.pt", "cpu", "fp16"),
                    Catch::Contains("predict: precision") && Catch::Contains("fp16"));
  CHECK_THROWS_WITH(tasks::Predictor::load("missing.pt", "cpu", "fp8"),
                    Catch::Contains("unknown precision \"fp8\""));
  const std::string checkpoint = dir / "unet/last.pt";
  auto r = run(cli() + " predict --checkpoint " + quote(checkpoint) + " --input " +
                   quote(image_path) + " --output " + quote(dir / "p16") + " --precision fp16",
               true);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Catch::Contains("--precision \"fp16\" needs a CUDA device"));
  r = run(cli() + " eval --checkpoint " + quote(checkpoint) + " --precision bf16");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.output).contains("miou"));
}
