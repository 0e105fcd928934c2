#include "segmentation_task.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>
#include <torch/types.h>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/visualize.h"
#include "ostrov/train/distributed.h"

namespace fs = std::filesystem;

namespace ostrov::cli {

namespace {

nlohmann::json default_loss() { return {{"name", "cross_entropy"}}; }

}  // namespace

SegmentationTask::SegmentationTask(const RunConfig& config, const c10::Device& device)
    : config_(config),
      device_(device),
      model_(models::build(config.model, config.data.num_classes, config.path)),
      confusion_(config.data.num_classes) {
  if (config.data.format != "folder" && config.data.format != "coco") {
    throw ConfigError(config.path + ": task segmentation needs data.format \"folder\" or "
                                    "\"coco\", got \"" + config.data.format + "\"");
  }
  loss_ = losses::build(config.loss.is_null() ? default_loss() : config.loss, config.path, "loss");
  model_.module->to(device);
  loss_->to(device);
}

at::Tensor SegmentationTask::loss_of(const at::Tensor& logits, const at::Tensor& target) {
  losses::LossInputs inputs;
  inputs.logits = logits;
  inputs.target = target;
  return loss_->forward(inputs).total;
}

at::Tensor SegmentationTask::loss(const data::Batch& batch) {
  TORCH_CHECK(batch.masks.defined(), "segmentation training needs class masks");
  auto out = model_.forward_with_aux(batch.images);
  auto total = loss_of(out.main, batch.masks);
  if (out.aux.defined() && out.aux_weight > 0.0) {
    total = total + out.aux_weight * loss_of(out.aux, batch.masks);  // PSPNet's deep supervision
  }
  return total;
}

void SegmentationTask::begin_evaluation() {
  confusion_.reset();
  loss_sum_ = 0.0;
  loss_count_ = 0;
}

void SegmentationTask::evaluate(const data::Batch& batch) {
  auto logits = model_.forward(batch.images);
  loss_sum_ += loss_of(logits, batch.masks).item<double>() * static_cast<double>(batch.size());
  loss_count_ += batch.size();
  confusion_.update(logits.argmax(1), batch.masks);
}

void SegmentationTask::merge(train::DataParallel& dp) {
  auto matrix = confusion_.matrix().clone();
  dp.all_reduce_sum(matrix);
  auto sums = at::tensor({loss_sum_, static_cast<double>(loss_count_)}, at::kDouble);
  dp.all_reduce_sum(sums);
  confusion_.set_counts(matrix);
  loss_sum_ = sums[0].item<double>();
  loss_count_ = static_cast<int64_t>(sums[1].item<double>());
}

nlohmann::json SegmentationTask::end_evaluation() {
  auto nan_to_null = [](double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); };
  nlohmann::json per_class = nlohmann::json::array();
  for (double v : confusion_.iou_per_class()) per_class.push_back(nan_to_null(v));
  return {{"loss", loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0},
          {"miou", nan_to_null(confusion_.mean_iou())},
          {"pixel_accuracy", nan_to_null(confusion_.pixel_accuracy())},
          {"mean_class_accuracy", nan_to_null(confusion_.mean_class_accuracy())},
          {"iou_per_class", per_class}};
}

at::Tensor SegmentationTask::predict(const at::Tensor& images) {
  return model_.forward(images).argmax(1);
}

std::shared_ptr<data::Dataset> SegmentationTask::dataset(const std::string& split) const {
  return make_dataset(config_, split);
}

std::shared_ptr<const data::Transform> SegmentationTask::transforms(bool training) const {
  return make_transforms(config_, training);
}

std::vector<std::string> SegmentationTask::predict_image(const cv::Mat& bgr,
                                                         const std::string& stem,
                                                         const std::string& out_dir) {
  const auto x = network_input(bgr, config_.data.height, config_.data.width, device_);
  // Back to the input's size (nearest: labels never mix).
  const auto prediction = core::resize_mask(predict(x)[0].to(at::kCPU), bgr.rows, bgr.cols);
  const std::string mask_name = stem + ".png", overlay_name = stem + "_overlay.png";
  core::write_image((fs::path(out_dir) / mask_name).string(), core::mask_to_mat(prediction));
  core::write_image((fs::path(out_dir) / overlay_name).string(),
                    data::overlay_mask(bgr, prediction, 0.5));
  return {mask_name, overlay_name};
}

}  // namespace ostrov::cli
