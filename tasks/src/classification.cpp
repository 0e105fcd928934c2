#include "ostrov/tasks/classification.h"

#include <algorithm>
#include <cstdio>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "entries.h"
#include "ostrov/core/error.h"
#include "ostrov/data/image_folder.h"
#include "ostrov/io/json.h"
#include "ostrov/train/distributed.h"

namespace ostrov::tasks {

namespace {

// The loss section: cross-entropy with optional label smoothing (null: none).
double read_label_smoothing(const RunConfig& config) {
  io::ConfigReader r(config.loss, config.path, "loss");
  const auto name = r.get<std::string>("name", "cross_entropy");
  if (name != "cross_entropy") {
    throw ConfigError(config.path + ": key " + r.path_of("name") +
                      ": task classification takes \"cross_entropy\", got \"" + name + "\"");
  }
  const double smoothing = r.get<double>("label_smoothing", 0.0);
  if (!(smoothing >= 0.0 && smoothing < 1.0)) {
    throw ConfigError(config.path + ": key " + r.path_of("label_smoothing") +
                      " must be in [0, 1), got " + std::to_string(smoothing));
  }
  r.finish();
  return smoothing;
}

}  // namespace

TaskEntry detail::classification_entry() {
  return {"classification", "one class per image (ResNet, MobileNetV2/V3)", "accuracy", {"image_folder"},
          [](const RunConfig& c, const c10::Device& d) {
            return std::make_unique<ClassificationTask>(c, d);
          },
          [](const RunConfig& c) {
            models::check_classifier(c.model, c.data.num_classes, c.path);
          },
          [](const RunConfig& c) { read_label_smoothing(c); },
          models::classifier_names,
          /*loss_names=*/{}};
}

ClassificationTask::ClassificationTask(const RunConfig& config, const c10::Device& device)
    : Task(config, device),
      model_(models::build_classifier(config.model, config.data.num_classes, config.path)),
      label_smoothing_(read_label_smoothing(config)) {
  // The class names without listing the images (ImageFolder reads the same sub-folders).
  if (!classes_from_config_) {
    for (const auto* split : {&config.data.train, &config.data.val}) {
      if (!split->root.empty() && !classes_from_config_) {
        try {
          const auto names = data::ImageFolder::list_classes(split->root);
          if (static_cast<int64_t>(names.size()) == config.data.num_classes) {
            class_names_ = names;
            classes_from_config_ = true;
          }
        } catch (const IoError&) {
          // No data here (a checkpoint's config): the names come from the checkpoint.
        }
      }
    }
  }
  model_.module->to(device);
}

at::Tensor ClassificationTask::targets(const data::Batch& batch) {
  TORCH_CHECK(static_cast<int64_t>(batch.labels.size()) == batch.size(),
              "classification needs one label per image (ImageFolder data)");
  return at::cat(batch.labels).to(batch.images.device());
}

at::Tensor ClassificationTask::loss(const data::Batch& batch) {
  return at::cross_entropy_loss(model_.forward(batch.images), targets(batch), {},
                                at::Reduction::Mean, -100, label_smoothing_);
}

void ClassificationTask::begin_evaluation() {
  per_class_ = at::zeros({config_.data.num_classes, 2}, at::kLong);
  top5_correct_ = 0;
  loss_sum_ = 0.0;
}

void ClassificationTask::evaluate(const data::Batch& batch) {
  const auto logits = model_.forward(batch.images);
  const auto target = targets(batch);
  loss_sum_ += at::cross_entropy_loss(logits, target, {}, at::Reduction::Sum, -100,
                                      label_smoothing_)
                   .item<double>();
  const auto t = target.to(at::kCPU);
  const auto correct = (logits.argmax(1).to(at::kCPU) == t).to(at::kLong);
  per_class_.select(1, 0).index_add_(0, t, at::ones_like(t));
  per_class_.select(1, 1).index_add_(0, t, correct);
  const int64_t k = std::min<int64_t>(5, logits.size(1));
  const auto top = std::get<1>(logits.topk(k, 1)).to(at::kCPU);
  top5_correct_ += top.eq(t.unsqueeze(1)).any(1).sum().item<int64_t>();
}

void ClassificationTask::merge(train::DataParallel& dp) {
  auto counts = at::cat({per_class_.flatten(), at::tensor({top5_correct_}, at::kLong)});
  dp.all_reduce_sum(counts);
  per_class_ = counts.slice(0, 0, per_class_.numel()).view_as(per_class_).clone();
  top5_correct_ = counts[-1].item<int64_t>();
  auto loss = at::tensor({loss_sum_}, at::kDouble);
  dp.all_reduce_sum(loss);
  loss_sum_ = loss.item<double>();
}

nlohmann::json ClassificationTask::end_evaluation() {
  const auto seen = per_class_.select(1, 0).to(at::kDouble);
  const auto right = per_class_.select(1, 1).to(at::kDouble);
  const double total = seen.sum().item<double>();
  nlohmann::json per_class = nlohmann::json::array();
  double class_sum = 0.0;
  int64_t classes_seen = 0;
  for (int64_t c = 0; c < per_class_.size(0); ++c) {
    const double n = seen[c].item<double>();
    if (n > 0) {
      per_class.push_back(right[c].item<double>() / n);
      class_sum += right[c].item<double>() / n;
      ++classes_seen;
    } else {
      per_class.push_back(nullptr);  // no sample of this class
    }
  }
  nlohmann::json out = {
      {"loss", total > 0 ? loss_sum_ / total : 0.0},
      {"accuracy", total > 0 ? right.sum().item<double>() / total : 0.0},
      {"mean_class_accuracy", classes_seen > 0 ? class_sum / static_cast<double>(classes_seen) : 0.0},
      {"accuracy_per_class", per_class}};
  if (per_class_.size(0) > 5) {
    out["top5_accuracy"] = total > 0 ? static_cast<double>(top5_correct_) / total : 0.0;
  }
  return out;
}

std::vector<Prediction> ClassificationTask::predict(const at::Tensor& images,
                                                   const std::vector<ops::GridSize>& sizes) const {
  const auto probs = model_.forward(images).softmax(1).to(at::kCPU);
  const int64_t k = std::min<int64_t>(5, probs.size(1));
  const auto [values, indices] = probs.topk(k, 1);
  std::vector<Prediction> out(static_cast<size_t>(probs.size(0)));
  for (int64_t n = 0; n < probs.size(0); ++n) {
    for (int64_t i = 0; i < k; ++i) {
      const int64_t c = indices[n][i].item<int64_t>();
      out[static_cast<size_t>(n)].top.push_back(
          {c, class_names_.at(static_cast<size_t>(c)), values[n][i].item<double>()});
    }
  }
  return out;
}

nlohmann::json ClassificationTask::prediction_json(const Prediction& p) const {
  nlohmann::json top = nlohmann::json::array();
  for (const auto& t : p.top) {
    top.push_back({{"class", t.index}, {"name", t.name}, {"probability", t.probability}});
  }
  return {{"top", top}};
}

cv::Mat ClassificationTask::overlay(const cv::Mat& bgr, const Prediction& p) const {
  cv::Mat overlay = bgr.clone();
  if (p.top.empty()) return overlay;
  char probability[16];
  std::snprintf(probability, sizeof(probability), "%.2f", p.top.front().probability);
  const std::string text = p.top.front().name + " " + probability;
  const double scale = std::max(0.4, overlay.cols / 400.0);
  const cv::Point origin(4, static_cast<int>(18 * scale));
  cv::putText(overlay, text, origin, cv::FONT_HERSHEY_SIMPLEX, scale * 0.5, cv::Scalar(0, 0, 0), 3,
              cv::LINE_AA);
  cv::putText(overlay, text, origin, cv::FONT_HERSHEY_SIMPLEX, scale * 0.5,
              cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  return overlay;
}

}  // namespace ostrov::tasks
