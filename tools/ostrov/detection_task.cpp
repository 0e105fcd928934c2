#include "detection_task.h"

#include <filesystem>
#include <utility>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/visualize.h"
#include "ostrov/io/json.h"
#include "ostrov/metrics/detection_ap.h"
#include "ostrov/models/detection/build.h"
#include "ostrov/train/distributed.h"

namespace fs = std::filesystem;

namespace ostrov::cli {

namespace {

constexpr int64_t kRow = 8;  // kind, image, label, score, x1, y1, x2, y2

// SSD augmentation of the SSD paper / torchvision's references/detection.
nlohmann::json default_augmentation() {
  return nlohmann::json::array({{{"name", "photometric_distort"}},
                                {{"name", "expand"}, {"max_ratio", 2.0}},
                                {{"name", "ssd_random_crop"}},
                                {{"name", "horizontal_flip"}, {"p", 0.5}}});
}

void append_rows(std::vector<float>& rows, float kind, float image, const at::Tensor& boxes,
                 const at::Tensor& labels, const at::Tensor& scores) {
  const auto b = boxes.to(at::kCPU, at::kFloat).contiguous();
  const auto l = labels.to(at::kCPU, at::kFloat).contiguous();
  const auto s = scores.defined() ? scores.to(at::kCPU, at::kFloat).contiguous() : at::Tensor();
  for (int64_t i = 0; i < b.size(0); ++i) {
    const float* box = b.data_ptr<float>() + 4 * i;
    rows.insert(rows.end(), {kind, image, l.data_ptr<float>()[i],
                             s.defined() ? s.data_ptr<float>()[i] : 1.0f, box[0], box[1], box[2],
                             box[3]});
  }
}

}  // namespace

std::pair<nlohmann::json, models::SSDTargetOptions> split_detection_loss(
    const nlohmann::json& loss, const std::string& where) {
  nlohmann::json rest = loss.is_null() ? nlohmann::json{{"name", "multibox"}} : loss;
  if (!rest.is_object()) throw ConfigError(where + ": loss must be an object");
  models::SSDTargetOptions targets;
  auto take = [&](const char* key) {
    nlohmann::json value;
    if (rest.contains(key)) {
      value = rest[key];
      rest.erase(key);
    }
    return value;
  };
  const auto matcher = take("matcher");
  const auto iou = take("iou_threshold");
  const auto positives = take("hungarian_threshold_positives");
  try {
    if (!matcher.is_null()) targets.matcher(matcher.get<std::string>());
    if (!iou.is_null()) targets.iou_threshold(iou.get<double>());
    if (!positives.is_null()) {
      targets.hungarian(ops::HungarianMatcherOptions()
                            .add_threshold_positives(positives.get<bool>())
                            .threshold(targets.iou_threshold()));
    }
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(where + ": loss.matcher/iou_threshold/hungarian_threshold_positives: " +
                      e.what());
  }
  if (targets.matcher() != "threshold" && targets.matcher() != "hungarian") {
    throw ConfigError(where + ": loss.matcher must be \"threshold\" or \"hungarian\", got \"" +
                      targets.matcher() + "\"");
  }
  if (!(targets.iou_threshold() > 0.0 && targets.iou_threshold() <= 1.0)) {
    throw ConfigError(where + ": loss.iou_threshold must be in (0,1]");
  }
  if (rest.value("name", std::string()) != "multibox") {
    throw ConfigError(where + ": loss.name must be \"multibox\" for an SSD detector");
  }
  return {rest, targets};
}

DetectionTask::DetectionTask(const RunConfig& config, const c10::Device& device)
    : config_(config), device_(device) {
  if (config.data.format != "coco") {
    throw ConfigError(config.path + ": task detection needs data.format \"coco\", got \"" +
                      config.data.format + "\"");
  }
  auto [loss_json, targets] = split_detection_loss(config.loss, config.path);
  targets_ = targets.num_classes(config.data.num_classes);
  loss_ = losses::build(loss_json, config.path, "loss");
  net_ = models::build_detector(config.model, config.data.num_classes, config.path);
  net_->to(device);
  loss_->to(device);
}

at::Tensor DetectionTask::loss_of(const models::SSDOutput& out, const data::Batch& batch) {
  std::vector<at::Tensor> boxes, labels;
  for (size_t i = 0; i < batch.boxes.size(); ++i) {
    boxes.push_back(batch.boxes[i].to(at::kCPU));
    labels.push_back(batch.labels[i].to(at::kCPU));
  }
  const auto t = models::ssd_targets(boxes, labels, out.priors.to(at::kCPU), targets_);
  losses::LossInputs in;
  in.logits = out.scores;
  in.locations = out.locations;
  in.target = t.labels.to(device_);
  in.target_locations = t.locations.to(device_);
  return loss_->forward(in).total;
}

at::Tensor DetectionTask::loss(const data::Batch& batch) {
  return loss_of(net_->forward(batch.images), batch);
}

void DetectionTask::begin_evaluation() {
  eval_rows_.clear();
  eval_images_ = 0;
  loss_sum_ = 0.0;
  loss_count_ = 0;
}

void DetectionTask::evaluate(const data::Batch& batch) {
  const auto out = net_->forward(batch.images);
  loss_sum_ += loss_of(out, batch).item<double>() * static_cast<double>(batch.size());
  loss_count_ += batch.size();
  // Boxes stay in network-input pixels: the ground truth was resized the same way.
  const auto detections = net_->postprocess(out);
  for (int64_t i = 0; i < batch.size(); ++i) {
    const auto image = static_cast<float>(eval_images_++);
    append_rows(eval_rows_, 0.0f, image, detections[i].boxes, detections[i].labels,
                detections[i].scores);
    append_rows(eval_rows_, 1.0f, image, batch.boxes[i], batch.labels[i], {});
  }
}

void DetectionTask::merge(train::DataParallel& dp) {
  // An all-gather from all-reduce: every rank writes its rows into its own slice of a zeroed
  // buffer, and the sum is everyone's rows. Image numbers are shifted by the images of the
  // ranks before.
  const int world = dp.world_size(), rank = dp.rank();
  auto counts = at::zeros({2, world}, at::kDouble);
  counts[0][rank] = static_cast<double>(eval_rows_.size());
  counts[1][rank] = static_cast<double>(eval_images_);
  dp.all_reduce_sum(counts);
  int64_t offset = 0, image_offset = 0, total = 0, images = 0;
  for (int r = 0; r < world; ++r) {
    const auto n = static_cast<int64_t>(counts[0][r].item<double>());
    const auto m = static_cast<int64_t>(counts[1][r].item<double>());
    if (r < rank) {
      offset += n;
      image_offset += m;
    }
    total += n;
    images += m;
  }
  auto buffer = at::zeros({total}, at::kFloat);
  float* dst = buffer.data_ptr<float>() + offset;
  for (size_t i = 0; i < eval_rows_.size(); ++i) {
    dst[i] = eval_rows_[i] + (i % kRow == 1 ? static_cast<float>(image_offset) : 0.0f);
  }
  dp.all_reduce_sum(buffer);
  eval_rows_.assign(buffer.data_ptr<float>(), buffer.data_ptr<float>() + total);
  eval_images_ = images;
  auto sums = at::tensor({loss_sum_, static_cast<double>(loss_count_)}, at::kDouble);
  dp.all_reduce_sum(sums);
  loss_sum_ = sums[0].item<double>();
  loss_count_ = static_cast<int64_t>(sums[1].item<double>());
}

nlohmann::json DetectionTask::end_evaluation() {
  // Rows back into per-image detections and ground truth (rows of an image are contiguous on
  // one rank, but ranks interleave nothing: images are numbered globally).
  const auto n = static_cast<int64_t>(eval_rows_.size()) / kRow;
  auto rows = at::from_blob(eval_rows_.data(), {n, kRow}, at::kFloat).clone();
  metrics::DetectionAP ap;
  if (n > 0) {
    const auto image = rows.select(1, 1).to(at::kLong);
    const auto kind = rows.select(1, 0);
    for (int64_t i = 0; i < eval_images_; ++i) {
      const auto mine = image == i;
      const auto det = rows.index({mine & (kind == 0)});
      const auto gt = rows.index({mine & (kind == 1)});
      ap.update({det.slice(1, 4, 8), {}, det.select(1, 3), det.select(1, 2).to(at::kLong)},
                {gt.slice(1, 4, 8), {}, gt.select(1, 2).to(at::kLong), {}});
    }
  }
  const auto r = ap.compute();
  auto value = [](double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); };
  nlohmann::json per_class = nlohmann::json::object();
  for (size_t c = 0; c < r.classes.size(); ++c) {
    per_class[std::to_string(r.classes[c])] = value(r.voc_ap50_per_class[c]);
  }
  return {{"loss", loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0},
          {"map50", value(r.voc_map50)},
          {"map", value(r.map)},
          {"coco_map50", value(r.map50)},
          {"map75", value(r.map75)},
          {"voc07_map50", value(r.voc07_map50)},
          {"ap50_per_class", per_class},
          {"images", eval_images_}};
}

