// ostrov::tasks without the CLI: the registry, configs, the training objectives and whole runs.
#include "catch.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <ATen/ATen.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/losses/mask.h"
#include "ostrov/losses/segmentation.h"
#include "ostrov/losses/unet_weights.h"
#include "ostrov/models/detection/build.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "ostrov/models/detection/ssd_targets.h"
#include "ostrov/models/instance/build.h"
#include "ostrov/tasks/detection.h"
#include "ostrov/tasks/instance.h"
#include "ostrov/tasks/objectives.h"
#include "ostrov/tasks/run.h"
#include "ostrov/tasks/schema.h"
#include "ostrov/tasks/segmentation.h"
#include "ostrov/tasks/task.h"
#include "ostrov/train/history.h"
#include "tiny_runs.h"

namespace fs = std::filesystem;
using namespace ostrov;
using ostrov::test::TempDir;

namespace {

// A user's task: counts what the trainer asks of it, on a one-parameter model.
class CountingTask : public tasks::Task {
 public:
  CountingTask(const tasks::RunConfig& c, const c10::Device& d) : Task(c, d) {
    weight = model_.register_parameter("w", at::ones({1}));
  }
  torch::nn::Module& model() override { return model_; }
  at::Tensor loss(const data::Batch& b) override { return (weight * b.images.mean()).sum(); }
  void begin_evaluation() override {}
  void evaluate(const data::Batch&) override {}
  nlohmann::json end_evaluation() override { return {{"loss", 0.0}}; }
  std::vector<tasks::Prediction> predict(const at::Tensor& images,
                                         const std::vector<ops::GridSize>&) const override {
    return std::vector<tasks::Prediction>(static_cast<size_t>(images.size(0)));
  }
  cv::Mat overlay(const cv::Mat& bgr, const tasks::Prediction&) const override { return bgr; }

  torch::nn::Module model_;
  at::Tensor weight;
};

nlohmann::json minimal(const std::string& task, const std::string& format) {
  return {{"task", task},
          {"model", {{"name", "unet"}}},
          {"data", {{"format", format}, {"num_classes", 3}, {"train", {{"root", "/nowhere/x"}}}}}};
}

}  // namespace

TEST_CASE("tasks registry: the four built-in tasks, a user's task, clear errors", "[tasks]") {
  const auto names = tasks::task_names();
  for (const char* n : {"classification", "detection", "instance", "segmentation"}) {
    CHECK(std::find(names.begin(), names.end(), n) != names.end());
  }
  CHECK(tasks::find_task("detection").best_metric == "map50");
  CHECK(tasks::find_task("instance").best_metric == "ap50");
  CHECK(tasks::find_task("classification").formats == std::vector<std::string>{"image_folder"});
  CHECK_THROWS_WITH(tasks::find_task("tracking", "run.json"),
                    Catch::StartsWith("run.json: task \"tracking\" is not supported") &&
                        Catch::Contains("segmentation, detection, instance, classification"));

  if (std::find(names.begin(), names.end(), "counting") == names.end()) {
    tasks::register_task({"counting", "test task", "loss", {"folder"},
                          [](const tasks::RunConfig& c, const c10::Device& d) {
                            return std::make_unique<CountingTask>(c, d);
                          },
                          {}, {}, {}, {}});
  }
  CHECK_THROWS_AS(tasks::register_task({"counting", "again", "loss", {"folder"},
                                        [](const tasks::RunConfig& c, const c10::Device& d) {
                                          return std::make_unique<CountingTask>(c, d);
                                        },
                                        {}, {}, {}, {}}),
                  Error);
  auto config = tasks::parse_run_config(minimal("counting", "folder"), "user.json");
  CHECK(config.train.best_metric == "loss");
  auto task = tasks::make_task(config, torch::kCPU);
  REQUIRE(dynamic_cast<CountingTask*>(task.get()) != nullptr);
  CHECK(task->class_names() == std::vector<std::string>{"class 0", "class 1", "class 2"});
  CHECK(task->category_ids() == std::vector<int64_t>{0, 1, 2});
}

TEST_CASE("tasks::parse_run_config: validates keys, never touches the data", "[tasks]") {
  // The data folders do not exist: parsing a config (e.g. a checkpoint's) must not care.
  auto config = tasks::parse_run_config(minimal("segmentation", "folder"), "a.json");
  CHECK(config.data.train.root == "/nowhere/x");
  CHECK(config.train.best_metric == "miou");
  CHECK(config.data.format == "folder");
  // The data is checked when a dataset is built, naming the key.
  auto task = tasks::make_task(config, torch::kCPU);
  CHECK_THROWS_WITH(task->dataset("train"),
                    Catch::Contains("data.train.root") && Catch::Contains("/nowhere/x"));
  CHECK_THROWS_WITH(task->dataset("val"), Catch::Contains("missing required key data.val.root"));

  CHECK_THROWS_WITH(tasks::parse_run_config(minimal("detection", "folder"), "d.json"),
                    Catch::Contains("d.json") && Catch::Contains("task detection needs data.format coco"));
  auto named = minimal("segmentation", "folder");
  named["data"]["class_names"] = {"bg", "a"};
  CHECK_THROWS_WITH(tasks::parse_run_config(named, "n.json"),
                    Catch::Contains("data.class_names has 2 names, data.num_classes is 3"));
  named["data"]["class_names"] = {"bg", "a", "b"};
  named["data"]["category_ids"] = {0, 7, 9};
  const auto with_names = tasks::parse_run_config(named, "n.json");
  auto t = tasks::make_task(with_names, torch::kCPU);
  CHECK(t->class_names() == std::vector<std::string>{"bg", "a", "b"});
  CHECK(t->category_ids() == std::vector<int64_t>{0, 7, 9});
  CHECK(t->resolved_config()["data"]["category_ids"] == nlohmann::json({0, 7, 9}));
  auto unknown = minimal("segmentation", "folder");
  unknown["data"]["colour"] = 1;
  CHECK_THROWS_WITH(tasks::parse_run_config(unknown, "u.json"),
                    Catch::Contains("u.json") && Catch::Contains("data.colour"));
}

