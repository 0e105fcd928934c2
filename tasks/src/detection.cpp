#include "ostrov/tasks/detection.h"

#include <algorithm>
#include <utility>

#include <ATen/ATen.h>

#include "entries.h"
#include "evaluation.h"
#include "ostrov/core/error.h"
#include "ostrov/core/registry.h"
#include "ostrov/data/visualize.h"
#include "ostrov/metrics/detection_ap.h"
#include "ostrov/models/detection/build.h"
#include "ostrov/train/distributed.h"

namespace ostrov::tasks {

using detail::all_gather_rows;
using detail::all_reduce_loss;
using detail::nan_to_null;

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

// What every detector holder shares: `Net` (models::SSD, models::YOLO) has options with
// image_size, image_mean and image_std, and postprocess(forward(x), sizes).
template <typename Net>
class NetworkDetector : public Detector {
 public:
  explicit NetworkDetector(Net net) : net_(std::move(net)) {}
  torch::nn::Module& module() override { return *net_; }
  int64_t image_size() const override { return net_->options.image_size(); }
  std::vector<double> image_mean() const override { return net_->options.image_mean(); }
  std::vector<double> image_std() const override { return net_->options.image_std(); }
  std::vector<models::Detections> detect(const at::Tensor& images,
                                         const std::vector<ops::GridSize>& sizes) const override {
    const auto net = net_.ptr();  // forward is not const; it changes no state after the warm-up
    return net->postprocess(net->forward(images), sizes);
  }

 protected:
  Net net_;
};

// SSD detectors: the SSD of models::build_detector, SSDObjective, ssd_postprocess.
class SSDDetector : public NetworkDetector<models::SSD> {
 public:
  explicit SSDDetector(const RunConfig& c)
      : NetworkDetector(models::build_detector(c.model, c.data.num_classes, c.path)),
        objective_(SSDObjective::from_config(c.loss, c.data.num_classes, c.path)) {}
  at::Tensor loss(const data::Batch& batch, std::vector<models::Detections>* found) override {
    const auto out = net_->forward(batch.images);
    if (found) *found = net_->postprocess(out);
    return objective_(out, batch.boxes, batch.labels);
  }

 private:
  SSDObjective objective_;
};

// YOLO v1: models::build_yolo, YOLOObjective, yolo_postprocess.
class YOLODetector : public NetworkDetector<models::YOLO> {
 public:
  explicit YOLODetector(const RunConfig& c)
      : NetworkDetector(models::build_yolo(c.model, c.data.num_classes, c.path)),
        objective_(YOLOObjective::from_config(c.loss, c.path)) {}
  at::Tensor loss(const data::Batch& batch, std::vector<models::Detections>* found) override {
    const auto out = net_->forward(batch.images);
    if (found) *found = net_->postprocess(out);
    return objective_(out, batch.boxes, batch.labels, net_->options.grid(),
                      net_->options.image_size())
        .total;
  }

 private:
  YOLOObjective objective_;
};

// Faster R-CNN: models::build_faster_rcnn, its own losses weighted by RCNNObjective, its own
// post-processing. The task's pipeline resizes the image to the square image_size and
// normalises it; the network's transform then only batches (min_size = image_size by default).
class TwoStageDetector : public Detector {
 public:
  explicit TwoStageDetector(const RunConfig& c)
      : config_(models::faster_rcnn_config(c.model, c.data.num_classes, c.path)),
        objective_(RCNNObjective::from_config(c.loss, /*masks=*/false, c.path)),
        net_(models::build_faster_rcnn(c.model, c.data.num_classes, c.path)) {}
  torch::nn::Module& module() override { return *net_; }
  int64_t image_size() const override { return config_.image_size; }
  std::vector<double> image_mean() const override {
    return config_.options.transform().image_mean();
  }
  std::vector<double> image_std() const override {
    return config_.options.transform().image_std();
  }
  at::Tensor loss(const data::Batch& batch, std::vector<models::Detections>* found) override {
    std::vector<models::RCNNDetection> detections;
    const auto total = objective_(*net_, batch, found ? &detections : nullptr);
    if (found) {
      found->clear();
      for (auto& d : detections) found->push_back({d.boxes, d.scores, d.labels});
    }
    return total;
  }
  std::vector<models::Detections> detect(const at::Tensor& images,
                                         const std::vector<ops::GridSize>& sizes) const override {
    std::vector<at::Tensor> list;
    for (int64_t i = 0; i < images.size(0); ++i) list.push_back(images[i]);
    const auto net = net_.ptr();  // detect is not const; it changes no state in eval mode
    auto detections = net->detect(list);
    std::vector<models::Detections> out;
    for (size_t i = 0; i < detections.size(); ++i) {
      // From the network input's pixels to the original image's.
      const double sx = static_cast<double>(sizes.at(i)[1]) / static_cast<double>(images.size(3));
      const double sy = static_cast<double>(sizes.at(i)[0]) / static_cast<double>(images.size(2));
      // In float32: under autocast the network's boxes may be bfloat16 or float16.
      const auto boxes = detections[i].boxes.to(at::kFloat);
      const auto scale = at::tensor({sx, sy, sx, sy}, boxes.options());
      out.push_back({boxes * scale, detections[i].scores.to(at::kFloat), detections[i].labels});
    }
    return out;
  }

