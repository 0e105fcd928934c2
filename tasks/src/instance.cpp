#include "ostrov/tasks/instance.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <ATen/ATen.h>

#include "entries.h"
#include "evaluation.h"
#include "ostrov/core/error.h"
#include "ostrov/core/registry.h"
#include "ostrov/core/image.h"
#include "ostrov/data/visualize.h"
#include "ostrov/io/json.h"
#include "ostrov/losses/build.h"
#include "ostrov/losses/unet_weights.h"
#include "ostrov/losses/watershed.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "ostrov/tasks/objectives.h"
#include "ostrov/ops/instance.h"
#include "ostrov/train/distributed.h"

namespace ostrov::tasks {

using detail::all_gather_rows;
using detail::all_reduce_loss;
using detail::nan_to_null;

namespace {

// The loss term names of a losses::build config (one term or "terms").
std::vector<std::string> loss_names(const nlohmann::json& loss) {
  std::vector<std::string> names;
  if (!loss.is_object()) return names;
  if (loss.contains("terms") && loss["terms"].is_array()) {
    for (const auto& t : loss["terms"]) {
      if (t.is_object() && t.contains("name") && t["name"].is_string()) {
        names.push_back(t["name"].get<std::string>());
      }
    }
  } else if (loss.contains("name") && loss["name"].is_string()) {
    names.push_back(loss["name"].get<std::string>());
  }
  return names;
}

at::Tensor stack_or_empty(const std::vector<at::Tensor>& masks, int64_t h, int64_t w) {
  return masks.empty() ? at::zeros({0, h, w}, at::kByte) : at::stack(masks).to(at::kByte);
}

// Evaluation records as floats, so ranks can exchange them with a sum (all_gather_rows):
// a tensor is its length then its values; masks [K,H,W] are K, H, W then each mask's COCO RLE
// (its count of runs, then the runs). Scores are float already; integers are exact up to
// 2^24, so a mask may have up to 16.7 million pixels.
class Writer {
 public:
  explicit Writer(std::vector<float>& out) : out_(out) {}
  void values(const at::Tensor& t) {
    const auto v = t.defined() ? t.to(at::kCPU, at::kFloat).contiguous().flatten()
                               : at::zeros({0}, at::kFloat);
    out_.push_back(static_cast<float>(v.numel()));
    out_.insert(out_.end(), v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
  }
  void masks(const at::Tensor& m) {
    TORCH_CHECK(m.size(1) * m.size(2) < (int64_t{1} << 24), "instance evaluation over ranks: ",
                "masks of ", m.size(1), "x", m.size(2), " pixels exceed 2^24");
    out_.insert(out_.end(), {static_cast<float>(m.size(0)), static_cast<float>(m.size(1)),
                             static_cast<float>(m.size(2))});
    for (int64_t k = 0; k < m.size(0); ++k) {
      const auto rle = ops::rle_encode(m[k]);
      out_.push_back(static_cast<float>(rle.counts.size()));
      for (const auto c : rle.counts) out_.push_back(static_cast<float>(c));
    }
  }

 private:
  std::vector<float>& out_;
};

class Reader {
 public:
  Reader(std::vector<float>& in, size_t at) : in_(in), at_(at) {}
  int64_t integer() { return static_cast<int64_t>(in_.at(at_++)); }
  at::Tensor values(at::ScalarType type) {
    const auto n = integer();
    auto t = at::from_blob(in_.data() + at_, {n}, at::kFloat).clone().to(type);
    at_ += static_cast<size_t>(n);
    return t;
  }
  at::Tensor masks() {
    const auto k = integer(), h = integer(), w = integer();
    std::vector<at::Tensor> out;
    for (int64_t i = 0; i < k; ++i) {
      ops::Rle rle{h, w, {}};
      const auto n = integer();
      for (int64_t j = 0; j < n; ++j) rle.counts.push_back(static_cast<uint32_t>(integer()));
      out.push_back(ops::rle_decode(rle));
    }
    return stack_or_empty(out, h, w);
  }
  size_t position() const { return at_; }