TEST_CASE("tasks::parse_run_config reports every section's problem in one error", "[tasks]") {
  nlohmann::json json = {
      {"task", "segmentation"},
      {"model", {{"name", "unet"}, {"depht", 3}, {"backbone_weights", "/nowhere/r18.pth"}}},
      {"loss", {{"name", "ce_dice"}, {"dice_wieght", 1}}},
      {"data", {{"num_classes", 3}, {"colour", 1}, {"train", {{"root", "/nowhere/x"}}}}},
      {"train", {{"epochs", "ten"}}},
      {"extra", true}};
  try {
    tasks::parse_run_config(json, "all.json");
    FAIL("no error");
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    for (const char* key : {"data.colour", "train.epochs", "extra", "model.depht", "loss.dice_wieght"}) {
      CHECK_THAT(message, Catch::Contains(key));
    }
    // Nothing was read: the missing folder and weights file are not what it reports.
    CHECK_THAT(message, !Catch::Contains("/nowhere"));
  }
  // Detection: the model's and the objective's keys too.
  auto det = minimal("detection", "coco");
  det["model"] = {{"name", "ssd_light"}, {"image_size", 16}};
  det["loss"] = {{"matcher", "greedy"}};
  CHECK_THROWS_WITH(tasks::parse_run_config(det, "d.json"),
                    Catch::Contains("model.image_size") && Catch::Contains("loss.matcher"));
  // Instance: the model's keys and its objective's loss, both before anything is built.
  auto inst = minimal("instance", "coco");
  inst["data"]["train"] = {{"images", "/nowhere/x"}, {"annotations", "/nowhere/x.json"}};
  inst["model"] = {{"name", "deep_watershed"}, {"cut_levle", 2}};
  inst["loss"] = {{"name", "halo"}};
  CHECK_THROWS_WITH(tasks::parse_run_config(inst, "i.json"),
                    Catch::Contains("model.cut_levle") &&
                        Catch::Contains("\"direction\" and \"energy\" only"));
  inst["model"] = {{"name", "ssd_mask"}};
  inst["loss"] = {{"mask_wieght", 1}};
  CHECK_THROWS_WITH(tasks::parse_run_config(inst, "i.json"), Catch::Contains("loss.mask_wieght"));
  // Classification: the classifier's keys and its loss too.
  auto cls = minimal("classification", "image_folder");
  cls["model"] = {{"name", "resnet18"}, {"base_channels", 8}};
  cls["loss"] = {{"name", "cross_entropy"}, {"label_smoothing", 1.5}};
  CHECK_THROWS_WITH(tasks::parse_run_config(cls, "c.json"),
                    Catch::Contains("model.base_channels is spelled model.backbone_channels") &&
                        Catch::Contains("loss.label_smoothing must be in [0, 1)"));
}

namespace {

// A user's instance model: every pixel brighter than a learnt threshold is one object.
struct ThresholdNetImpl : torch::nn::Module, models::InstanceNetwork {
  ThresholdNetImpl() { bias = register_parameter("bias", at::zeros({1})); }
  at::Tensor forward(const at::Tensor& x) { return x.mean(1) + bias; }
  std::vector<models::InstancePrediction> predict(const at::Tensor& x) override {
    std::vector<models::InstancePrediction> out;
    for (int64_t i = 0; i < x.size(0); ++i) {
      models::InstancePrediction p;
      p.masks = forward(x).gt(0)[i].unsqueeze(0).to(at::kByte);
      p.scores = at::ones({1});
      out.push_back(p);
    }
    return out;
  }
  at::Tensor bias;
};

// Its objective: mean squared distance of the bias from 1, counted per call.
struct ThresholdObjective : tasks::InstanceObjective {
  at::Tensor loss(const models::InstanceModel& model, const data::Batch& batch,
                  std::vector<models::InstancePrediction>* found) override {
    auto* net = model.as<ThresholdNetImpl>();
    if (found) *found = net->predict(batch.images);
    ++calls;
    return (net->bias - 1).pow(2).sum();
  }
  static inline int calls = 0;
};

}  // namespace

TEST_CASE("instance: a user's model kind and objective train through InstanceTask", "[tasks]") {
  const auto names = models::instance_model_names();
  if (std::find(names.begin(), names.end(), "threshold") == names.end()) {
    models::register_instance_model(
        {"threshold", [](io::ConfigReader&, int64_t, int64_t) {
           return models::InstanceRecipe{[] { return std::make_shared<ThresholdNetImpl>(); }, {}};
         }});
    tasks::register_instance_objective(
        {"threshold", [](const tasks::RunConfig&) -> std::unique_ptr<tasks::InstanceObjective> {
           return std::make_unique<ThresholdObjective>();
         }});
  }
  CHECK_THROWS_WITH(tasks::register_instance_objective(
                        {"threshold", [](const tasks::RunConfig&) {
                           return std::unique_ptr<tasks::InstanceObjective>();
                         }}),
                    Catch::Contains("\"threshold\" exists"));
  auto json = minimal("instance", "coco");
  json["data"]["train"] = {{"images", "/nowhere/x"}, {"annotations", "/nowhere/x.json"}};
  json["model"] = {{"name", "threshold"}};
  const auto config = tasks::parse_run_config(json, "t.json");
  auto task = tasks::make_task(config, torch::kCPU);
  data::Batch batch;
  batch.images = at::full({2, 3, 8, 8}, 0.5);
  const int before = ThresholdObjective::calls;
  CHECK(task->loss(batch).item<float>() == Approx(1.0));  // (0 - 1)^2
  CHECK(ThresholdObjective::calls == before + 1);
  const auto found = task->predict(batch.images, {{8, 8}, {16, 16}});
  REQUIRE(found.size() == 2);
  CHECK(found[1].instance_masks.size() == 1);
  CHECK(found[1].instance_masks[0].rows == 16);  // at the input's size
  CHECK(found[1].names == std::vector<std::string>{"object"});

  // A loss that the model kind's objective does not take is refused when the config is read.
  json["model"] = {{"name", "deep_coloring"}};
  json["loss"] = {{"name", "energy"}};
  CHECK_THROWS_WITH(tasks::parse_run_config(json, "t.json"),
                    Catch::Contains("loss.name must be \"halo\""));
}

