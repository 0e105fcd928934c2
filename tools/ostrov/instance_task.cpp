#include "instance_task.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/coco_dataset.h"
#include "ostrov/data/visualize.h"
#include "ostrov/io/json.h"
#include "ostrov/io/weights.h"
#include "ostrov/ops/instance.h"
#include "detection_task.h"
#include "ostrov/losses/mask.h"

namespace fs = std::filesystem;

namespace ostrov::cli {

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

// Takes a number out of `object` (so losses::build does not see it).
double take_number(nlohmann::json& object, const char* key, double fallback,
                   const std::string& where) {
  if (!object.contains(key)) return fallback;
  const auto value = object[key];
  object.erase(key);
  if (!value.is_number()) throw ConfigError(where + ": key loss." + key + " must be a number");
  return value.get<double>();
}

at::Tensor stack_or_empty(const std::vector<at::Tensor>& masks, int64_t h, int64_t w) {
  return masks.empty() ? at::zeros({0, h, w}, at::kByte) : at::stack(masks).to(at::kByte);
}

}  // namespace

InstanceTask::InstanceTask(const RunConfig& config, const c10::Device& device)
    : config_(config), device_(device) {
  const auto& where = config.path;
  if (config.data.format != "coco") {
    throw ConfigError(where + ": task instance needs data.format \"coco\", got \"" +
                      config.data.format + "\"");
  }
  net_ = models::build_instance(config.model, config.data.num_classes, config.data.height, where);
  nlohmann::json loss = config.loss;
  if (net_.deep_coloring) {
    method_ = Method::kDeepColoring;
    if (loss.is_null()) loss = {{"name", "halo"}};
    if (loss_names(loss) != std::vector<std::string>{"halo"}) {
      throw ConfigError(where + ": loss.name must be \"halo\" for model deep_coloring");
    }
  } else if (net_.deep_watershed) {
    method_ = Method::kDeepWatershed;
    if (loss.is_null()) loss = {{"terms", {{{"name", "direction"}}, {{"name", "energy"}}}}};
    const auto names = loss_names(loss);
    if (names.empty() || std::any_of(names.begin(), names.end(), [](const std::string& n) {
          return n != "direction" && n != "energy";
        })) {
      throw ConfigError(where + ": loss for model deep_watershed takes the terms "
                                "\"direction\" and \"energy\" only");
    }
    const auto& o = net_.deep_watershed->options;
    watershed_targets_.num_levels(o.num_levels()).step(o.level_step());
  } else {
    method_ = Method::kMaskRCNN;
    if (config.data.height != config.data.width) {
      throw ConfigError(where + ": model mask_rcnn needs a square data.image_size");
    }
    if (loss.is_null()) loss = {{"name", "multibox"}};
    if (!loss.is_object()) throw ConfigError(where + ": loss must be an object");
    mask_weight_ = take_number(loss, "mask_weight", mask_weight_, where);
    box_jitter_ = take_number(loss, "box_jitter", box_jitter_, where);
    if (mask_weight_ < 0 || box_jitter_ < 0 || box_jitter_ >= 0.5) {
      throw ConfigError(where + ": loss.mask_weight must be >= 0 and loss.box_jitter in [0, 0.5)");
    }
    auto [rest, targets] = split_detection_loss(loss, where);
    loss = rest;
    ssd_targets_ = targets.num_classes(config.data.num_classes);
  }
  loss_ = losses::build(loss, where, "loss");
  net_.module->to(device);
  loss_->to(device);
}

at::Tensor InstanceTask::instance_maps(const data::Batch& batch) const {
  TORCH_CHECK(batch.instances.size() == static_cast<size_t>(batch.size()),
              "instance training needs instance masks (COCO segmentations)");
  const int64_t h = batch.images.size(2), w = batch.images.size(3);
  std::vector<at::Tensor> maps;
  for (const auto& masks : batch.instances) {
    maps.push_back(models::masks_to_label_image(masks.to(at::kCPU), h, w));
  }
  return at::stack(maps);
}