 private:
  std::vector<float>& in_;
  size_t at_;
};

at::Tensor instance_maps(const data::Batch& batch) {
  TORCH_CHECK(batch.instances.size() == static_cast<size_t>(batch.size()),
              "instance training needs instance masks (COCO segmentations)");
  const int64_t h = batch.images.size(2), w = batch.images.size(3);
  std::vector<at::Tensor> maps;
  for (const auto& masks : batch.instances) {
    maps.push_back(models::masks_to_label_image(masks.to(at::kCPU), h, w));
  }
  return at::stack(maps);
}

/// The `loss` section for a method whose loss terms must be among `allowed`.
losses::CompositeLoss method_loss(const RunConfig& config, const nlohmann::json& fallback,
                                  const std::vector<std::string>& allowed,
                                  const std::string& rule) {
  const nlohmann::json loss = config.loss.is_null() ? fallback : config.loss;
  const auto names = loss_names(loss);
  if (names.empty() || std::any_of(names.begin(), names.end(), [&](const std::string& n) {
        return std::find(allowed.begin(), allowed.end(), n) == allowed.end();
      })) {
    throw ConfigError(config.path + ": " + rule);
  }
  return losses::build(loss, config.path, "loss");
}

// DeepColoring: the halo loss on the colour logits against the instance label image.
class ColoringObjective : public InstanceObjective {
 public:
  explicit ColoringObjective(const RunConfig& c)
      : loss_(method_loss(c, {{"name", "halo"}}, {"halo"},
                          "loss.name must be \"halo\" for model deep_coloring")) {}
  at::Tensor loss(const models::InstanceModel& model, const data::Batch& batch,
                  std::vector<models::InstancePrediction>* found) override {
    auto& net = *model.as<models::DeepColoringImpl>();
    losses::LossInputs in;
    in.logits = net.forward(batch.images);
    in.target = instance_maps(batch).to(in.logits.device());
    if (found) {
      for (int64_t i = 0; i < in.logits.size(0); ++i) {
        found->push_back(models::deep_coloring_instances(in.logits[i], net.options.min_size()));
      }
    }
    return loss_->forward(in).total;
  }
  void to(const c10::Device& device) override { loss_->to(device); }

 private:
  losses::CompositeLoss loss_;
};

// Deep Watershed: direction and energy terms on targets from the instance label image.
class WatershedObjective : public InstanceObjective {
 public:
  explicit WatershedObjective(const RunConfig& c)
      : loss_(method_loss(c, {{"terms", {{{"name", "direction"}}, {{"name", "energy"}}}}},
                          {"direction", "energy"},
                          "loss for model deep_watershed takes the terms \"direction\" and "
                          "\"energy\" only")) {}
  at::Tensor loss(const models::InstanceModel& model, const data::Batch& batch,
                  std::vector<models::InstancePrediction>* found) override {
    auto& net = *model.as<models::DeepWatershedImpl>();
    const auto out = net.forward(batch.images);
    const auto device = out.energy.device();
    const auto t = losses::watershed_targets(
        instance_maps(batch),
        losses::WatershedTargetOptions().num_levels(net.options.num_levels()).step(net.options.level_step()));
    losses::LossInputs in;
    in.logits = out.energy;
    in.target = t.energy.to(device);
    in.direction = out.direction;
    in.target_direction = t.direction.to(device);
    in.mask = t.energy.gt(0).to(device);
    if (found) {
      for (int64_t i = 0; i < out.energy.size(0); ++i) {
        found->push_back(models::watershed_instances(out.energy[i], net.options.extract()));
      }
    }
    return loss_->forward(in).total;
  }
  void to(const c10::Device& device) override { loss_->to(device); }

 private:
  losses::CompositeLoss loss_;
};

// U-Net for touching objects: (weighted) cross-entropy on the 3-class or foreground target
// made from the instance label image; weighted_cross_entropy reads that image for w(x).
class UNetBorderObjective : public InstanceObjective {
 public:
  explicit UNetBorderObjective(const RunConfig& c)
      : loss_(method_loss(c, {{"name", "weighted_cross_entropy"}},
                          {"weighted_cross_entropy", "cross_entropy", "soft_dice", "ce_dice"},
                          "loss for model unet_border takes the terms \"weighted_cross_entropy\", "
                          "\"cross_entropy\", \"soft_dice\" and \"ce_dice\" only")) {}
  at::Tensor loss(const models::InstanceModel& model, const data::Batch& batch,
                  std::vector<models::InstancePrediction>* found) override {
    auto& net = *model.as<models::UNetBorderImpl>();
    losses::LossInputs in;
    in.logits = net.forward(batch.images);
    const auto device = in.logits.device();
    const auto maps = instance_maps(batch);
    const auto target =
        net.options.target() == models::UNetBorderTarget::kThreeClass
            ? losses::unet_three_class_target(maps, net.options.border_width())
            : maps.ne(0).to(at::kLong);
    in.target = target.to(device);
    in.instances = maps;  // the weight map is computed on the CPU
    if (found) {
      for (int64_t i = 0; i < in.logits.size(0); ++i) {
        found->push_back(models::unet_border_instances(in.logits[i], net.options));
      }
    }
    return loss_->forward(in).total;
  }
  void to(const c10::Device& device) override { loss_->to(device); }