TEST_CASE("instance: unet_border trains on the 3-class target under U-Net's weighted loss",
          "[tasks]") {
  // Two touching 6x5 objects side by side in a 16x16 image, and a separate 3x3 one.
  data::Batch batch;
  batch.images = at::rand({1, 3, 16, 16});
  auto masks = at::zeros({3, 16, 16}, at::kByte);
  masks[0].slice(0, 2, 8).slice(1, 2, 7).fill_(1);
  masks[1].slice(0, 2, 8).slice(1, 7, 12).fill_(1);
  masks[2].slice(0, 11, 14).slice(1, 11, 14).fill_(1);
  batch.instances = {masks};
  batch.labels = {at::tensor({1, 2, 1}, at::kLong)};
  const auto maps = models::masks_to_label_image(masks, 16, 16).unsqueeze(0);

  auto json = minimal("instance", "coco");
  json["data"]["train"] = {{"images", "/nowhere/x"}, {"annotations", "/nowhere/x.json"}};
  json["data"]["image_size"] = {16, 16};
  json["model"] = {{"name", "unet_border"}, {"border_width", 1}, {"depth", 2}, {"base_width", 4}};
  json["loss"] = {{"name", "weighted_cross_entropy"}, {"weight_map", {{"w0", 8}, {"sigma", 3}}}};
  auto task = tasks::make_task(tasks::parse_run_config(json, "u.json"), torch::kCPU);
  auto& net = *dynamic_cast<tasks::InstanceTask&>(*task).network().as<models::UNetBorderImpl>();
  const auto target = losses::unet_three_class_target(maps, 1);
  CHECK(target.eq(losses::kUNetBorder).sum().item<int64_t>() > 0);  // the contact is border
  const auto weights = losses::unet_weight_map(maps, losses::UNetWeightMapOptions().w0(8).sigma(3));
  const auto loss = task->loss(batch);  // train mode: BatchNorm on the batch, as below
  const auto expected =
      losses::functional::cross_entropy(net.forward(batch.images), target, {}, weights);
  CHECK(loss.item<double>() == Approx(expected.item<double>()).epsilon(1e-6));
  // Evaluation runs the same pass and reports the instance metrics.
  task->model().eval();
  task->begin_evaluation();
  task->evaluate(batch);
  const auto metrics = task->end_evaluation();
  CHECK(metrics.contains("ap50"));
  CHECK(metrics.contains("abs_dic"));

  // The foreground baseline with plain cross-entropy: CE on object / background.
  json["model"]["target"] = "foreground";
  json["loss"] = {{"name", "cross_entropy"}};
  auto plain = tasks::make_task(tasks::parse_run_config(json, "u.json"), torch::kCPU);
  auto& two = *dynamic_cast<tasks::InstanceTask&>(*plain).network().as<models::UNetBorderImpl>();
  const auto plain_loss = plain->loss(batch);
  CHECK(plain_loss.item<double>() ==
        Approx(losses::functional::cross_entropy(two.forward(batch.images), maps.ne(0).to(at::kLong))
                   .item<double>())
            .epsilon(1e-6));
  json["loss"] = {{"name", "halo"}};
  CHECK_THROWS_WITH(tasks::parse_run_config(json, "u.json"),
                    Catch::Contains("loss for model unet_border takes"));
}

TEST_CASE("tasks::set_validation_data points data.val at a folder, a COCO file or a scene set",
          "[tasks]") {
  auto seg = tasks::parse_run_config(minimal("segmentation", "folder"), "a.json");
  tasks::set_validation_data(seg, "/data/val");
  CHECK(seg.data.val.root == "/data/val");
  CHECK(seg.json["data"]["val"]["root"] == "/data/val");
  auto coco_json = minimal("detection", "coco");
  coco_json["model"] = {{"name", "ssd_light"}};
  coco_json["data"]["train"] = {{"annotations", "/a.json"}, {"images", "/img"}};
  auto det = tasks::parse_run_config(coco_json, "d.json");
  tasks::set_validation_data(det, "/sets/val/instances.json");
  CHECK(det.data.val.annotations == "/sets/val/instances.json");
  CHECK(det.data.val.images == "/sets/val/images");
  TempDir dir;
  tasks::set_validation_data(det, dir.path().string());
  CHECK(det.data.val.annotations == dir / "instances.json");
  CHECK(det.data.val.images == dir / "images");
}

TEST_CASE("tasks::load_run_config: a file's paths are relative to it, --set paths to the cwd",
          "[tasks]") {
  TempDir dir;
  fs::create_directories(dir.path() / "project" / "configs");
  const fs::path config = dir.path() / "project" / "configs" / "det.json";
  auto json = minimal("detection", "coco");
  json["model"] = {{"name", "ssd_light"}, {"backbone_weights", "../weights/r18.pt"}};
  json["data"]["train"] = {{"annotations", "../data/train.json"}, {"images", "/abs/images"}};
  json["data"]["val"] = {{"annotations", "val.json"}, {"images", "../data/val/./images"}};
  std::ofstream(config) << "// comments are allowed\n" << json.dump(2);

  const auto rc = tasks::load_run_config(config.string(), {"data.val.annotations=mine.json"});
  const fs::path project = fs::absolute(dir.path() / "project");
  CHECK(rc.data.train.annotations == (project / "data/train.json").string());
  CHECK(rc.data.train.images == "/abs/images");
  CHECK(rc.data.val.images == (project / "data/val/images").string());
  CHECK(rc.data.val.annotations == "mine.json");  // --set: as given, i.e. the current folder
  CHECK(rc.model["backbone_weights"] == (project / "weights/r18.pt").string());
  CHECK(rc.json["data"]["train"]["annotations"] == (project / "data/train.json").string());

  // A wrong type is left for the reader to name.
  nlohmann::json bad = {{"data", {{"train", {{"root", 3}}}}}, {"model", {{"weights", ""}}}};
  tasks::resolve_config_paths(bad, config.string());
  CHECK(bad["data"]["train"]["root"] == 3);
  CHECK(bad["model"]["weights"] == "");
}