 private:
  models::FasterRCNNConfig config_;
  RCNNObjective objective_;
  models::FasterRCNN net_;
};

core::Registry<DetectorEntry>& detectors() {
  static core::Registry<DetectorEntry> r(
      "detector", {{"faster_rcnn",
                    [](const RunConfig& c) -> std::unique_ptr<Detector> {
                      return std::make_unique<TwoStageDetector>(c);
                    },
                    [](const RunConfig& c) {
                      models::faster_rcnn_config(c.model, c.data.num_classes, c.path);
                    },
                    [](const RunConfig& c) {
                      RCNNObjective::from_config(c.loss, /*masks=*/false, c.path);
                    }},
                   {"yolo",
                    [](const RunConfig& c) -> std::unique_ptr<Detector> {
                      return std::make_unique<YOLODetector>(c);
                    },
                    [](const RunConfig& c) {
                      models::yolo_options(c.model, c.data.num_classes, c.path);
                    },
                    [](const RunConfig& c) { YOLOObjective::from_config(c.loss, c.path); }}});
  return r;
}

bool is_ssd(const std::string& name) {
  const auto ssds = models::detection_model_names();
  return std::find(ssds.begin(), ssds.end(), name) != ssds.end();
}

// The entry of config.model.name: a registry entry, or one of the SSDs; ConfigError otherwise.
DetectorEntry find_detector(const RunConfig& c) {
  const auto name = detail::model_name(c);
  if (const DetectorEntry* entry = detectors().find(name)) return *entry;
  if (name.empty() || !is_ssd(name)) {
    // models::build_detector names a missing or mistyped name; list every kind here.
    std::string known;
    for (const auto& n : detector_names()) known += (known.empty() ? "" : ", ") + n;
    throw ConfigError(c.path + ": key model.name: unknown detector \"" + name + "\" (known: " +
                      known + ")");
  }
  return {name,
          [](const RunConfig& config) -> std::unique_ptr<Detector> {
            return std::make_unique<SSDDetector>(config);
          },
          [](const RunConfig& config) {
            models::detector_options(config.model, config.data.num_classes, config.path);
          },
          [](const RunConfig& config) {
            SSDObjective::from_config(config.loss, config.data.num_classes, config.path);
          }};
}

}  // namespace

void register_detector(DetectorEntry entry) {
  if (!entry.make || !entry.validate_model || !entry.validate_loss) {
    throw Error("register_detector: the entry needs make, validate_model and validate_loss");
  }
  if (is_ssd(entry.name)) {
    throw Error("register_detector: \"" + entry.name + "\" is an SSD of the models registry");
  }
  detectors().add(std::move(entry));
}

std::vector<std::string> detector_names() {
  auto names = models::detection_model_names();
  const auto more = detectors().names();
  names.insert(names.end(), more.begin(), more.end());
  return names;
}

std::unique_ptr<Detector> make_detector(const RunConfig& config) {
  return find_detector(config).make(config);
}

TaskEntry detail::detection_entry() {
  return {"detection", "boxes with classes (SSD300, SSDlite, the light SSD, YOLO, Faster R-CNN)",
          "map50",
          {"coco"},
          [](const RunConfig& c, const c10::Device& d) {
            return std::make_unique<DetectionTask>(c, d);
          },
          [](const RunConfig& c) { find_detector(c).validate_model(c); },
          [](const RunConfig& c) {
            // Which loss keys exist depends on the model; an unknown model is named by the
            // model check, so the loss is checked for a known one only.
            const auto name = detail::model_name(c);
            if (detectors().find(name) != nullptr || is_ssd(name)) {
              find_detector(c).validate_loss(c);
            }
          },
          detector_names,
          {}};  // the loss follows the detector kind
}

DetectionTask::DetectionTask(const RunConfig& config, const c10::Device& device)
    : Task(config, device), detector_(make_detector(config)) {
  detector_->module().to(device);
}