 private:
  losses::CompositeLoss loss_;
};

// Mask R-CNN on SSD: the detector's objective plus the mask loss on jittered true boxes.
class SSDMaskObjective : public InstanceObjective {
 public:
  explicit SSDMaskObjective(const RunConfig& c) {
    if (c.data.height != c.data.width) {
      throw ConfigError(c.path + ": model ssd_mask needs a square data.image_size");
    }
    const nlohmann::json section = c.loss.is_null() ? nlohmann::json::object() : c.loss;
    if (!section.is_object()) throw ConfigError(c.path + ": loss must be an object");
    io::ConfigReader r(section, c.path, "loss");
    detector_ = SSDObjective(r, c.data.num_classes);
    mask_ = MaskObjective(r);
    r.finish();
  }
  at::Tensor loss(const models::InstanceModel& model, const data::Batch& batch,
                  std::vector<models::InstancePrediction>* found) override {
    auto& net = *model.as<models::SSDMaskImpl>();
    // Inference runs the network once more (detector -> NMS -> masks); evaluation only.
    if (found) *found = net.predict(batch.images);
    const auto out = net.forward(batch.images);
    std::vector<at::Tensor> instances;
    for (const auto& m : batch.instances) instances.push_back(m.to(at::kCPU));
    auto total = detector_(out.detector, batch.boxes, batch.labels);
    const auto mask = mask_(net, out.mask_features, batch.boxes, batch.labels, instances,
                            {batch.images.size(2), batch.images.size(3)}, net.is_training(), rng_);
    return mask.defined() ? total + mask : total;
  }

 private:
  SSDObjective detector_;
  MaskObjective mask_;
  std::mt19937_64 rng_{0x05700};
};

// Two-stage Mask R-CNN: the model's own losses (torchvision's five), each with a weight
// (RCNNObjective).
class TwoStageObjective : public InstanceObjective {
 public:
  explicit TwoStageObjective(const RunConfig& c)
      : objective_(RCNNObjective::from_config(c.loss, /*masks=*/true, c.path)) {}
  at::Tensor loss(const models::InstanceModel& model, const data::Batch& batch,
                  std::vector<models::InstancePrediction>* found) override {
    auto& net = *model.as<models::FasterRCNNImpl>();
    const auto n = static_cast<size_t>(batch.images.size(0));
    if (batch.boxes.size() != n || batch.labels.size() != n || batch.instances.size() != n) {
      throw DataError("model mask_rcnn needs boxes, labels and instance masks for every image (a "
                      "COCO dataset with segmentations); the batch has " +
                      std::to_string(batch.instances.size()) + " mask sets for " +
                      std::to_string(n) + " images");
    }
    std::vector<models::RCNNDetection> detections;
    const auto total = objective_(net, batch, found ? &detections : nullptr);
    if (found) *found = net.instances(detections);
    return total;
  }