TEST_CASE("COCO data: num_classes counts the background, and the error says so", "[tasks]") {
  TempDir dir;
  ostrov::test::write_tiny_scenes(dir, 2);  // Fashion-MNIST: 10 categories
  for (int64_t given : {10, 12}) {
    auto json = ostrov::test::tiny_config(dir, "detection", {{"name", "ssd_light"}});
    json["data"]["num_classes"] = given;
    auto task = tasks::make_task(tasks::parse_run_config(json, "det.json"), torch::kCPU);
    const std::string expected = "det.json: data.num_classes is " + std::to_string(given) +
                                 " but " + (dir / "train/instances.json") +
                                 " has 10 categories; data.num_classes counts the background "
                                 "too (label 0, as torchvision), so it must be 11";
    CHECK_THROWS_WITH(task->dataset("train"), Catch::Contains(expected));
    if (given == 10) {
      CHECK_THROWS_WITH(task->dataset("train"), Catch::Contains("counts the categories only"));
    } else {
      CHECK_THROWS_WITH(task->dataset("train"),
                        !Catch::Contains("counts the categories only"));
    }
  }
}

TEST_CASE("COCO data: num_classes left out is counted from the categories", "[tasks]") {
  TempDir dir;
  ostrov::test::write_tiny_scenes(dir, 2);  // Fashion-MNIST: 10 categories
  auto json = ostrov::test::tiny_config(dir, "detection", {{"name", "ssd_light"}});
  json["data"].erase("num_classes");
  const auto config = tasks::parse_run_config(json, "det.json");
  CHECK(config.data.num_classes == 0);
  auto task = tasks::make_task(config, torch::kCPU);
  CHECK(task->config().data.num_classes == 11);
  CHECK(task->resolved_config()["data"]["num_classes"] == 11);  // what checkpoints store
  CHECK(task->dataset("train")->size() == 2);

  // Without training data the validation file is counted; without any: a config error.
  json["data"].erase("train");
  auto counted = tasks::parse_run_config(json, "det.json");
  tasks::infer_num_classes(counted);
  CHECK(counted.data.num_classes == 11);
  json["data"].erase("val");
  CHECK_THROWS_WITH(tasks::make_task(tasks::parse_run_config(json, "det.json"), torch::kCPU),
                    Catch::Contains("det.json: missing required key data.num_classes"));
  // Folder data must give it.
  auto seg = ostrov::test::tiny_config(dir, "segmentation", {{"name", "unet"}});
  seg["data"].erase("num_classes");
  CHECK_THROWS_WITH(tasks::parse_run_config(seg, "seg.json"), Catch::Contains("num_classes"));
}

TEST_CASE("SSDObjective: its keys from the loss section, equal to ssd_targets + multibox_loss",
          "[tasks]") {
  at::manual_seed(0);
  const int64_t p = 30, c = 4;
  auto xy = at::rand({p, 2}) * 50;
  models::SSDOutput out;
  out.priors = at::cat({xy, xy + 5 + at::rand({p, 2}) * 20}, 1);
  out.locations = at::randn({2, p, 4});
  out.scores = at::randn({2, p, c});
  const std::vector<at::Tensor> boxes = {torch::tensor({{10.f, 10.f, 30.f, 28.f}, {5.f, 30.f, 25.f, 60.f}}),
                                         torch::tensor({{20.f, 5.f, 45.f, 35.f}})};
  const std::vector<at::Tensor> labels = {at::tensor({1, 3}, at::kLong), at::tensor({2}, at::kLong)};

  auto expected = [&](const models::SSDTargetOptions& t, const losses::MultiboxLossOptions& m) {
    const auto targets = models::ssd_targets(boxes, labels, out.priors, t);
    return losses::functional::multibox_loss(out.locations, out.scores, targets.locations,
                                             targets.labels, m)
        .loss.item<double>();
  };
  const auto plain = tasks::SSDObjective::from_config(nullptr, c, "x.json");
  CHECK(plain.targets().matcher() == "threshold");
  CHECK(plain(out, boxes, labels).item<double>() ==
        Approx(expected(models::SSDTargetOptions().num_classes(c), {})).epsilon(1e-6));

  const auto tuned = tasks::SSDObjective::from_config(
      {{"name", "multibox"}, {"alpha", 2.5}, {"matcher", "hungarian"}, {"iou_threshold", 0.3},
       {"neg_pos_ratio", 2}},
      c, "x.json");
  CHECK(tuned.targets().matcher() == "hungarian");
  CHECK(tuned.multibox().alpha() == 2.5);
  const double want = expected(models::SSDTargetOptions().num_classes(c).matcher("hungarian").iou_threshold(0.3),
                               losses::MultiboxLossOptions().alpha(2.5).neg_pos_ratio(2));
  CHECK(tuned(out, boxes, labels).item<double>() == Approx(want).epsilon(1e-6));
  CHECK(want != Approx(plain(out, boxes, labels).item<double>()));  // the keys changed it

  // hungarian_predicted: the targets come from the outputs' own offsets and probabilities.
  const auto predicted = tasks::SSDObjective::from_config(
      {{"matcher", "hungarian_predicted"}, {"location_weight", 0.5}, {"confidence_weight", 2.0}},
      c, "x.json");
  auto predicted_options = models::SSDTargetOptions().num_classes(c).matcher("hungarian_predicted");
  predicted_options.hungarian(
      ops::HungarianMatcherOptions().location_weight(0.5).confidence_weight(2.0));
  const auto predicted_targets = models::ssd_targets(
      boxes, labels, out.priors, predicted_options,
      {out.locations, at::softmax(out.scores, -1)});
  const double want_predicted =
      losses::functional::multibox_loss(out.locations, out.scores, predicted_targets.locations,
                                        predicted_targets.labels, {})
          .loss.item<double>();
  CHECK(predicted(out, boxes, labels).item<double>() == Approx(want_predicted).epsilon(1e-6));
  CHECK_FALSE(at::equal(predicted_targets.labels,
                        models::ssd_targets(boxes, labels, out.priors,
                                            models::SSDTargetOptions().num_classes(c).matcher(
                                                "hungarian"))
                            .labels));  // the predictions moved the assignment
  CHECK_THROWS_WITH(tasks::SSDObjective::from_config({{"confidence_weight", -1}}, c, "x.json"),
                    Catch::Contains("loss.confidence_weight"));

  CHECK_THROWS_WITH(tasks::SSDObjective::from_config({{"matcher", "greedy"}}, c, "x.json"),
                    Catch::Contains("x.json") && Catch::Contains("loss.matcher") &&
                        Catch::Contains("greedy"));
  CHECK_THROWS_WITH(tasks::SSDObjective::from_config({{"iou_threshold", 1.5}}, c, "x.json"),
                    Catch::Contains("loss.iou_threshold"));
  CHECK_THROWS_WITH(tasks::SSDObjective::from_config({{"name", "cross_entropy"}}, c, "x.json"),
                    Catch::Contains("loss.name") && Catch::Contains("multibox"));
  CHECK_THROWS_WITH(tasks::SSDObjective::from_config({{"mask_weight", 1}}, c, "x.json"),
                    Catch::Contains("unknown key loss.mask_weight"));
}

