#include "run_config.h"

#include <filesystem>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"

namespace ostrov::cli {

namespace {

void require_positive(int64_t value, const std::string& where, const std::string& key) {
  if (value <= 0) {
    throw ConfigError(where + ": " + key + " must be positive, got " + std::to_string(value));
  }
}

void require_dir(const std::string& dir, const std::string& where, const std::string& key) {
  if (!std::filesystem::is_directory(dir)) {
    throw ConfigError(where + ": " + key + " = \"" + dir + "\" is not a folder");
  }
}

void require_file(const std::string& file, const std::string& where, const std::string& key) {
  if (!std::filesystem::is_regular_file(file)) {
    throw ConfigError(where + ": " + key + " = \"" + file + "\" does not exist");
  }
}

DataSplit read_split(io::ConfigReader& data, const std::string& name, const std::string& format,
                     bool required) {
  DataSplit split;
  if (!data.has(name)) {
    if (required) throw ConfigError(data.where() + ": missing required key " + data.path_of(name));
    return split;
  }
  auto r = data.child(name);
  if (format == "folder" || format == "image_folder") {
    split.root = r.required<std::string>("root");
    require_dir(split.root, data.where(), r.path_of("root"));
  } else {
    split.annotations = r.required<std::string>("annotations");
    split.images = r.required<std::string>("images");
    require_file(split.annotations, data.where(), r.path_of("annotations"));
    require_dir(split.images, data.where(), r.path_of("images"));
  }
  r.finish();
  return split;
}

}  // namespace

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  RunConfig rc;
  rc.path = path;
  rc.json = io::read_json(path);
  for (const auto& o : overrides) io::apply_override(rc.json, o);
  io::ConfigReader top(rc.json, path);
  rc.task = top.required<std::string>("task");
  if (rc.task != "segmentation" && rc.task != "detection" && rc.task != "instance" &&
      rc.task != "classification") {
    throw ConfigError(path + ": task \"" + rc.task +
                      "\" is not supported by ostrov train/eval/predict "
                      "(supported: segmentation, detection, instance, classification)");
  }
  rc.model = top.raw("model");
  if (!rc.model.is_object()) throw ConfigError(path + ": missing required object model");
  rc.loss = top.raw("loss");

  auto data = top.child("data");
  rc.data.format = data.get<std::string>("format", rc.data.format);
  if (rc.data.format != "folder" && rc.data.format != "coco" &&
      rc.data.format != "image_folder") {
    throw ConfigError(path + ": data.format must be \"folder\", \"coco\" or \"image_folder\", got \"" +
                      rc.data.format + "\"");
  }
  rc.data.num_classes = data.required<int64_t>("num_classes");
  require_positive(rc.data.num_classes, path, "data.num_classes");
  if (rc.data.format == "folder" && rc.data.num_classes > 255) {
    throw ConfigError(path + ": data.num_classes must be at most 255 for folder data (8-bit "
                             "masks, 255 = ignore), got " +
                      std::to_string(rc.data.num_classes));
  }
  if (data.has("image_size")) {
    auto size = data.get<std::vector<int64_t>>("image_size", {});
    if (size.size() != 2) throw ConfigError(path + ": data.image_size must be [H, W]");
    rc.data.height = size[0];
    rc.data.width = size[1];
    require_positive(rc.data.height, path, "data.image_size[0]");
    require_positive(rc.data.width, path, "data.image_size[1]");
  }
  rc.data.transforms = data.raw("transforms");
  rc.data.skip_invalid = data.get<bool>("skip_invalid", false);
  rc.data.train = read_split(data, "train", rc.data.format, /*required=*/false);
  rc.data.val = read_split(data, "val", rc.data.format, /*required=*/false);
  data.finish();

  auto t = top.child("train");
  auto& tc = rc.train;
  tc.epochs = t.get<int64_t>("epochs", tc.epochs);
  tc.max_steps = t.get<int64_t>("max_steps", tc.max_steps);
  tc.time_limit_s = t.get<double>("time_limit_s", tc.time_limit_s);
  tc.batch_size = t.get<int64_t>("batch_size", tc.batch_size);
  tc.workers = t.get<int64_t>("workers", tc.workers);
  tc.seed = t.get<uint64_t>("seed", tc.seed);
  tc.device = t.get<std::string>("device", tc.device);
  tc.threads = t.get<int64_t>("threads", tc.threads);
  tc.log_every = t.get<int64_t>("log_every", tc.log_every);
  tc.eval_every = t.get<int64_t>("eval_every", tc.eval_every);
  tc.checkpoint_every = t.get<int64_t>("checkpoint_every", tc.checkpoint_every);
  tc.early_stopping = t.get<int64_t>("early_stopping", tc.early_stopping);
  tc.grad_clip = t.get<double>("grad_clip", tc.grad_clip);
  tc.distributed_timeout_s = t.get<double>("distributed_timeout_s", tc.distributed_timeout_s);
  if (!(tc.distributed_timeout_s >= 1.0)) {
    throw ConfigError(path + ": train.distributed_timeout_s must be at least 1 (seconds)");
  }
  const char* best = rc.task == "detection"        ? "map50"
                     : rc.task == "instance"       ? "ap50"
                     : rc.task == "classification" ? "accuracy"
                                                   : "miou";
  tc.best_metric = t.get<std::string>("best_metric", best);
  require_positive(tc.batch_size, path, "train.batch_size");
  if (tc.epochs <= 0 && tc.max_steps <= 0) {
    throw ConfigError(path + ": train.epochs or train.max_steps must be positive");
  }
  if (tc.workers < 0) throw ConfigError(path + ": train.workers must be >= 0");
  for (const char* key : {"optimizer", "lr", "momentum", "nesterov", "weight_decay", "betas", "eps"}) {
    t.raw(key);  // read below by optimizer_config_from_json
  }
  const nlohmann::json train_json = top.has("train") ? rc.json["train"] : nlohmann::json::object();
  nlohmann::json optim_keys = nlohmann::json::object();
  for (const char* key : {"optimizer", "lr", "momentum", "nesterov", "weight_decay", "betas", "eps"}) {
    if (train_json.contains(key)) optim_keys[key] = train_json[key];
  }
  tc.optimizer = train::optimizer_config_from_json(optim_keys, path);
  tc.schedule = train::schedule_config_from_json(t.raw("schedule"), path);
  t.finish();
  top.finish();
  return rc;
}

}  // namespace ostrov::cli
