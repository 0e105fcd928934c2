#include "ostrov/tasks/task.h"

#include <algorithm>
#include <cmath>

#include "entries.h"
#include "evaluation.h"
#include "ostrov/core/error.h"
#include "ostrov/core/registry.h"
#include "ostrov/data/coco_dataset.h"
#include "ostrov/data/folder_dataset.h"
#include "ostrov/data/image_folder.h"
#include "ostrov/train/distributed.h"

namespace ostrov::tasks {

std::string detail::model_name(const RunConfig& config) {
  return config.model.is_object() && config.model.contains("name") &&
                 config.model["name"].is_string()
             ? config.model["name"].get<std::string>()
             : std::string();
}

namespace {

core::Registry<TaskEntry>& registry() {
  static core::Registry<TaskEntry> r("task", {detail::segmentation_entry(), detail::detection_entry(),
                                              detail::instance_entry(), detail::classification_entry()});
  return r;
}

}  // namespace

nlohmann::json detail::nan_to_null(double value) {
  return std::isnan(value) ? nlohmann::json() : nlohmann::json(value);
}

void detail::all_gather_rows(train::DataParallel& dp, std::vector<float>& rows, int64_t row_size,
                     int64_t& images) {
  const int world = dp.world_size(), rank = dp.rank();
  auto counts = at::zeros({2, world}, at::kDouble);
  counts[0][rank] = static_cast<double>(rows.size());
  counts[1][rank] = static_cast<double>(images);
  dp.all_reduce_sum(counts);
  int64_t offset = 0, image_offset = 0, total = 0, all_images = 0;
  const auto c = counts.contiguous();
  const double* n = c.data_ptr<double>();
  for (int r = 0; r < world; ++r) {
    if (r < rank) {
      offset += static_cast<int64_t>(n[r]);
      image_offset += static_cast<int64_t>(n[world + r]);
    }
    total += static_cast<int64_t>(n[r]);
    all_images += static_cast<int64_t>(n[world + r]);
  }
  // Every rank writes its rows into its own slice of a zeroed buffer: the sum is everyone's.
  auto buffer = at::zeros({total}, at::kFloat);
  float* dst = buffer.data_ptr<float>() + offset;
  for (size_t i = 0; i < rows.size(); ++i) {
    dst[i] = rows[i] + (static_cast<int64_t>(i) % row_size == 1
                            ? static_cast<float>(image_offset) : 0.0f);
  }
  dp.all_reduce_sum(buffer);
  rows.assign(buffer.data_ptr<float>(), buffer.data_ptr<float>() + total);
  images = all_images;
}

void detail::all_reduce_loss(train::DataParallel& dp, double& loss_sum, int64_t& loss_count) {
  auto sums = at::tensor({loss_sum, static_cast<double>(loss_count)}, at::kDouble);
  dp.all_reduce_sum(sums);
  loss_sum = sums[0].item<double>();
  loss_count = static_cast<int64_t>(sums[1].item<double>());
}

void register_task(TaskEntry entry) {
  if (entry.formats.empty() || !entry.make) {
    throw Error("register_task: an entry needs a name, at least one data format and make");
  }
  registry().add(std::move(entry));
}

const TaskEntry& find_task(const std::string& name, const std::string& where) {
  if (const TaskEntry* e = registry().find(name)) return *e;
  throw ConfigError((where.empty() ? "" : where + ": ") + "task \"" + name +
                    "\" is not supported (supported: " + registry().known() + ")");
}

std::vector<std::string> task_names() {
  auto names = registry().names();
  std::sort(names.begin(), names.end());
  return names;
}

std::unique_ptr<Task> make_task(const RunConfig& config, const c10::Device& device) {
  if (config.data.num_classes <= 0) {  // COCO data without data.num_classes
    RunConfig counted = config;
    infer_num_classes(counted);
    return find_task(counted.task, counted.path).make(counted, device);
  }
  return find_task(config.task, config.path).make(config, device);
}

std::shared_ptr<const data::Transform> default_transforms(const RunConfig& config, bool training) {
  std::vector<std::shared_ptr<const data::Transform>> steps;
  if (training && !config.data.transforms.is_null()) {
    steps.push_back(data::build_transforms(config.data.transforms, config.path, "data.transforms"));
  } else {
    steps.push_back(std::make_shared<data::Resize>(config.data.height, config.data.width));
    if (training) steps.push_back(std::make_shared<data::HorizontalFlip>(0.5));
  }
  steps.push_back(std::make_shared<data::Normalize>());
  return std::make_shared<data::Compose>(std::move(steps));
}

Task::Task(RunConfig config, const c10::Device& device)
    : config_(std::move(config)), device_(device) {
  const auto n = config_.data.num_classes;
  class_names_ = config_.data.class_names;
  category_ids_ = config_.data.category_ids;
  classes_from_config_ = !class_names_.empty();
  if (class_names_.empty()) {
    for (int64_t c = 0; c < n; ++c) class_names_.push_back("class " + std::to_string(c));
  }
  if (category_ids_.empty()) {
    for (int64_t c = 0; c < n; ++c) category_ids_.push_back(c);
  }
}

std::shared_ptr<data::Dataset> Task::dataset(const std::string& split) {
  check_split_exists(config_, split);
  const DataSplit& s = split == "train" ? config_.data.train : config_.data.val;
  const auto n = config_.data.num_classes;
  std::shared_ptr<data::Dataset> result;
  if (config_.data.format == "folder") {
    result = std::make_shared<data::SegmentationFolder>(s.root, n);
  } else if (config_.data.format == "image_folder") {
    auto folder = std::make_shared<data::ImageFolder>(s.root);
    if (folder->num_classes() != n) {
      throw ConfigError(config_.path + ": data.num_classes is " + std::to_string(n) + " but " +
                        s.root + " has " + std::to_string(folder->num_classes()) +
                        " class folders");
    }
    result = folder;
  } else {
    auto coco = std::make_shared<data::CocoDataset>(
        s.annotations, s.images,
        data::CocoOptions().skip_invalid(config_.data.skip_invalid).masks(needs_masks()));
    if (coco->num_classes() != n) {
      // ostrov counts the background as label 0 (torchvision's convention); mmdetection,
      // detectron2 and ultralytics count the categories only: name the convention either way.
      const int64_t categories = coco->num_classes() - 1;
      throw ConfigError(
          config_.path + ": data.num_classes is " + std::to_string(n) + " but " + s.annotations +
          " has " + std::to_string(categories) + " categories; data.num_classes counts the "
          "background too (label 0, as torchvision), so it must be " +
          std::to_string(categories + 1) +
          (n == categories ? " (the value given counts the categories only)" : ""));
    }
    result = coco;
  }
  describe_classes(*result);
  return result;
}

void Task::describe_classes(const data::Dataset& dataset) {
  if (classes_from_config_) return;
  if (const auto* coco = dynamic_cast<const data::CocoDataset*>(&dataset)) {
    class_names_ = coco->category_names();
    category_ids_ = coco->label_to_category_id();
    classes_from_config_ = true;
  } else if (const auto* folder = dynamic_cast<const data::ImageFolder*>(&dataset)) {
    class_names_ = folder->classes();
    classes_from_config_ = true;
  }
}

std::shared_ptr<const data::Transform> Task::transforms(bool training) const {
  return default_transforms(config_, training);
}

ops::GridSize Task::input_size() const { return {config_.data.height, config_.data.width}; }

Prediction Task::predict_tiled(const at::Tensor& image, int64_t overlap) const {
  throw Error("task " + config_.task + " cannot predict by tiles (segmentation can)");
}

nlohmann::json Task::prediction_json(const Prediction& p) const {
  nlohmann::json boxes = nlohmann::json::array(), scores = nlohmann::json::array(),
                 labels = nlohmann::json::array();
  if (p.boxes.defined()) {
    const auto b = p.boxes.to(at::kFloat).contiguous();
    const auto s = p.scores.to(at::kFloat).contiguous();
    const auto l = p.labels.to(at::kLong).contiguous();
    for (int64_t i = 0; i < b.size(0); ++i) {
      const float* box = b.data_ptr<float>() + 4 * i;
      boxes.push_back({box[0], box[1], box[2], box[3]});
      scores.push_back(s.data_ptr<float>()[i]);
      labels.push_back(l.data_ptr<int64_t>()[i]);
    }
  }
  return {{"boxes", boxes}, {"scores", scores}, {"labels", labels}};
}

nlohmann::json Task::resolved_config() const {
  nlohmann::json out = config_.json;
  out["data"]["class_names"] = class_names_;
  out["data"]["category_ids"] = category_ids_;
  return out;
}

}  // namespace ostrov::tasks
