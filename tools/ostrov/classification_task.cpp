#include "classification_task.h"

#include <algorithm>
#include <filesystem>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/image_folder.h"
#include "ostrov/io/json.h"
#include "ostrov/train/distributed.h"

namespace fs = std::filesystem;

namespace ostrov::cli {

ClassificationTask::ClassificationTask(const RunConfig& config, const c10::Device& device)
    : config_(config),
      device_(device),
      model_(models::build_classifier(config.model, config.data.num_classes, config.path)) {
  if (config.data.format != "image_folder") {
    throw ConfigError(config.path + ": task classification needs data.format \"image_folder\", "
                                    "got \"" + config.data.format + "\"");
  }
  if (!config.loss.is_null()) {
    io::ConfigReader r(config.loss, config.path, "loss");
    const auto name = r.get<std::string>("name", "cross_entropy");
    if (name != "cross_entropy") {
      throw ConfigError(config.path + ": key " + r.path_of("name") +
                        ": task classification takes \"cross_entropy\", got \"" + name + "\"");
    }
    label_smoothing_ = r.get<double>("label_smoothing", 0.0);
    if (!(label_smoothing_ >= 0.0 && label_smoothing_ < 1.0)) {
      throw ConfigError(config.path + ": key " + r.path_of("label_smoothing") +
                        " must be in [0, 1), got " + std::to_string(label_smoothing_));
    }
    r.finish();
  }
  for (const auto* split : {&config.data.train, &config.data.val}) {
    if (!split->root.empty() && class_names_.empty()) {
      class_names_ = data::ImageFolder::list_classes(split->root);
    }
  }
  model_->to(device);
}

at::Tensor ClassificationTask::targets(const data::Batch& batch) {
  TORCH_CHECK(static_cast<int64_t>(batch.labels.size()) == batch.size(),
              "classification needs one label per image (ImageFolder data)");
  return at::cat(batch.labels).to(batch.images.device());
}

at::Tensor ClassificationTask::loss(const data::Batch& batch) {
  return at::cross_entropy_loss(model_->forward(batch.images), targets(batch), {},
                                at::Reduction::Mean, -100, label_smoothing_);
}

void ClassificationTask::begin_evaluation() {
  per_class_ = at::zeros({config_.data.num_classes, 2}, at::kLong);
  top5_correct_ = 0;
  loss_sum_ = 0.0;
}

void ClassificationTask::evaluate(const data::Batch& batch) {
  const auto logits = model_->forward(batch.images);
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

std::shared_ptr<data::Dataset> ClassificationTask::dataset(const std::string& split) const {
  const DataSplit& s = split == "train" ? config_.data.train : config_.data.val;
  if (s.root.empty()) throw ConfigError(config_.path + ": missing required key data." + split + ".root");
  auto folder = std::make_shared<data::ImageFolder>(s.root);
  if (folder->num_classes() != config_.data.num_classes) {
    throw ConfigError(config_.path + ": data.num_classes is " +
                      std::to_string(config_.data.num_classes) + " but " + s.root + " has " +
                      std::to_string(folder->num_classes()) + " class folders");
  }
  return folder;
}

std::shared_ptr<const data::Transform> ClassificationTask::transforms(bool training) const {
  return make_transforms(config_, training);
}

std::vector<std::string> ClassificationTask::predict_image(const cv::Mat& bgr,
                                                           const std::string& stem,
                                                           const std::string& out_dir) {
  const auto x = network_input(bgr, config_.data.height, config_.data.width, device_);
  const auto probs = model_->forward(x)[0].softmax(0).to(at::kCPU);
  const int64_t k = std::min<int64_t>(5, probs.size(0));
  const auto [values, indices] = probs.topk(k);
  auto name_of = [&](int64_t c) {
    return c < static_cast<int64_t>(class_names_.size()) ? class_names_[c]
                                                         : "class " + std::to_string(c);
  };
  nlohmann::json top = nlohmann::json::array();
  for (int64_t i = 0; i < k; ++i) {
    const int64_t c = indices[i].item<int64_t>();
    top.push_back({{"class", c}, {"name", name_of(c)}, {"probability", values[i].item<double>()}});
  }
  const std::string json_name = stem + ".json", overlay_name = stem + "_overlay.png";
  io::write_json((fs::path(out_dir) / json_name).string(), {{"top", top}});
  cv::Mat overlay = bgr.clone();
  const int64_t best = indices[0].item<int64_t>();
  const std::string text = name_of(best) + " " + std::to_string(values[0].item<double>()).substr(0, 4);
  const double scale = std::max(0.4, overlay.cols / 400.0);
  cv::putText(overlay, text, cv::Point(4, static_cast<int>(18 * scale)), cv::FONT_HERSHEY_SIMPLEX,
              scale * 0.5, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
  cv::putText(overlay, text, cv::Point(4, static_cast<int>(18 * scale)), cv::FONT_HERSHEY_SIMPLEX,
              scale * 0.5, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  core::write_image((fs::path(out_dir) / overlay_name).string(), overlay);
  return {json_name, overlay_name};
}

}  // namespace ostrov::cli
