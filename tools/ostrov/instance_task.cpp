#include "instance_task.h"

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
#include "segmentation_task.h"

namespace fs = std::filesystem;

namespace ostrov::cli {

namespace {

models::DeepColoringOptions parse_model(const nlohmann::json& model, const std::string& where,
                                        std::string& weights) {
  io::ConfigReader r(model, where, "model");
  const auto name = r.required<std::string>("name");
  if (name != "deep_coloring") {
    throw ConfigError(where + ": key " + r.path_of("name") + ": unknown instance model \"" + name +
                      "\" (this version: deep_coloring; the Mask R-CNN-style head and Deep "
                      "Watershed are not in the CLI yet)");
  }
  models::DeepColoringOptions o;
  o.num_colors(r.get<int64_t>("num_colors", o.num_colors()))
      .min_size(r.get<int64_t>("min_size", o.min_size()));
  auto unet = o.unet();
  unet.depth(r.get<int64_t>("depth", unet.depth()))
      .base_width(r.get<int64_t>("base_width", unet.base_width()))
      .batch_norm(r.get<bool>("batch_norm", unet.batch_norm()));
  o.unet(unet);
  weights = r.get<std::string>("weights", "");
  r.finish();
  if (o.num_colors() < 1) throw ConfigError(where + ": model.num_colors must be >= 1");
  if (o.min_size() < 1) throw ConfigError(where + ": model.min_size must be >= 1");
  return o;
}

}  // namespace

InstanceTask::InstanceTask(const RunConfig& config, const c10::Device& device)
    : config_(config), device_(device) {
  if (config.data.format != "coco") {
    throw ConfigError(config.path + ": task instance needs data.format \"coco\", got \"" +
                      config.data.format + "\"");
  }
  std::string weights;
  const auto options = parse_model(config.model, config.path, weights);
  try {
    net_ = models::DeepColoring(options);
  } catch (const c10::Error& e) {
    throw ConfigError(config.path + ": model: " + e.what_without_backtrace());
  }
  if (!weights.empty()) io::load_weights(*net_, weights, /*strict=*/true);
  const nlohmann::json loss = config.loss.is_null() ? nlohmann::json{{"name", "halo"}} : config.loss;
  if (!loss.is_object() || loss.value("name", std::string()) != "halo") {
    throw ConfigError(config.path + ": loss.name must be \"halo\" for model deep_coloring");
  }
  loss_ = losses::build(loss, config.path, "loss");
  net_->to(device);
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
  return at::stack(maps).to(device_);
}

at::Tensor InstanceTask::loss(const data::Batch& batch) {
  losses::LossInputs in;
  in.logits = net_->forward(batch.images);
  in.target = instance_maps(batch);
  return loss_->forward(in).total;
}

void InstanceTask::begin_evaluation() {
  ap_.reset();
  cvppp_.reset();
  loss_sum_ = 0.0;
  loss_count_ = 0;
}

void InstanceTask::evaluate(const data::Batch& batch) {
  const auto logits = net_->forward(batch.images);
  losses::LossInputs in;
  in.logits = logits;
  in.target = instance_maps(batch);
  loss_sum_ += loss_->forward(in).total.item<double>() * static_cast<double>(batch.size());
  loss_count_ += batch.size();
  const int64_t h = batch.images.size(2), w = batch.images.size(3);
  for (int64_t i = 0; i < batch.size(); ++i) {
    const auto found = models::deep_coloring_instances(logits[i], net_->options.min_size());
    const auto truth = batch.instances[i].to(at::kCPU);
    const auto k = found.masks.size(0), g = truth.size(0);
    ap_.update({{}, found.masks, found.scores, at::ones({k}, at::kLong)},
               {{}, truth, at::ones({g}, at::kLong), {}});
    cvppp_.update(models::masks_to_label_image(found.masks, h, w),
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
  return {{"loss", loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0},
          {"ap50", value(r.map50)},
          {"ap", value(r.map)},
          {"ap75", value(r.map75)},
          {"sbd", value(cvppp_.sbd())},
          {"abs_dic", value(cvppp_.abs_dic())},
          {"dic", value(cvppp_.dic())},
          {"images", cvppp_.num_images()}};
}

std::shared_ptr<data::Dataset> InstanceTask::dataset(const std::string& split) const {
  return make_dataset(config_, split);
}

std::shared_ptr<const data::Transform> InstanceTask::transforms(bool training) const {
  return make_transforms(config_, training);
}

std::vector<std::string> InstanceTask::predict_image(const cv::Mat& bgr, const std::string& stem,
                                                     const std::string& out_dir) {
  const auto x = network_input(bgr, config_.data.height, config_.data.width, device_);
  const auto found = net_->predict(x)[0];
  const int64_t k = found.masks.size(0);
  // Back to the input's size (nearest), then boxes and RLE from the full-size masks.
  std::vector<at::Tensor> full;
  for (int64_t i = 0; i < k; ++i) full.push_back(core::resize_mask(found.masks[i], bgr.rows, bgr.cols));
  const auto masks = k > 0 ? at::stack(full).to(at::kByte) : at::zeros({0, bgr.rows, bgr.cols}, at::kByte);
  const auto boxes = ops::masks_to_boxes(masks).contiguous();
  nlohmann::json j_boxes = nlohmann::json::array(), j_scores = nlohmann::json::array(),
                 j_labels = nlohmann::json::array(), j_masks = nlohmann::json::array();
  for (int64_t i = 0; i < k; ++i) {
    const float* b = boxes.data_ptr<float>() + 4 * i;
    j_boxes.push_back({b[0], b[1], b[2], b[3]});
    j_scores.push_back(found.scores[i].item<float>());
    j_labels.push_back(0);  // class-agnostic: "an object"
    const auto rle = ops::rle_encode(masks[i]);
    j_masks.push_back({{"size", {rle.height, rle.width}}, {"counts", ops::rle_to_string(rle)}});
  }
  const std::string json_name = stem + ".json", overlay_name = stem + "_overlay.png";
  io::write_json((fs::path(out_dir) / json_name).string(),
                 {{"boxes", j_boxes}, {"scores", j_scores}, {"labels", j_labels}, {"masks", j_masks}});
  core::write_image((fs::path(out_dir) / overlay_name).string(),
                    data::overlay_instances(bgr, masks, 0.5));
  return {json_name, overlay_name};
}

}  // namespace ostrov::cli