TEST_CASE("YOLOObjective: its keys from the loss section, equal to yolo_targets + yolo_loss",
          "[tasks]") {
  at::manual_seed(0);
  const int64_t s = 3, b = 2, k = 3, side = 96;
  models::YOLOOutput out;
  out.boxes = at::rand({2, s, s, b, 4});
  out.confidence = at::rand({2, s, s, b});
  out.class_logits = at::randn({2, s, s, k});
  const std::vector<at::Tensor> boxes = {torch::tensor({{10.f, 10.f, 30.f, 28.f}, {50.f, 40.f, 90.f, 95.f}}),
                                         torch::tensor({{20.f, 5.f, 45.f, 35.f}})};
  const std::vector<at::Tensor> labels = {at::tensor({1, 3}, at::kLong), at::tensor({2}, at::kLong)};
  auto expected = [&](const losses::YOLOLossOptions& o) {
    const auto t = models::yolo_targets(boxes, labels, s, side);
    return losses::functional::yolo_loss(out.boxes, out.confidence, out.class_logits, t.has_object,
                                         t.boxes, t.classes, o)
        .total.item<double>();
  };
  const auto defaults = tasks::YOLOObjective::from_config(nullptr, "y.json");
  CHECK(defaults.options().lambda_coord() == 5.0);
  CHECK(defaults(out, boxes, labels, s, side).total.item<double>() ==
        Approx(expected({})).epsilon(1e-6));
  const auto custom = tasks::YOLOObjective::from_config(
      {{"name", "yolo"}, {"lambda_coord", 2.0}, {"lambda_noobj", 0.1}, {"rescore", false}}, "y.json");
  const auto o = losses::YOLOLossOptions().lambda_coord(2.0).lambda_noobj(0.1).rescore(false);
  CHECK(custom(out, boxes, labels, s, side).total.item<double>() == Approx(expected(o)).epsilon(1e-6));
  CHECK(expected(o) != Approx(expected({})));
  CHECK_THROWS_WITH(tasks::YOLOObjective::from_config({{"name", "multibox"}}, "y.json"),
                    Catch::Contains("loss.name must be \"yolo\""));
  CHECK_THROWS_WITH(tasks::YOLOObjective::from_config({{"lambda_noobj", -1}}, "y.json"),
                    Catch::Contains("loss.lambda_noobj must be >= 0"));
  CHECK_THROWS_WITH(tasks::YOLOObjective::from_config({{"lambda_cord", 1}}, "y.json"),
                    Catch::Contains("loss.lambda_cord"));
}

TEST_CASE("detection: YOLO and the SSDs behind one Detector interface", "[tasks]") {
  TempDir dir;
  ostrov::test::write_tiny_scenes(dir, 2);
  auto json = ostrov::test::tiny_config(
      dir, "detection",
      {{"name", "yolo"}, {"image_size", 64}, {"grid", 2}, {"backbone_channels", 16},
       {"head_channels", 16}});
  auto task = tasks::make_task(tasks::parse_run_config(json, "y.json"), torch::kCPU);
  auto& detection = dynamic_cast<tasks::DetectionTask&>(*task);
  CHECK(detection.detector().image_size() == 64);
  CHECK(task->input_size() == ops::GridSize{64, 64});
  auto* net = dynamic_cast<models::YOLOImpl*>(&task->model());
  REQUIRE(net != nullptr);
  CHECK(net->options.grid() == 2);

  data::Batch batch;
  batch.images = at::rand({2, 3, 64, 64});
  batch.boxes = {torch::tensor({{4.f, 6.f, 30.f, 28.f}}), torch::tensor({{34.f, 30.f, 60.f, 62.f}})};
  batch.labels = {at::tensor({2}, at::kLong), at::tensor({5}, at::kLong)};
  const auto loss = task->loss(batch);
  const auto expected = tasks::YOLOObjective::from_config(nullptr, "y.json")(
      net->forward(batch.images), batch.boxes, batch.labels, 2, 64);
  CHECK(loss.item<double>() == Approx(expected.total.item<double>()).epsilon(1e-6));
  task->model().eval();
  task->begin_evaluation();
  task->evaluate(batch);
  const auto metrics = task->end_evaluation();
  CHECK(metrics["images"] == 2);
  CHECK(metrics.contains("map50"));
  const auto predictions = task->predict(batch.images, {{64, 64}, {128, 96}});
  REQUIRE(predictions.size() == 2);
  CHECK(predictions[1].boxes.size(1) == 4);

  // Unknown names list the SSDs and YOLO; a loss for another detector is refused.
  auto bad = json;
  bad["model"] = {{"name", "yolo9000"}};
  CHECK_THROWS_WITH(tasks::parse_run_config(bad, "y.json"),
                    Catch::Contains("unknown detector \"yolo9000\"") &&
                        Catch::Contains("ssd_light") && Catch::Contains("yolo"));
  bad = json;
  bad["loss"] = {{"name", "multibox"}};
  CHECK_THROWS_WITH(tasks::parse_run_config(bad, "y.json"), Catch::Contains("must be \"yolo\""));
  bad = json;
  bad["model"]["grid"] = 0;
  CHECK_THROWS_WITH(tasks::parse_run_config(bad, "y.json"), Catch::Contains("model.grid must be >= 1"));
  const auto names = tasks::detector_names();
  CHECK(std::find(names.begin(), names.end(), "ssd_light") != names.end());
  CHECK(names.back() == "yolo");
  CHECK_THROWS_WITH(tasks::register_detector({"ssd_light",
                                              [](const tasks::RunConfig&) {
                                                return std::unique_ptr<tasks::Detector>();
                                              },
                                              [](const tasks::RunConfig&) {},
                                              [](const tasks::RunConfig&) {}}),
                    Catch::Contains("is an SSD"));
  // The SSDs run through the same interface.
  auto ssd = tasks::make_task(
      tasks::parse_run_config(ostrov::test::tiny_config(dir, "detection", {{"name", "ssd_light"}, {"image_size", 64}}),
                              "s.json"),
      torch::kCPU);
  CHECK(dynamic_cast<tasks::DetectionTask&>(*ssd).detector().image_size() == 64);
  CHECK(std::isfinite(ssd->loss(batch).item<double>()));
}

