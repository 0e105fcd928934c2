#pragma once
// Tiny training runs for the tasks tests: scenes written by the library, configs of small
// models, and a few optimizer steps through tasks::train.

#include <string>

#include <nlohmann/json.hpp>

#include "ostrov/data/fashion_mnist.h"
#include "ostrov/data/scenes.h"
#include "ostrov/tasks/config.h"
#include "ostrov/tasks/run.h"
#include "support.h"

namespace ostrov::test {

/// DIR/train and DIR/val: `count` 64x64 scenes each (COCO + segmentation folders).
inline void write_tiny_scenes(const TempDir& dir, int64_t count = 4) {
  const data::FashionMnist items(data::FashionMnistSplit::kTrain);
  data::write_scenes(items, data::SceneOptions().width(64).height(64).seed(1), count,
                     dir / "train");
  data::write_scenes(items, data::SceneOptions().width(64).height(64).seed(2), count,
                     dir / "val");
}

inline nlohmann::json tiny_train_section(int64_t steps = 2) {
  return {{"max_steps", steps}, {"epochs", 1},    {"batch_size", 2}, {"optimizer", "adam"},
          {"lr", 0.01},         {"workers", 0},   {"seed", 3},       {"log_every", 1},
          {"threads", 1}};
}

inline nlohmann::json coco_split(const TempDir& dir, const std::string& name) {
  return {{"annotations", dir / (name + "/instances.json")}, {"images", dir / (name + "/images")}};
}

/// A run config of `task` over the tiny scenes with `model`.
inline nlohmann::json tiny_config(const TempDir& dir, const std::string& task,
                                  const nlohmann::json& model) {
  nlohmann::json data = {{"num_classes", 11}, {"image_size", {32, 32}}};
  if (task == "segmentation") {
    data["format"] = "folder";
    data["train"] = {{"root", dir / "train"}};
    data["val"] = {{"root", dir / "val"}};
  } else {
    data["format"] = "coco";
    data["train"] = coco_split(dir, "train");
    data["val"] = coco_split(dir, "val");
  }
  return {{"task", task}, {"model", model}, {"data", data}, {"train", tiny_train_section()}};
}

/// A small two-stage R-CNN's model section for the tiny scenes: "faster_rcnn" (detection, a
/// 64-pixel input) or "mask_rcnn" (instance): ResNet-18 at 16 channels, an FPN of 8, heads of 16.
inline nlohmann::json tiny_rcnn(const std::string& name) {
  nlohmann::json model = {{"name", name}, {"backbone_channels", 16}, {"fpn_channels", 8},
                          {"representation_size", 16}};
  if (name == "faster_rcnn") model["image_size"] = 64;
  if (name == "mask_rcnn") model["mask_channels"] = 8;
  return model;
}

/// Trains `config` into DIR/<name> and returns the folder.
inline std::string train_tiny(const TempDir& dir, const nlohmann::json& config,
                              const std::string& name) {
  const std::string out = dir / name;
  tasks::train(tasks::parse_run_config(config, dir / (name + ".json")),
               tasks::TrainRunOptions().out_dir(out));
  return out;
}

}  // namespace ostrov::test