at::Tensor InstanceTask::mask_rcnn_loss(const models::MaskRCNNOutput& out, const data::Batch& batch) {
  std::vector<at::Tensor> boxes, labels, rois, mask_labels, targets;
  const ops::GridSize size{batch.images.size(2), batch.images.size(3)};
  for (int64_t i = 0; i < batch.size(); ++i) {
    const auto b = batch.boxes[static_cast<size_t>(i)].to(at::kCPU, at::kFloat);
    const auto l = batch.labels[static_cast<size_t>(i)].to(at::kCPU, at::kLong);
    boxes.push_back(b);
    labels.push_back(l);
    if (b.size(0) == 0) continue;
    // The mask head learns on the ground-truth boxes, jittered while training so that it also
    // copes with the detector's imperfect boxes.
    const auto jittered = net_.module->is_training() ? models::jitter_boxes(b, box_jitter_, size, rng_) : b;
    rois.push_back(at::cat({at::full({b.size(0), 1}, static_cast<double>(i), at::kFloat), jittered}, 1));
    mask_labels.push_back(l);
    targets.push_back(models::mask_targets(batch.instances[static_cast<size_t>(i)], jittered,
                                           2 * net_.mask_rcnn->options.roi_size()));
  }
  const auto t = models::ssd_targets(boxes, labels, out.detector.priors.to(at::kCPU), ssd_targets_);
  losses::LossInputs in;
  in.logits = out.detector.scores;
  in.locations = out.detector.locations;
  in.target = t.labels.to(device_);
  in.target_locations = t.locations.to(device_);
  auto total = loss_->forward(in).total;
  if (!rois.empty() && mask_weight_ > 0) {
    const auto logits = net_.mask_rcnn->mask_logits(out.mask_features, at::cat(rois).to(device_));
    total = total + mask_weight_ * losses::functional::mask_loss(logits, at::cat(mask_labels),
                                                                 at::cat(targets));
  }
  return total;
}

at::Tensor InstanceTask::compute(const data::Batch& batch,
                                 std::vector<models::InstancePrediction>* found) {
  losses::LossInputs in;
  switch (method_) {
    case Method::kDeepColoring: {
      in.logits = net_.deep_coloring->forward(batch.images);
      in.target = instance_maps(batch).to(device_);
      if (found) {
        for (int64_t i = 0; i < in.logits.size(0); ++i) {
          found->push_back(models::deep_coloring_instances(in.logits[i], net_.deep_coloring->options.min_size()));
        }
      }
      return loss_->forward(in).total;
    }
    case Method::kDeepWatershed: {
      const auto out = net_.deep_watershed->forward(batch.images);
      const auto t = losses::watershed_targets(instance_maps(batch), watershed_targets_);
      in.logits = out.energy;
      in.target = t.energy.to(device_);
      in.direction = out.direction;
      in.target_direction = t.direction.to(device_);
      in.mask = t.energy.gt(0).to(device_);
      if (found) {
        for (int64_t i = 0; i < out.energy.size(0); ++i) {
          found->push_back(models::watershed_instances(out.energy[i], net_.deep_watershed->options.extract()));
        }
      }
      return loss_->forward(in).total;
    }
    case Method::kMaskRCNN: {
      if (found) {
        // Inference runs the network once more (detector -> NMS -> masks); evaluation only.
        *found = net_.mask_rcnn->predict(batch.images);
      }
      return mask_rcnn_loss(net_.mask_rcnn->forward(batch.images), batch);
    }
  }
  TORCH_INTERNAL_ASSERT(false, "unknown instance method");
}

at::Tensor InstanceTask::loss(const data::Batch& batch) { return compute(batch, nullptr); }

void InstanceTask::begin_evaluation() {
  ap_.reset();
  class_ap_.reset();
  cvppp_.reset();
  loss_sum_ = 0.0;
  loss_count_ = 0;
}

void InstanceTask::evaluate(const data::Batch& batch) {
  std::vector<models::InstancePrediction> found;
  loss_sum_ += compute(batch, &found).item<double>() * static_cast<double>(batch.size());
  loss_count_ += batch.size();
  const int64_t h = batch.images.size(2), w = batch.images.size(3);
  for (int64_t i = 0; i < batch.size(); ++i) {
    const auto& f = found[static_cast<size_t>(i)];
    const auto truth = batch.instances[static_cast<size_t>(i)].to(at::kCPU);
    const auto g = truth.size(0);
    const auto agnostic = net_.class_agnostic(f, 0.0);
    ap_.update({{}, f.masks.index({agnostic}), f.scores.index({agnostic}),
                at::ones({agnostic.size(0)}, at::kLong)},
               {{}, truth, at::ones({g}, at::kLong), {}});
    if (net_.mask_rcnn) {
      // With its classes, as COCO evaluates Mask R-CNN (per-class NMS only).
      class_ap_.update({{}, f.masks, f.scores, f.labels.to(at::kCPU)},
                       {{}, truth, batch.labels[static_cast<size_t>(i)].to(at::kCPU), {}});
    }
    cvppp_.update(models::masks_to_label_image(net_.counted_masks(f), h, w),
                  models::masks_to_label_image(truth, h, w));
  }
}