TEST_CASE("detection: Faster R-CNN's weighted losses and its detections at the original size",
          "[tasks]") {
  TempDir dir;
  ostrov::test::write_tiny_scenes(dir, 2);
  auto model = ostrov::test::tiny_rcnn("faster_rcnn");
  model["score_threshold"] = 0.0;
  auto json = ostrov::test::tiny_config(dir, "detection", model);
  json["loss"] = {{"loss_classifier_weight", 2.0}, {"loss_box_reg_weight", 0.0}};
  auto task = tasks::make_task(tasks::parse_run_config(json, "f.json"), torch::kCPU);
  auto& detection = dynamic_cast<tasks::DetectionTask&>(*task);
  CHECK(detection.detector().image_size() == 64);
  CHECK(task->input_size() == ops::GridSize{64, 64});
  // The network's transform does not normalise again: the task's pipeline does, with its
  // ImageNet statistics.
  CHECK((detection.detector().image_mean() == std::vector<double>{0.485, 0.456, 0.406}));
  auto* net = dynamic_cast<models::FasterRCNNImpl*>(&task->model());
  REQUIRE(net != nullptr);
  CHECK_FALSE(net->options.masks());
  CHECK_FALSE(net->options.transform().normalize());

  data::Batch batch;
  batch.images = at::rand({2, 3, 64, 64});
  batch.boxes = {torch::tensor({{4.f, 6.f, 30.f, 28.f}, {10.f, 10.f, 10.f, 20.f}}),
                 torch::tensor({{34.f, 30.f, 60.f, 62.f}})};
  batch.labels = {at::tensor({2, 3}, at::kLong), at::tensor({5}, at::kLong)};
  // The task's loss: the network's own terms, classifier x2, box regression x0; the flat box
  // (zero width) left out.
  at::manual_seed(7);
  const double loss = task->loss(batch).item<double>();
  at::manual_seed(7);
  const auto out = net->forward(
      {batch.images[0], batch.images[1]},
      {{batch.boxes[0].narrow(0, 0, 1), batch.labels[0].narrow(0, 0, 1), at::Tensor()},
       {batch.boxes[1], batch.labels[1], at::Tensor()}});
  REQUIRE(out.losses.size() == 4);
  const double expected = out.losses.at("loss_objectness").item<double>() +
                          out.losses.at("loss_rpn_box_reg").item<double>() +
                          2.0 * out.losses.at("loss_classifier").item<double>();
  CHECK(loss == Approx(expected).epsilon(1e-6));
  CHECK(out.losses.at("loss_box_reg").item<double>() > 0.0);  // the weight 0 mattered

  task->model().eval();
  task->begin_evaluation();
  task->evaluate(batch);
  const auto metrics = task->end_evaluation();
  CHECK(metrics["images"] == 2);
  CHECK(metrics["map50"].is_number());
  // Predictions are the network's detections scaled from the 64x64 input to each image's size.
  const auto predictions = task->predict(batch.images, {{64, 64}, {128, 96}});
  const auto direct = net->detect({batch.images[0], batch.images[1]});
  REQUIRE(predictions.size() == 2);
  REQUIRE(direct[1].boxes.size(0) > 0);
  REQUIRE(predictions[1].boxes.size(0) == direct[1].boxes.size(0));
  const auto scale = at::tensor({96.0f / 64.0f, 2.0f, 96.0f / 64.0f, 2.0f});
  CHECK(at::allclose(predictions[1].boxes, direct[1].boxes * scale));
  CHECK(at::allclose(predictions[0].boxes, direct[0].boxes));

  // Its keys are checked where the config is read.
  auto bad = json;
  bad["loss"] = {{"loss_mask_weight", 1.0}};  // no mask branch
  CHECK_THROWS_WITH(tasks::parse_run_config(bad, "f.json"), Catch::Contains("loss.loss_mask_weight"));
  bad = json;
  bad["loss"] = {{"loss_objectness_weight", -1.0}};
  CHECK_THROWS_WITH(tasks::parse_run_config(bad, "f.json"),
                    Catch::Contains("loss.loss_objectness_weight must be >= 0"));
  bad = json;
  bad["model"]["preset"] = "large";
  CHECK_THROWS_WITH(tasks::parse_run_config(bad, "f.json"),
                    Catch::Contains("\"large\" is not a faster_rcnn preset"));
  bad = json;
  bad["model"]["mask_channels"] = 8;  // a mask_rcnn key
  CHECK_THROWS_WITH(tasks::parse_run_config(bad, "f.json"), Catch::Contains("model.mask_channels"));
  const auto names = tasks::detector_names();
  CHECK(std::find(names.begin(), names.end(), "faster_rcnn") != names.end());
  // ostrov receptive-field: the body, the FPN's and the RPN's 3x3 convolutions.
  const auto layers = models::detector_receptive_field_layers(json["model"], "f.json");
  REQUIRE(layers.size() > 2);
  CHECK(layers.back().name == "rpn.head.conv.0.0");
}

