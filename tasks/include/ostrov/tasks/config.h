#pragma once
// The run config of a task (docs/architecture.md "Configs"): top-level `task`, `model`, `data`,
// `loss`, `train`. Unknown keys are errors naming the file and the key path. Reading a config
// never touches the data: folders and annotation files are checked when a task builds its
// datasets, so a config stored in a checkpoint predicts with the training data gone.

#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include "ostrov/train/optim.h"

namespace ostrov::tasks {

/// The files of one data split (`data.train` or `data.val`): `root` for the folder formats,
/// `annotations` + `images` for COCO; all empty when the config has no such split.
struct DataSplit {
  std::string root;         ///< format "folder" or "image_folder"
  std::string annotations;  ///< format "coco"
  std::string images;       ///< format "coco"
  /// True when the split names no data (neither a root nor an annotation file).
  bool empty() const { return root.empty() && annotations.empty(); }
};

/// The config's `data` section: the data format, the splits and the network input size.
struct DataConfig {
  std::string format = "folder";  ///< "folder" | "coco" | "image_folder"
  /// `data.train`, the training split.
  DataSplit train, val;  ///< `data.val`, the validation split (empty: training does not evaluate)
  int64_t num_classes = 0;        ///< counting background; 0: COCO data, from its categories
  /// Network input height in pixels (`data.image_size[0]`) the default transforms resize to;
  /// detection uses the model's image_size instead.
  int64_t height = 256, width = 256;  ///< network input width (`data.image_size[1]`)
  nlohmann::json transforms;      ///< training transforms (null: the task's default)
  bool skip_invalid = false;      ///< COCO: skip malformed annotations instead of failing
  /// Names of the contiguous labels 0..num_classes-1 (`data.class_names`); filled from the
  /// dataset by training, so checkpoints carry them. Empty: "class <i>".
  std::vector<std::string> class_names;
  /// The dataset's own category id of every contiguous label (`data.category_ids`, COCO);
  /// predictions report these. Empty: the labels themselves.
  std::vector<int64_t> category_ids;
};

/// The config's `train` section: the training loop, its resources and the optimizer.
struct TrainConfig {
  int64_t epochs = 10;            ///< passes over the training data
  int64_t max_steps = 0;          ///< stop after this many steps (0: epochs decide)
  double time_limit_s = 0.0;      ///< wall-time limit in s, then evaluate and save (0: none)
  int64_t batch_size = 8;         ///< images per batch and process (> 0)
  int64_t workers = 2;            ///< data-loader threads (0: load on the training thread)
  uint64_t seed = 0;              ///< seeds model initialisation, shuffling and augmentation
  std::string device = "cpu";     ///< "cpu", "cuda", "cuda:N" or "auto"
  /// "fp32" | "bf16" | "fp16" (train::parse_precision; fp16 needs CUDA)
  std::string precision = "fp32";
  int64_t threads = 0;            ///< intra-op threads (0: the available cores / processes)
  int64_t log_every = 10;         ///< log training records every N steps
  int64_t eval_every = 1;         ///< evaluate every N epochs (and at the end)
  int64_t checkpoint_every = 0;   ///< also write last.pt every N steps (0: per epoch only)
  int64_t early_stopping = 0;     ///< stop after N evaluations without improvement (0: never)
  double grad_clip = 0.0;         ///< clip the global gradient norm to this (0: off)
  double distributed_timeout_s = 300.0;  ///< joining the group and every collective
  /// "auto" | "gloo" | "nccl": the c10d backend of a data-parallel run
  /// (train::collective_backend; auto is NCCL on CUDA where the build has it)
  std::string distributed_backend = "auto";
  std::string best_metric;  ///< default: the task's (miou, map50, ap50, accuracy)
  /// The optimizer and its settings (`optimizer`, `lr`, `momentum`, ... in `train`).
  train::OptimizerConfig optimizer;
  /// The learning-rate schedule (`train.schedule`: a name or an object).
  train::ScheduleConfig schedule;
};

/// A validated run config (parse_run_config, load_run_config): what make_task builds from.
struct RunConfig {
  std::string path;     ///< the file (or checkpoint) it came from, for messages
  nlohmann::json json;  ///< the config as given, after --set overrides
  std::string task;     ///< a registered task name (tasks::task_names())
  nlohmann::json model;  ///< the `model` section, read by the task's model builder
  DataConfig data;       ///< the `data` section
  nlohmann::json loss;   ///< the `loss` section (null when absent: the task's default loss)
  TrainConfig train;     ///< the `train` section
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

/// The device of `config.train.device` (core::parse_device). ostrov::ConfigError (exit 2) naming
/// the config, the key `train.device` and, when CUDA is asked for but unusable, what `ostrov info`
/// reports (whether this LibTorch has CUDA, the visible devices, its version).
c10::Device config_device(const RunConfig& config);

/// The split's files exist: ConfigError naming the key (data.<split>.root, ...) otherwise.
void check_split_exists(const RunConfig& config, const std::string& split);

}  // namespace ostrov::tasks