void InstanceTask::merge(train::DataParallel&) {
  throw ConfigError(config_.path + ": task instance evaluates in one process for now; train "
                                   "it without --nproc (or evaluate with ostrov eval)");
}

nlohmann::json InstanceTask::end_evaluation() {
  const auto r = ap_.compute();
  auto value = [](double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); };
  nlohmann::json out = {{"loss", loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0},
          {"ap50", value(r.map50)},
          {"ap", value(r.map)},
          {"ap75", value(r.map75)},
          {"sbd", value(cvppp_.sbd())},
          {"abs_dic", value(cvppp_.abs_dic())},
          {"dic", value(cvppp_.dic())},
          {"images", cvppp_.num_images()}};
  if (net_.mask_rcnn) {
    const auto c = class_ap_.compute();
    out["class_ap50"] = value(c.map50);
    out["class_ap"] = value(c.map);
  }
  return out;
}

std::shared_ptr<data::Dataset> InstanceTask::dataset(const std::string& split) const {
  return make_dataset(config_, split);
}

std::shared_ptr<const data::Transform> InstanceTask::transforms(bool training) const {
  return make_transforms(config_, training);
}

std::vector<std::string> InstanceTask::predict_image(const cv::Mat& bgr, const std::string& stem,
                                                     const std::string& out_dir) {
  if (method_ == Method::kMaskRCNN && label_to_category_.empty()) {
    const DataSplit& split =
        config_.data.val.annotations.empty() ? config_.data.train : config_.data.val;
    if (split.annotations.empty()) {
      throw ConfigError(config_.path + ": mask_rcnn predictions name the dataset's category "
                                       "ids: set data.val or data.train annotations");
    }
    const auto coco = dataset(&split == &config_.data.val ? "val" : "train");
    label_to_category_ = dynamic_cast<const data::CocoDataset&>(*coco).label_to_category_id();
  }
  const auto x = network_input(bgr, config_.data.height, config_.data.width, device_);
  const auto found = net_.predict(x)[0];
  const int64_t k = found.masks.size(0);
  // Back to the input's size (nearest), then boxes and RLE from the full-size masks.
  std::vector<at::Tensor> full;
  for (int64_t i = 0; i < k; ++i) full.push_back(core::resize_mask(found.masks[i], bgr.rows, bgr.cols));
  const auto masks = stack_or_empty(full, bgr.rows, bgr.cols);
  const auto boxes = ops::masks_to_boxes(masks).contiguous();
  nlohmann::json j_boxes = nlohmann::json::array(), j_scores = nlohmann::json::array(),
                 j_labels = nlohmann::json::array(), j_masks = nlohmann::json::array();
  for (int64_t i = 0; i < k; ++i) {
    const float* b = boxes.data_ptr<float>() + 4 * i;
    j_boxes.push_back({b[0], b[1], b[2], b[3]});
    j_scores.push_back(found.scores[i].item<float>());
    // Class-agnostic methods: 0 = "an object"; mask_rcnn: the dataset's category id.
    j_labels.push_back(found.labels.defined()
                           ? label_to_category_.at(static_cast<size_t>(found.labels[i].item<int64_t>()))
                           : 0);
    const auto rle = ops::rle_encode(masks[i]);
    j_masks.push_back({{"size", {rle.height, rle.width}}, {"counts", ops::rle_to_string(rle)}});
  }
  const std::string json_name = stem + ".json", overlay_name = stem + "_overlay.png";
  io::write_json((fs::path(out_dir) / json_name).string(),
                 {{"boxes", j_boxes}, {"scores", j_scores}, {"labels", j_labels}, {"masks", j_masks}});
  // The overlay shows the objects (mask_rcnn: the detections counted as objects; the JSON
  // keeps every detection with its score).
  const auto shown = net_.mask_rcnn ? net_.class_agnostic(found, net_.count_score).flip(0)
                                    : at::arange(k, at::kLong);
  core::write_image((fs::path(out_dir) / overlay_name).string(),
                    data::overlay_instances(bgr, masks.index({shown}), 0.5));
  return {json_name, overlay_name};
}

}  // namespace ostrov::cli