 private:
  RCNNObjective objective_;
};

template <typename Objective>
InstanceObjectiveEntry::Make objective() {
  return [](const RunConfig& c) -> std::unique_ptr<InstanceObjective> {
    return std::make_unique<Objective>(c);
  };
}

core::Registry<InstanceObjectiveEntry>& objectives() {
  static core::Registry<InstanceObjectiveEntry> r(
      "instance objective", {{"deep_coloring", objective<ColoringObjective>()},
                             {"deep_watershed", objective<WatershedObjective>()},
                             {"mask_rcnn", objective<TwoStageObjective>()},
                             {"ssd_mask", objective<SSDMaskObjective>()},
                             {"unet_border", objective<UNetBorderObjective>()}});
  return r;
}

}  // namespace

void register_instance_objective(InstanceObjectiveEntry entry) {
  if (!entry.make) throw Error("register_instance_objective: the entry has no make function");
  objectives().add(std::move(entry));
}

std::unique_ptr<InstanceObjective> make_instance_objective(const RunConfig& config) {
  const auto name = detail::model_name(config);
  const InstanceObjectiveEntry* entry = objectives().find(name);
  if (entry == nullptr) {
    throw ConfigError(config.path + ": key model.name: no training objective for instance model \"" +
                      name + "\" (known: " + objectives().known() + ")");
  }
  return entry->make(config);
}

TaskEntry detail::instance_entry() {
  return {"instance",
          "one mask per object (DeepColoring, Deep Watershed, SSD + mask head, U-Net with "
          "border weights)",
          "ap50", {"coco"},
          [](const RunConfig& c, const c10::Device& d) {
            return std::make_unique<InstanceTask>(c, d);
          },
          [](const RunConfig& c) {
            models::check_instance_model(c.model, c.data.num_classes, c.data.height, c.path);
          },
          [](const RunConfig& c) {
            // The model's own check names a bad model; the loss is checked for a known one.
            if (objectives().find(detail::model_name(c)) != nullptr) make_instance_objective(c);
          },
          models::instance_model_names,
          {}};  // the loss is chosen by the model's objective, not by loss.name
}

InstanceTask::InstanceTask(const RunConfig& config, const c10::Device& device)
    : Task(config, device),
      net_(models::build_instance(config.model, config.data.num_classes, config.data.height,
                                  config.path)),
      objective_(make_instance_objective(config)) {
  net_.module->to(device);
  objective_->to(device);
}

at::Tensor InstanceTask::loss(const data::Batch& batch) { return objective_->loss(net_, batch, nullptr); }

void InstanceTask::begin_evaluation() {
  eval_.clear();
  loss_sum_ = 0.0;
  loss_count_ = 0;
}

void InstanceTask::evaluate(const data::Batch& batch) {
  std::vector<models::InstancePrediction> found;
  loss_sum_ += objective_->loss(net_, batch, &found).item<double>() * static_cast<double>(batch.size());
  loss_count_ += batch.size();
  for (int64_t i = 0; i < batch.size(); ++i) {
    const auto& f = found[static_cast<size_t>(i)];
    EvalImage e;
    const auto agnostic = net_.class_agnostic(f, 0.0);
    e.masks = f.masks.index({agnostic}).to(at::kCPU);
    e.scores = f.scores.index({agnostic}).to(at::kCPU);
    if (net_.network->has_classes()) {
      // With its classes, as COCO evaluates Mask R-CNN (per-class NMS only).
      e.class_masks = f.masks.to(at::kCPU);
      e.class_scores = f.scores.to(at::kCPU);
      e.class_labels = f.labels.to(at::kCPU);
    }
    e.counted = net_.counted_masks(f).to(at::kCPU);
    e.truth = batch.instances[static_cast<size_t>(i)].to(at::kCPU);
    e.truth_labels = batch.labels[static_cast<size_t>(i)].to(at::kCPU);
    eval_.push_back(std::move(e));
  }
}

void InstanceTask::merge(train::DataParallel& dp) {
  std::vector<float> rows;
  Writer w(rows);
  for (const auto& e : eval_) {
    w.masks(e.masks);
    w.values(e.scores);
    const bool classes = e.class_masks.defined();
    rows.push_back(classes ? 1.0f : 0.0f);
    if (classes) {
      w.masks(e.class_masks);
      w.values(e.class_scores);
      w.values(e.class_labels);
    }
    w.masks(e.counted);
    w.masks(e.truth);
    w.values(e.truth_labels);
  }
  int64_t images = static_cast<int64_t>(eval_.size());
  all_gather_rows(dp, rows, /*row_size=*/1, images);  // row size 1: no image numbers to shift
  eval_.clear();
  Reader r(rows, 0);
  while (r.position() < rows.size()) {
    EvalImage e;
    e.masks = r.masks();
    e.scores = r.values(at::kFloat);
    if (r.integer() == 1) {
      e.class_masks = r.masks();
      e.class_scores = r.values(at::kFloat);
      e.class_labels = r.values(at::kLong);
    }
    e.counted = r.masks();
    e.truth = r.masks();
    e.truth_labels = r.values(at::kLong);
    eval_.push_back(std::move(e));
  }
  all_reduce_loss(dp, loss_sum_, loss_count_);
}

nlohmann::json InstanceTask::end_evaluation() {
  metrics::MaskAP ap, class_ap;
  metrics::CvpppMetrics cvppp;
  for (const auto& e : eval_) {
    const int64_t g = e.truth.size(0), h = e.truth.size(1), w = e.truth.size(2);
    ap.update({{}, e.masks, e.scores, at::ones({e.masks.size(0)}, at::kLong)},
              {{}, e.truth, at::ones({g}, at::kLong), {}});
    if (e.class_masks.defined()) {
      class_ap.update({{}, e.class_masks, e.class_scores, e.class_labels},
                      {{}, e.truth, e.truth_labels, {}});
    }
    cvppp.update(models::masks_to_label_image(e.counted, h, w),
                 models::masks_to_label_image(e.truth, h, w));
  }
  const auto r = ap.compute();
  nlohmann::json out = {
      {"loss", loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0},
      {"ap50", nan_to_null(r.map50)},
      {"ap", nan_to_null(r.map)},
      {"ap75", nan_to_null(r.map75)},
      {"sbd", nan_to_null(cvppp.sbd())},
      {"abs_dic", nan_to_null(cvppp.abs_dic())},
      {"dic", nan_to_null(cvppp.dic())},
      {"images", cvppp.num_images()}};
  if (net_.network->has_classes()) {
    const auto c = class_ap.compute();
    out["class_ap50"] = nan_to_null(c.map50);
    out["class_ap"] = nan_to_null(c.map);
  }
  return out;
}

std::vector<Prediction> InstanceTask::predict(const at::Tensor& images,
                                              const std::vector<ops::GridSize>& sizes) const {
  const auto found = net_.predict(images);
  std::vector<Prediction> out(found.size());
  for (size_t i = 0; i < found.size(); ++i) {
    const auto& f = found[i];
    const auto [h, w] = sizes.at(i);
    auto& p = out[i];
    const int64_t k = f.masks.size(0);
    // Back to the input's size (nearest), then boxes from the full-size masks.
    std::vector<at::Tensor> full;
    for (int64_t j = 0; j < k; ++j) full.push_back(core::resize_mask(f.masks[j].to(at::kCPU), h, w));
    const auto masks = stack_or_empty(full, h, w).contiguous();
    p.boxes = ops::masks_to_boxes(masks).contiguous();
    p.scores = f.scores.to(at::kCPU, at::kFloat).contiguous();
    if (f.labels.defined()) {
      const auto labels = f.labels.to(at::kCPU, at::kLong);
      p.labels = at::tensor(category_ids_, at::kLong).index_select(0, labels);
      for (int64_t j = 0; j < k; ++j) {
        p.names.push_back(class_names_.at(static_cast<size_t>(labels[j].item<int64_t>())));
      }
    } else {
      // Class-agnostic methods: 0 = "an object".
      p.labels = at::zeros({k}, at::kLong);
      p.names.assign(static_cast<size_t>(k), "object");
    }
    for (int64_t j = 0; j < k; ++j) {
      p.instance_masks.push_back(
          cv::Mat(static_cast<int>(h), static_cast<int>(w), CV_8U, masks[j].data_ptr()).clone());
    }
  }
  return out;
}

cv::Mat InstanceTask::overlay(const cv::Mat& bgr, const Prediction& p) const {
  std::vector<at::Tensor> masks;
  for (const auto& m : p.instance_masks) {
    masks.push_back(at::from_blob(m.data, {m.rows, m.cols}, at::kByte).clone());
  }
  const auto stacked = stack_or_empty(masks, bgr.rows, bgr.cols);
  models::InstancePrediction found{stacked, p.scores, p.labels, p.boxes};
  return data::overlay_instances(bgr, net_.counted_masks(found), 0.5);
}

nlohmann::json InstanceTask::prediction_json(const Prediction& p) const {
  auto json = Task::prediction_json(p);
  nlohmann::json masks = nlohmann::json::array();
  for (const auto& m : p.instance_masks) {
    const auto rle = ops::rle_encode(at::from_blob(m.data, {m.rows, m.cols}, at::kByte));
    masks.push_back({{"size", {rle.height, rle.width}}, {"counts", ops::rle_to_string(rle)}});
  }
  json["masks"] = masks;
  return json;
}

}  // namespace ostrov::tasks