std::shared_ptr<data::Dataset> DetectionTask::dataset(const std::string& split) const {
  return make_dataset(config_, split, /*masks=*/false);
}

std::shared_ptr<const data::Transform> DetectionTask::transforms(bool training) const {
  std::vector<std::shared_ptr<const data::Transform>> steps;
  if (training) {
    const auto& list =
        config_.data.transforms.is_null() ? default_augmentation() : config_.data.transforms;
    steps.push_back(data::build_transforms(list, config_.path, "data.transforms"));
  }
  const auto size = net_->options.image_size();
  steps.push_back(std::make_shared<data::Resize>(size, size));
  steps.push_back(
      std::make_shared<data::Normalize>(net_->options.image_mean(), net_->options.image_std()));
  return std::make_shared<data::Compose>(std::move(steps));
}

std::vector<std::string> DetectionTask::predict_image(const cv::Mat& bgr, const std::string& stem,
                                                      const std::string& out_dir) {
  if (label_to_category_.empty()) {
    // The dataset's own category ids and names for the JSON and the overlay.
    const DataSplit& s = config_.data.val.annotations.empty() ? config_.data.train : config_.data.val;
    if (s.annotations.empty()) {
      throw ConfigError(config_.path + ": detection predictions name the dataset's category "
                                       "ids: set data.val or data.train annotations");
    }
    const auto coco = dataset(&s == &config_.data.val ? "val" : "train");
    const auto& ds = dynamic_cast<const data::CocoDataset&>(*coco);
    label_to_category_ = ds.label_to_category_id();
    class_names_ = ds.category_names();
  }
  const auto& o = net_->options;
  const auto x =
      network_input(bgr, o.image_size(), o.image_size(), device_, o.image_mean(), o.image_std());
  const auto out = net_->forward(x);
  const auto det = net_->postprocess(out, {{bgr.rows, bgr.cols}})[0];
  const auto boxes = det.boxes.to(at::kCPU).contiguous();
  const auto scores = det.scores.to(at::kCPU).contiguous();
  const auto labels = det.labels.to(at::kCPU).contiguous();
  nlohmann::json j_boxes = nlohmann::json::array(), j_scores = nlohmann::json::array(),
                 j_labels = nlohmann::json::array();
  for (int64_t i = 0; i < boxes.size(0); ++i) {
    const float* b = boxes.data_ptr<float>() + 4 * i;
    j_boxes.push_back({b[0], b[1], b[2], b[3]});
    j_scores.push_back(scores.data_ptr<float>()[i]);
    j_labels.push_back(label_to_category_.at(static_cast<size_t>(labels.data_ptr<int64_t>()[i])));
  }
  const std::string json_name = stem + ".json", overlay_name = stem + "_overlay.png";
  io::write_json((fs::path(out_dir) / json_name).string(),
                 {{"boxes", j_boxes}, {"scores", j_scores}, {"labels", j_labels}});
  core::write_image((fs::path(out_dir) / overlay_name).string(),
                    data::draw_boxes(bgr, boxes, labels, scores, class_names_));
  return {json_name, overlay_name};
}

}  // namespace ostrov::cli
