#pragma once
// The run config of `ostrov train/eval/predict` (DESIGN.md §2): top-level `task`, `model`,
// `data`, `loss`, `train`. Unknown keys are errors naming the file and key path.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ostrov/train/optim.h"

namespace ostrov::cli {

struct DataSplit {
  std::string root;         ///< format "folder" or "image_folder"
  std::string annotations;  ///< format "coco"
  std::string images;       ///< format "coco"
};

struct DataConfig {
  std::string format = "folder";  ///< "folder" | "coco" | "image_folder"
  DataSplit train, val;
  int64_t num_classes = 0;        ///< counting background
  int64_t height = 256, width = 256;
  nlohmann::json transforms;      ///< training transforms (null: resize + horizontal flip)
  bool skip_invalid = false;
};

struct TrainConfig {
  int64_t epochs = 10;
  int64_t max_steps = 0;
  double time_limit_s = 0.0;
  int64_t batch_size = 8;
  int64_t workers = 2;
  uint64_t seed = 0;
  std::string device = "cpu";
  int64_t threads = 0;
  int64_t log_every = 10;
  int64_t eval_every = 1;
  int64_t checkpoint_every = 0;
  int64_t early_stopping = 0;
  double grad_clip = 0.0;
  double distributed_timeout_s = 300.0;  ///< joining the group and every collective
  std::string best_metric;  ///< default per task (miou, map50, ap50, accuracy)
  train::OptimizerConfig optimizer;
  train::ScheduleConfig schedule;
};

struct RunConfig {
  std::string path;     ///< the file, for messages
  nlohmann::json json;  ///< after --set overrides (stored in checkpoints)
  std::string task;     ///< "segmentation" | "detection" | "instance" | "classification"
  nlohmann::json model;
  DataConfig data;
  nlohmann::json loss;
  TrainConfig train;
};

/// Reads `path`, applies `--set key.path=value` overrides, validates every key.
/// ostrov::ConfigError (exit 2) naming the file and key; ostrov::IoError for a missing file.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace ostrov::cli