TEST_CASE("MaskObjective: weighted mask loss on jittered ground-truth boxes", "[tasks]") {
  at::manual_seed(1);
  models::SSDMask net(models::SSDMaskOptions(3).image_size(64).backbone_channels(8)
                           .feature_channels(8).mask_channels(8).mask_convs(1).roi_size(7));
  net->eval();
  const auto x = at::randn({1, 3, 64, 64});
  const auto features = net->forward(x).mask_features;
  auto masks = at::zeros({1, 64, 64}, at::kByte);
  masks.index_put_({0, at::indexing::Slice(10, 40), at::indexing::Slice(20, 50)}, 1);
  const std::vector<at::Tensor> boxes = {torch::tensor({{20.f, 10.f, 50.f, 40.f}})};
  const std::vector<at::Tensor> labels = {at::tensor({2}, at::kLong)};
  std::mt19937_64 rng(0);

  const nlohmann::json section = {{"mask_weight", 3.0}, {"box_jitter", 0.2}};
  io::ConfigReader r(section, "m.json", "loss");
  const tasks::MaskObjective objective(r);
  r.finish();
  // Not training: no jitter, so the value is the mask loss on the true box, times 3.
  const auto value = objective(*net, features, boxes, labels, {masks}, {64, 64}, false, rng);
  const auto rois = torch::tensor({{0.f, 20.f, 10.f, 50.f, 40.f}});
  const auto by_hand = losses::functional::mask_loss(
      net->mask_logits(features, rois), labels[0], models::mask_targets(masks, boxes[0], 14));
  CHECK(value.item<double>() == Approx(3.0 * by_hand.item<double>()).epsilon(1e-6));
  // Training: jittered boxes change the targets, and the rng moved.
  std::mt19937_64 fresh(0);
  const auto jittered = objective(*net, features, boxes, labels, {masks}, {64, 64}, true, rng);
  CHECK(jittered.item<double>() != Approx(value.item<double>()));
  CHECK(rng() != fresh());
  // No objects: undefined (nothing to add).
  CHECK_FALSE(objective(*net, features, {at::zeros({0, 4})}, {at::zeros({0}, at::kLong)},
                        {at::zeros({0, 64, 64}, at::kByte)}, {64, 64}, true, rng)
                  .defined());
  for (const auto& bad : {nlohmann::json{{"mask_weight", -1}}, nlohmann::json{{"box_jitter", 0.5}}}) {
    io::ConfigReader b(bad, "m.json", "loss");
    CHECK_THROWS_WITH(tasks::MaskObjective(b), Catch::Contains("m.json") && Catch::Contains("loss."));
  }
}

