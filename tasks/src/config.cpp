#include "ostrov/tasks/config.h"

#include <algorithm>
#include <filesystem>
#include <functional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "ostrov/core/device.h"
#include "ostrov/core/error.h"
#include "ostrov/core/runtime.h"
#include "ostrov/io/checkpoint.h"
#include "ostrov/io/json.h"
#include "ostrov/tasks/task.h"
#include "ostrov/train/distributed.h"
#include "ostrov/train/precision.h"

namespace fs = std::filesystem;

namespace ostrov::tasks {

namespace {

void require_positive(int64_t value, const std::string& where, const std::string& key) {
  if (value <= 0) {
    throw ConfigError(where + ": " + key + " must be positive, got " + std::to_string(value));
  }
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

DataSplit read_split(io::ConfigReader& data, const std::string& name, const std::string& format) {
  DataSplit split;
  if (!data.has(name)) return split;
  auto r = data.child(name);
  if (format == "folder" || format == "image_folder") {
    split.root = r.required<std::string>("root");
  } else {
    split.annotations = r.required<std::string>("annotations");
    split.images = r.required<std::string>("images");
  }
  r.finish();
  return split;
}

}  // namespace

RunConfig parse_run_config(nlohmann::json json, const std::string& where) {
  RunConfig rc;
  rc.path = where;
  rc.json = std::move(json);
  io::ConfigReader top(rc.json, where);
  rc.task = top.required<std::string>("task");
  const TaskEntry& entry = find_task(rc.task, where);
  // Every section is checked, and every problem found is reported in one error (a section's
  // first bad value, all its unknown keys), before anything reads a file.
  std::vector<std::string> problems;
  auto check = [&](const std::function<void()>& section) {
    try {
      section();
    } catch (const ConfigError& e) {
      problems.emplace_back(e.what());
    }
  };
  rc.model = top.raw("model");
  if (!rc.model.is_object()) problems.push_back(where + ": missing required object model");
  rc.loss = top.raw("loss");

  check([&] {
    auto data = top.child("data");
    rc.data.format = data.get<std::string>("format", entry.formats.front());
    if (std::find(entry.formats.begin(), entry.formats.end(), rc.data.format) ==
        entry.formats.end()) {
      throw ConfigError(where + ": task " + rc.task + " needs data.format " + join(entry.formats) +
                        ", got \"" + rc.data.format + "\"");
    }
    // COCO files name their categories, so num_classes may be left out there: 0 until
    // infer_num_classes counts them.
    if (rc.data.format == "coco" && !data.has("num_classes")) {
      rc.data.num_classes = 0;
    } else {
      rc.data.num_classes = data.required<int64_t>("num_classes");
      require_positive(rc.data.num_classes, where, "data.num_classes");
    }
    if (rc.data.format == "folder" && rc.data.num_classes > 255) {
      throw ConfigError(where + ": data.num_classes must be at most 255 for folder data (8-bit "
                                "masks, 255 = ignore), got " +
                        std::to_string(rc.data.num_classes));
    }
    {
      auto size = data.get<std::vector<int64_t>>("image_size", {rc.data.height, rc.data.width});
      if (size.size() != 2) throw ConfigError(where + ": data.image_size must be [H, W]");
      rc.data.height = size[0];
      rc.data.width = size[1];
      require_positive(rc.data.height, where, "data.image_size[0]");
      require_positive(rc.data.width, where, "data.image_size[1]");
    }
    rc.data.transforms = data.raw("transforms");
    rc.data.skip_invalid = data.get<bool>("skip_invalid", false);
    rc.data.class_names = data.get<std::vector<std::string>>("class_names", {});
    rc.data.category_ids = data.get<std::vector<int64_t>>("category_ids", {});
    // One name and one id per contiguous label, when given.
    auto check_count = [&](size_t count, const char* key, const char* what) {
      if (count != 0 && rc.data.num_classes > 0 &&
          count != static_cast<size_t>(rc.data.num_classes)) {
        throw ConfigError(where + ": data." + key + " has " + std::to_string(count) + " " + what +
                          ", data.num_classes is " + std::to_string(rc.data.num_classes));
      }
    };
    check_count(rc.data.class_names.size(), "class_names", "names");
    check_count(rc.data.category_ids.size(), "category_ids", "ids");
    rc.data.train = read_split(data, "train", rc.data.format);
    rc.data.val = read_split(data, "val", rc.data.format);
    data.finish();
  });

  check([&] {
    auto t = top.child("train");
    auto& tc = rc.train;
    tc.epochs = t.get<int64_t>("epochs", tc.epochs);
    tc.max_steps = t.get<int64_t>("max_steps", tc.max_steps);
    tc.time_limit_s = t.get<double>("time_limit_s", tc.time_limit_s);
    tc.batch_size = t.get<int64_t>("batch_size", tc.batch_size);
    tc.workers = t.get<int64_t>("workers", tc.workers);
    tc.seed = t.get<uint64_t>("seed", tc.seed);
    tc.device = t.get<std::string>("device", tc.device);
    tc.precision = t.get<std::string>("precision", tc.precision);
    // The name now; whether the device supports it when train() knows the device.
    train::precision_from_name(tc.precision, where + ": train.precision");
    tc.threads = t.get<int64_t>("threads", tc.threads);
    tc.log_every = t.get<int64_t>("log_every", tc.log_every);
    tc.eval_every = t.get<int64_t>("eval_every", tc.eval_every);
    tc.checkpoint_every = t.get<int64_t>("checkpoint_every", tc.checkpoint_every);
    tc.early_stopping = t.get<int64_t>("early_stopping", tc.early_stopping);
    tc.grad_clip = t.get<double>("grad_clip", tc.grad_clip);
    tc.distributed_timeout_s = t.get<double>("distributed_timeout_s", tc.distributed_timeout_s);
    if (!(tc.distributed_timeout_s >= 1.0)) {
      throw ConfigError(where + ": train.distributed_timeout_s must be at least 1 (seconds)");
    }
    tc.distributed_backend = t.get<std::string>("distributed_backend", tc.distributed_backend);
    // The name now; whether the device and the build have it when train() knows the device.
    train::check_backend_name(tc.distributed_backend, where + ": train.distributed_backend");
    tc.best_metric = t.get<std::string>("best_metric", entry.best_metric);
    require_positive(tc.batch_size, where, "train.batch_size");
    if (tc.epochs <= 0 && tc.max_steps <= 0) {
      throw ConfigError(where + ": train.epochs or train.max_steps must be positive");
    }
    if (tc.workers < 0) throw ConfigError(where + ": train.workers must be >= 0");
    // The optimizer's keys sit in `train` beside the loop's; optimizer_config_from_json reads them.
    static const char* const kOptimizerKeys[] = {"optimizer", "lr",    "momentum", "nesterov",
                                                 "weight_decay", "betas", "eps"};
    nlohmann::json optim_keys = nlohmann::json::object();
    for (const char* key : kOptimizerKeys) {
      const auto& value = t.raw(key);
      if (!value.is_null()) optim_keys[key] = value;
    }
    tc.optimizer = train::optimizer_config_from_json(optim_keys, where);
    tc.schedule = train::schedule_config_from_json(t.raw("schedule"), where);
    t.finish();
  });
  check([&] { top.finish(); });
  // The model's and the loss's own keys, by the task (without building or reading weights).
  if (rc.data.num_classes > 0) {
    if (entry.validate_model && rc.model.is_object()) check([&] { entry.validate_model(rc); });
    if (entry.validate_loss) check([&] { entry.validate_loss(rc); });
  }
  if (!problems.empty()) {
    std::string all = problems.front();
    for (size_t i = 1; i < problems.size(); ++i) all += "\n" + problems[i];
    throw ConfigError(all);
  }
  return rc;
}

void resolve_config_paths(nlohmann::json& json, const std::string& config_path) {
  // Every key that names a file or folder (docs/configs.md, "Paths").
  static const std::vector<std::vector<const char*>> kPathKeys = {
      {"data", "train", "root"},   {"data", "train", "annotations"}, {"data", "train", "images"},
      {"data", "val", "root"},     {"data", "val", "annotations"},   {"data", "val", "images"},
      {"model", "weights"},        {"model", "backbone_weights"}};
  const fs::path base = fs::absolute(config_path).parent_path();
  for (const auto& keys : kPathKeys) {
    nlohmann::json* value = &json;
    for (const char* key : keys) {
      if (!value->is_object() || !value->contains(key)) {
        value = nullptr;
        break;
      }
      value = &(*value)[key];
    }
    if (value == nullptr || !value->is_string()) continue;  // wrong types: the reader says so
    const fs::path p = value->get<std::string>();
    if (!p.empty() && p.is_relative()) *value = (base / p).lexically_normal().string();
  }
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  auto json = io::read_json(path);
  // Paths in the file are relative to the file; --set values to the current directory.
  resolve_config_paths(json, path);
  for (const auto& o : overrides) io::apply_override(json, o);
  return parse_run_config(std::move(json), path);
}

RunConfig checkpoint_run_config(const std::string& checkpoint,
                                const std::vector<std::string>& overrides) {
  if (!fs::is_regular_file(checkpoint)) throw IoError(checkpoint + ": no such checkpoint file");
  auto json = io::read_checkpoint_meta(checkpoint).config;
  if (!json.is_object() || !json.contains("task")) {
    throw IoError(checkpoint + ": carries no run config (not written by ostrov train); "
                               "give the run's config file as well");
  }
  for (const auto& o : overrides) io::apply_override(json, o);
  return parse_run_config(std::move(json), checkpoint + " (its stored config)");
}

void set_validation_data(RunConfig& config, const std::string& path) {
  auto& val = config.data.val;
  val = DataSplit{};
  if (config.data.format != "coco") {
    val.root = path;
  } else if (fs::is_directory(path)) {
    val.annotations = (fs::path(path) / "instances.json").string();
    val.images = (fs::path(path) / "images").string();
  } else {
    val.annotations = path;
    val.images = (fs::path(path).parent_path() / "images").string();
  }
  auto& json_val = config.json["data"]["val"];
  json_val = nlohmann::json::object();
  if (!val.root.empty()) json_val["root"] = val.root;
  if (!val.annotations.empty()) {
    json_val["annotations"] = val.annotations;
    json_val["images"] = val.images;
  }
}

void infer_num_classes(RunConfig& config) {
  if (config.data.num_classes > 0) return;
  const DataSplit& split = !config.data.train.empty() ? config.data.train : config.data.val;
  if (split.annotations.empty()) {
    throw ConfigError(config.path + ": missing required key data.num_classes (no COCO "
                                    "annotations file given to count the categories of)");
  }
  if (!fs::is_regular_file(split.annotations)) {
    throw ConfigError(config.path + ": data.num_classes is left out and its COCO file \"" +
                      split.annotations + "\" does not exist");
  }
  const auto coco = io::read_json(split.annotations);
  const auto categories = coco.find("categories");
  if (!coco.is_object() || categories == coco.end() || !categories->is_array() ||
      categories->empty()) {
    throw DataError(split.annotations + ": no categories to count for data.num_classes");
  }
  const int64_t n = static_cast<int64_t>(categories->size()) + 1;
  core::logger()->info("data.num_classes = {}: the {} categories of {} + the background", n,
                       n - 1, split.annotations);
  auto json = config.json;
  json["data"]["num_classes"] = n;
  config = parse_run_config(std::move(json), config.path);  // the model and loss checked now
}

void check_split_exists(const RunConfig& config, const std::string& split) {
  const DataSplit& s = split == "train" ? config.data.train : config.data.val;
  const std::string key = "data." + split + ".";
  if (s.empty()) {
    throw ConfigError(config.path + ": missing required key " + key +
                      (config.data.format == "coco" ? "annotations" : "root"));
  }
  auto need_dir = [&](const std::string& dir, const std::string& name) {
    if (!fs::is_directory(dir)) {
      throw ConfigError(config.path + ": " + key + name + " = \"" + dir + "\" is not a folder");
    }
  };
  if (!s.root.empty()) {
    need_dir(s.root, "root");
  } else {
    if (!fs::is_regular_file(s.annotations)) {
      throw ConfigError(config.path + ": " + key + "annotations = \"" + s.annotations +
                        "\" does not exist");
    }
    need_dir(s.images, "images");
  }
}

c10::Device config_device(const RunConfig& config) {
  const std::string& name = config.train.device;
  try {
    return core::parse_device(name);
  } catch (const ConfigError& e) {
    std::string message = config.path + ": train.device: " + e.what();
    if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
      const auto info = core::runtime_info();
      message += fmt::format(" (`ostrov info` reports cuda: {}, cuda_devices: {}, LibTorch {})",
                             info.cuda ? "true" : "false", info.cuda_devices, info.torch_version);
    }
    throw ConfigError(message);
  }
}

}  // namespace ostrov::tasks