at::Tensor DetectionTask::loss(const data::Batch& batch) { return detector_->loss(batch, nullptr); }

void DetectionTask::begin_evaluation() {
  eval_rows_.clear();
  eval_images_ = 0;
  loss_sum_ = 0.0;
  loss_count_ = 0;
}

void DetectionTask::evaluate(const data::Batch& batch) {
  std::vector<models::Detections> detections;
  loss_sum_ += detector_->loss(batch, &detections).item<double>() *
               static_cast<double>(batch.size());
  loss_count_ += batch.size();
  // Boxes stay in network-input pixels: the ground truth was resized the same way.
  for (int64_t i = 0; i < batch.size(); ++i) {
    const auto image = static_cast<float>(eval_images_++);
    append_rows(eval_rows_, 0.0f, image, detections[i].boxes, detections[i].labels,
                detections[i].scores);
    append_rows(eval_rows_, 1.0f, image, batch.boxes[i], batch.labels[i], {});
  }
}

void DetectionTask::merge(train::DataParallel& dp) {
  all_gather_rows(dp, eval_rows_, kRow, eval_images_);
  all_reduce_loss(dp, loss_sum_, loss_count_);
}

nlohmann::json DetectionTask::end_evaluation() {
  // Rows back into per-image detections and ground truth (images are numbered globally).
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
  nlohmann::json per_class = nlohmann::json::object();
  for (size_t c = 0; c < r.classes.size(); ++c) {
    // Keyed by the dataset's category id, as predictions report classes.
    const int64_t label = r.classes[c];
    const int64_t id = label >= 0 && label < static_cast<int64_t>(category_ids_.size())
                           ? category_ids_[static_cast<size_t>(label)]
                           : label;
    per_class[std::to_string(id)] = nan_to_null(r.ap50_per_class[c]);
  }
  return {{"loss", loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0},
          {"map50", nan_to_null(r.map50)},
          {"map", nan_to_null(r.map)},
          {"map75", nan_to_null(r.map75)},
          {"voc_map50", nan_to_null(r.voc_map50)},
          {"voc07_map50", nan_to_null(r.voc07_map50)},
          {"ap50_per_class", per_class},
          {"images", eval_images_}};
}

std::shared_ptr<const data::Transform> DetectionTask::transforms(bool training) const {
  std::vector<std::shared_ptr<const data::Transform>> steps;
  if (training) {
    const auto& list =
        config_.data.transforms.is_null() ? default_augmentation() : config_.data.transforms;
    steps.push_back(data::build_transforms(list, config_.path, "data.transforms"));
  }
  const auto size = detector_->image_size();
  steps.push_back(std::make_shared<data::Resize>(size, size));
  steps.push_back(
      std::make_shared<data::Normalize>(detector_->image_mean(), detector_->image_std()));
  return std::make_shared<data::Compose>(std::move(steps));
}

ops::GridSize DetectionTask::input_size() const {
  return {detector_->image_size(), detector_->image_size()};
}

std::vector<Prediction> DetectionTask::predict(const at::Tensor& images,
                                               const std::vector<ops::GridSize>& sizes) const {
  const auto detections = detector_->detect(images, sizes);
  const auto ids = at::tensor(category_ids_, at::kLong);
  std::vector<Prediction> out(detections.size());
  for (size_t i = 0; i < detections.size(); ++i) {
    auto& p = out[i];
    p.boxes = detections[i].boxes.to(at::kCPU).contiguous();
    p.scores = detections[i].scores.to(at::kCPU).contiguous();
    const auto labels = detections[i].labels.to(at::kCPU).contiguous();
    p.labels = ids.index_select(0, labels);
    for (int64_t k = 0; k < labels.size(0); ++k) {
      p.names.push_back(class_names_.at(static_cast<size_t>(labels.data_ptr<int64_t>()[k])));
    }
  }
  return out;
}

cv::Mat DetectionTask::overlay(const cv::Mat& bgr, const Prediction& p) const {
  // Colours by contiguous label: the same class the same colour as in training pictures.
  std::vector<int64_t> contiguous;
  const auto ids = p.labels.contiguous();
  for (int64_t k = 0; k < ids.size(0); ++k) {
    const auto id = ids.data_ptr<int64_t>()[k];
    int64_t label = 0;
    for (size_t c = 0; c < category_ids_.size(); ++c) {
      if (category_ids_[c] == id) label = static_cast<int64_t>(c);
    }
    contiguous.push_back(label);
  }
  return data::draw_boxes(bgr, p.boxes, at::tensor(contiguous, at::kLong), p.scores,
                          class_names_);
}

}  // namespace ostrov::tasks
