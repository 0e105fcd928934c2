#pragma once
// The run config of a task (docs/architecture.md "Configs"): top-level `task`, `model`, `data`,
// `loss`, `train`. Unknown keys are errors naming the file and the key path. Reading a config
// never touches the data: folders and annotation files are checked when a task builds its
// datasets, so a config stored in a checkpoint predicts with the training data gone.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ostrov/train/optim.h"

namespace ostrov::tasks {

struct DataSplit {
  std::string root;         ///< format "folder" or "image_folder"
  std::string annotations;  ///< format "coco"
  std::string images;       ///< format "coco"
  bool empty() const { return root.empty() && annotations.empty(); }
};

struct DataConfig {
  std::string format = "folder";  ///< "folder" | "coco" | "image_folder"
  DataSplit train, val;
  int64_t num_classes = 0;        ///< counting background; 0: COCO data, from its categories
  int64_t height = 256, width = 256;
  nlohmann::json transforms;      ///< training transforms (null: the task's default)
  bool skip_invalid = false;
  /// Names of the contiguous labels 0..num_classes-1 (`data.class_names`); filled from the
  /// dataset by training, so checkpoints carry them. Empty: "class <i>".
  std::vector<std::string> class_names;
  /// The dataset's own category id of every contiguous label (`data.category_ids`, COCO);
  /// predictions report these. Empty: the labels themselves.
  std::vector<int64_t> category_ids;
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
  std::string best_metric;  ///< default: the task's (miou, map50, ap50, accuracy)
  train::OptimizerConfig optimizer;
  train::ScheduleConfig schedule;
};

struct RunConfig {
  std::string path;     ///< the file (or checkpoint) it came from, for messages
  nlohmann::json json;  ///< the config as given, after --set overrides
  std::string task;     ///< a registered task name (tasks::task_names())
  nlohmann::json model;
  DataConfig data;
  nlohmann::json loss;
  TrainConfig train;
};

/// Validates a config given as JSON; `where` names its file in errors. ostrov::ConfigError
/// naming `where` and the key path for unknown keys, wrong types and bad values.
RunConfig parse_run_config(nlohmann::json json, const std::string& where);

/// Makes the relative paths in a config file's JSON (data.{train,val}.{root,annotations,images},
/// model.weights, model.backbone_weights) absolute against the folder of `config_path`, so a
/// config finds its data from any working directory. Absolute paths and other keys unchanged.
void resolve_config_paths(nlohmann::json& json, const std::string& config_path);

/// Reads `path`, resolves its relative paths against its folder (resolve_config_paths), then
/// applies `--set key.path=value` overrides (paths in them stay relative to the current
/// directory) and validates every key.
/// ostrov::ConfigError (exit 2) naming the file and key; ostrov::IoError for a missing file.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// The config stored in a checkpoint written by a task's training (tasks::train), with
/// `overrides` applied. ostrov::IoError naming the file when it is not an ostrov checkpoint or
/// carries no run config.
RunConfig checkpoint_run_config(const std::string& checkpoint,
                                const std::vector<std::string>& overrides = {});

/// COCO data may leave `data.num_classes` out: this sets it to the number of categories in the
/// training annotations (the validation ones without training data) + 1 for the background,
/// logs it, and validates the model and loss keys with it. Nothing happens when num_classes is
/// set. make_task calls it. ConfigError naming the config when no COCO file is given or it does
/// not exist; DataError naming the file when it lists no categories.
void infer_num_classes(RunConfig& config);

/// Points `config`'s validation split at `path`: a folder for the folder formats; for COCO an
/// annotation file (images in `<its folder>/images`) or a folder holding `instances.json` and
/// `images/` (what `ostrov make-scenes` writes).
void set_validation_data(RunConfig& config, const std::string& path);

/// The split's files exist: ConfigError naming the key (data.<split>.root, ...) otherwise.
void check_split_exists(const RunConfig& config, const std::string& split);

}  // namespace ostrov::tasks