TEST_CASE("tasks::train writes a run folder and never trains over one by accident", "[tasks]") {
  TempDir dir;
  test::write_tiny_scenes(dir);
  const auto json = test::tiny_config(dir, "segmentation",
                                      {{"name", "unet"}, {"depth", 2}, {"base_width", 4}});
  const auto config = tasks::parse_run_config(json, dir / "seg.json");
  const std::string out = dir / "run";
  const auto result = tasks::train(config, tasks::TrainRunOptions().out_dir(out));
  CHECK(result.steps == 2);
  for (const char* f : {"last.pt", "best.pt", "metrics.jsonl", "loss.png", "config.json", "train.log"}) {
    CHECK(fs::exists(fs::path(out) / f));
  }
  const auto stored = io::read_json(out + "/config.json");
  CHECK(stored["task"] == "segmentation");
  CHECK(stored["data"]["class_names"].size() == 11);
  std::ifstream log(out + "/train.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Catch::Contains("trained 2 steps"));

  CHECK_THROWS_AS(tasks::train(config, tasks::TrainRunOptions().out_dir(out)), ConfigError);
  CHECK_THROWS_WITH(tasks::check_run_folder(tasks::TrainRunOptions().out_dir(out)),
                    Catch::Contains(out) && Catch::Contains("--force"));
  CHECK_NOTHROW(tasks::check_run_folder(tasks::TrainRunOptions().out_dir(out).force(true)));
  CHECK_NOTHROW(tasks::check_run_folder(tasks::TrainRunOptions().out_dir(out).resume(true)));

  // The evaluation of a loaded checkpoint equals the trainer's last evaluation of it.
  auto task = tasks::load_task(config, out + "/last.pt", torch::kCPU);
  const auto metrics = tasks::evaluate(*task);
  std::ifstream lines(out + "/metrics.jsonl");
  std::string line, last_val;
  while (std::getline(lines, line)) {
    if (nlohmann::json::parse(line)["split"] == "val") last_val = line;
  }
  REQUIRE_FALSE(last_val.empty());
  CHECK(metrics["miou"].get<double>() ==
        Approx(nlohmann::json::parse(last_val)["miou"].get<double>()).epsilon(1e-9));
}

namespace {

// The keys the reader accepts in one section of `config`, from the "known here" list of the
// unknown-key error it gives for a key added there.
std::set<std::string> keys_the_reader_accepts(nlohmann::json config, const std::string& section) {
  nlohmann::json* object = &config;
  for (size_t start = 0; start <= section.size();) {
    const size_t dot = std::min(section.find('.', start), section.size());
    object = &(*object)[section.substr(start, dot - start)];
    start = dot + 1;
  }
  (*object)["zz_not_a_key"] = 1;
  try {
    tasks::parse_run_config(config, "probe.json");
  } catch (const ConfigError& e) {
    const std::string text = e.what();
    const std::string needle = "unknown key " + section + ".zz_not_a_key (known here: ";
    const size_t begin = text.find(needle);
    REQUIRE(begin != std::string::npos);
    const size_t first = begin + needle.size();
    const std::string list = text.substr(first, text.find(')', first) - first);
    std::set<std::string> keys;
    for (size_t s = 0; s <= list.size();) {
      const size_t comma = std::min(list.find(", ", s), list.size());
      keys.insert(section + "." + list.substr(s, comma - s));
      s = comma + 2;
    }
    return keys;
  }
  FAIL("an unknown key in " << section << " was accepted");
  return {};
}

// Whether a schema key's condition holds for a config of this format, model and loss.
bool applies(const tasks::SchemaKey& key, const std::string& format, const std::string& model,
             const std::string& loss) {
  if (key.condition.empty() || key.condition == "without loss.terms") return true;
  auto listed = [&](const std::string& prefix, const std::string& value) {
    if (key.condition.rfind(prefix, 0) != 0) return false;
    const std::string values = " " + key.condition.substr(prefix.size()) + " ";
    return values.find(" " + value + " ") != std::string::npos;
  };
  return listed("data.format = ", format) || listed("model.name = ", model) ||
         listed("loss.name = ", loss);
}

}  // namespace

TEST_CASE("config_schema lists exactly the keys each section's reader accepts", "[tasks][schema]") {
  for (const auto& task : tasks::task_names()) {
    const tasks::TaskEntry entry = tasks::find_task(task);  // a copy: GCC 14's -Wdangling-reference
    const auto schema = tasks::config_schema(task);
    std::vector<std::string> models = entry.model_names();
    std::vector<std::string> losses = entry.loss_names ? entry.loss_names() : std::vector<std::string>{""};
    // Every format with the first model, every model, every loss: a config of each, and in
    // every object section a key the reader does not know.
    struct Case {
      std::string format, model, loss;
    };
    std::vector<Case> cases;
    for (const auto& f : entry.formats) cases.push_back({f, models.front(), losses.front()});
    for (const auto& m : models) cases.push_back({entry.formats.front(), m, losses.front()});
    for (const auto& l : losses) cases.push_back({entry.formats.front(), models.front(), l});
    for (const auto& c : cases) {
      const nlohmann::json split = c.format == "coco"
                                       ? nlohmann::json{{"annotations", "a.json"}, {"images", "i"}}
                                       : nlohmann::json{{"root", "r"}};
      nlohmann::json config = {
          {"task", task},
          {"data", {{"format", c.format}, {"num_classes", 3}, {"train", split}, {"val", split}}},
          {"model", {{"name", c.model}}},
          {"train", {{"epochs", 1}, {"schedule", {{"name", "cosine"}}}}}};
      if (!c.loss.empty()) config["loss"] = {{"name", c.loss}};
      std::vector<std::string> sections = {"data", "data.train", "model", "train",
                                           "train.schedule"};
      // An instance model's loss needs its name once the section is given; the others read
      // an empty one.
      if (task != "instance") sections.push_back("loss");
      if (config["loss"].is_null()) config["loss"] = nlohmann::json::object();
      for (const auto& section : sections) {
        INFO(task << " " << c.format << " " << c.model << " " << c.loss << ": " << section);
        std::set<std::string> listed;
        for (const auto& key : schema) {
          const bool direct = key.path.rfind(section + ".", 0) == 0 &&
                              key.path.find('.', section.size() + 1) == std::string::npos &&
                              key.path.find('[') == std::string::npos;
          if (direct && applies(key, c.format, c.model, c.loss)) listed.insert(key.path);
        }
        CHECK(keys_the_reader_accepts(config, section) == listed);
      }
    }
  }
}

TEST_CASE("config_schema describes every key, and its table holds no other", "[tasks][schema]") {
  std::set<std::string> read;
  for (const auto& task : tasks::task_names()) {
    for (const auto& key : tasks::config_schema(task)) {
      INFO(task << ": " << key.path);
      CHECK_FALSE(key.description.empty());
      read.insert(key.path);
    }
  }
  for (const auto& path : tasks::described_keys()) {
    INFO(path);
    CHECK(read.count(path) == 1);
  }
  // Types, defaults and conditions as the readers have them.
  const auto detection = tasks::config_schema("detection");
  auto find = [&](const std::string& path) {
    const auto it = std::find_if(detection.begin(), detection.end(),
                                 [&](const tasks::SchemaKey& k) { return k.path == path; });
    REQUIRE(it != detection.end());
    return *it;
  };
  CHECK(find("train.lr").type == "number");
  CHECK(find("train.lr").fallback == 0.01);
  CHECK(find("train.betas").fallback == nlohmann::json({0.9, 0.999}));
  CHECK(find("model.name").required);
  CHECK(find("loss.iou_threshold").fallback == 0.5);
  CHECK(find("data.num_classes").type == "integer");
  CHECK(find("model.reduced_tail").condition == "model.name = ssdlite320_mobilenet_v3_large");
  const auto segmentation = tasks::config_schema("segmentation");
  const auto root = std::find_if(segmentation.begin(), segmentation.end(),
                                 [](const tasks::SchemaKey& k) { return k.path == "data.train.root"; });
  REQUIRE(root != segmentation.end());
  CHECK(root->condition == "data.format = folder");
  CHECK_THROWS_WITH(tasks::config_schema("segmentatoin"), Catch::Contains("segmentation"));
  const auto text = tasks::format_schema("detection", detection);
  CHECK_THAT(text, Catch::Contains("train.lr") && Catch::Contains("0.01") &&
                       Catch::Contains("[model.name = ssdlite320_mobilenet_v3_large]"));
}

TEST_CASE("train.precision bf16 trains detection and instance models through their custom ops",
          "[tasks][precision]") {
  // Autocast hands bfloat16 features to roi_align and nms (SSDMask's mask head, Mask R-CNN's
  // RoI heads and RPN, the SSD's post-processing in the evaluation after training).
  TempDir dir;
  test::write_tiny_scenes(dir);
  const nlohmann::json runs = {
      {"ssd_light", {"detection", {{"name", "ssd_light"}, {"image_size", 64}}}},
      {"ssd_mask",
       {"instance", {{"name", "ssd_mask"}, {"feature_channels", 8}, {"mask_channels", 8},
                     {"mask_convs", 1}, {"roi_size", 7}}}},
      {"mask_rcnn",
       {"instance", test::tiny_rcnn("mask_rcnn")}},
      {"faster_rcnn",
       {"detection", test::tiny_rcnn("faster_rcnn")}}};
  for (const auto& [name, run] : runs.items()) {
    INFO(name);
    auto json = test::tiny_config(dir, run[0].get<std::string>(), run[1]);
    json["data"]["image_size"] = {64, 64};
    json["train"]["precision"] = "bf16";
    const auto out = test::train_tiny(dir, json, name + "_bf16");
    const train::History history(out + "/metrics.jsonl", /*resume=*/true);
    int train_records = 0;
    for (const auto& r : history.records()) {
      if (r["split"] != "train") continue;
      ++train_records;
      CHECK(std::isfinite(r["loss"].get<double>()));
    }
    CHECK(train_records == 2);
  }
}
