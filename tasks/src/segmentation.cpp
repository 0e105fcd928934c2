#include "ostrov/tasks/segmentation.h"

#include <array>
#include <cmath>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>

#include "entries.h"
#include "evaluation.h"
#include "ostrov/core/image.h"
#include "ostrov/data/visualize.h"
#include "ostrov/train/distributed.h"

namespace ostrov::tasks {

using detail::nan_to_null;

namespace {

nlohmann::json default_loss() { return {{"name", "cross_entropy"}}; }

}  // namespace

TaskEntry detail::segmentation_entry() {
  return {"segmentation", "a class per pixel (FCN, U-Net, FC-DenseNet, PSPNet)", "miou",
          {"folder", "coco"},
          [](const RunConfig& c, const c10::Device& d) {
            return std::make_unique<SegmentationTask>(c, d);
          },
          [](const RunConfig& c) {
            models::receptive_field_layers(c.model, c.path);  // parses the model's keys only
          },
          [](const RunConfig& c) {
            losses::build_class_map_loss(c.loss.is_null() ? default_loss() : c.loss, c.path);
          },
          models::segmentation_model_names, losses::class_map_loss_names};
}

SegmentationTask::SegmentationTask(const RunConfig& config, const c10::Device& device)
    : Task(config, device),
      model_(models::build(config.model, config.data.num_classes, config.path)),
      confusion_(config.data.num_classes) {
  loss_ = losses::build_class_map_loss(config.loss.is_null() ? default_loss() : config.loss,
                                       config.path);
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
  confusion_.set_counts(matrix);
  detail::all_reduce_loss(dp, loss_sum_, loss_count_);
}

nlohmann::json SegmentationTask::end_evaluation() {
  nlohmann::json per_class = nlohmann::json::array();
  for (double v : confusion_.iou_per_class()) per_class.push_back(nan_to_null(v));
  return {{"loss", loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0},
          {"miou", nan_to_null(confusion_.mean_iou())},
          {"pixel_accuracy", nan_to_null(confusion_.pixel_accuracy())},
          {"mean_class_accuracy", nan_to_null(confusion_.mean_class_accuracy())},
          {"iou_per_class", per_class}};
}

Prediction SegmentationTask::from_probabilities(const at::Tensor& probabilities) const {
  Prediction out;
  const bool wide = config_.data.num_classes > 255;
  const int rows = static_cast<int>(probabilities.size(1));
  const int cols = static_cast<int>(probabilities.size(2));
  const auto labels =
      probabilities.argmax(0).to(at::kCPU).to(wide ? at::kInt : at::kByte).contiguous();
  const cv::Mat mask(rows, cols, wide ? CV_32S : CV_8U, labels.data_ptr());
  if (wide) {
    mask.convertTo(out.mask, CV_16U);
  } else {
    out.mask = mask.clone();
  }
  if (keep_probabilities_) out.probabilities = probabilities.to(at::kCPU);
  return out;
}

std::vector<Prediction> SegmentationTask::predict(const at::Tensor& images,
                                                  const std::vector<ops::GridSize>& sizes) const {
  TORCH_CHECK(static_cast<int64_t>(sizes.size()) == images.size(0), "predict: ", images.size(0),
              " images but ", sizes.size(), " sizes");
  const auto probabilities = model_.forward(images).softmax(1);
  std::vector<Prediction> out;
  for (size_t i = 0; i < sizes.size(); ++i) {
    // The probabilities at the input's size, then the argmax: sharper than resized labels.
    out.push_back(from_probabilities(at::upsample_bilinear2d(
        probabilities.narrow(0, static_cast<int64_t>(i), 1), {sizes[i][0], sizes[i][1]},
        /*align_corners=*/false)[0]));
  }
  return out;
}

Prediction SegmentationTask::predict_tiled(const at::Tensor& image, int64_t overlap) const {
  const auto [th, tw] = input_size();
  TORCH_CHECK(image.dim() == 3 && image.size(0) == 3, "predict_tiled: image should be [3,H,W], got ",
              image.sizes());
  TORCH_CHECK(overlap >= 0 && overlap < std::min(th, tw), "predict_tiled: overlap ", overlap,
              " must be in [0, ", std::min(th, tw), ") for tiles of ", th, "x", tw);
  const int64_t h = image.size(1), w = image.size(2);
  const int64_t sy = th - overlap, sx = tw - overlap;
  // Tiles start at multiples of the step; the padded image holds a whole number of steps.
  auto extra_steps = [](int64_t size, int64_t tile, int64_t step) {
    return size <= tile ? int64_t{0} : (size - tile + step - 1) / step;
  };
  const int64_t ny = extra_steps(h, th, sy), nx = extra_steps(w, tw, sx);
  const int64_t ph = th + ny * sy, pw = tw + nx * sx;
  // Normalised as the evaluation transform does (data::Normalize: ImageNet's statistics);
  // the padding is 0, the mean colour.
  const auto x = at::constant_pad_nd(core::normalize(image), {0, pw - w, 0, ph - h}, 0.0);
  const int64_t lead = overlap / 2, trail = overlap - lead;  // margins dropped on inner borders
  auto probabilities = at::zeros({config_.data.num_classes, ph, pw}, x.options());
  constexpr int64_t kBatch = 8;  // tiles per forward pass
  std::vector<std::array<int64_t, 2>> origins;
  for (int64_t iy = 0; iy <= ny; ++iy) {
    for (int64_t ix = 0; ix <= nx; ++ix) origins.push_back({iy, ix});
  }
  for (size_t first = 0; first < origins.size(); first += kBatch) {
    const size_t last = std::min(origins.size(), first + kBatch);
    std::vector<at::Tensor> tiles;
    for (size_t k = first; k < last; ++k) {
      const auto [iy, ix] = origins[k];
      tiles.push_back(x.slice(1, iy * sy, iy * sy + th).slice(2, ix * sx, ix * sx + tw));
    }
    const auto p = model_.forward(at::stack(tiles)).softmax(1);
    for (size_t k = first; k < last; ++k) {
      const auto [iy, ix] = origins[k];
      // The tile's centre: all but the margins facing other tiles.
      const int64_t top = iy == 0 ? 0 : lead, bottom = iy == ny ? th : th - trail;
      const int64_t left = ix == 0 ? 0 : lead, right = ix == nx ? tw : tw - trail;
      probabilities.slice(1, iy * sy + top, iy * sy + bottom)
          .slice(2, ix * sx + left, ix * sx + right)
          .copy_(p[static_cast<int64_t>(k - first)].slice(1, top, bottom).slice(2, left, right));
    }
  }
  return from_probabilities(probabilities.slice(1, 0, h).slice(2, 0, w));
}

cv::Mat SegmentationTask::overlay(const cv::Mat& bgr, const Prediction& prediction) const {
  cv::Mat labels;
  prediction.mask.convertTo(labels, CV_32S);
  const auto mask = at::from_blob(labels.data, {labels.rows, labels.cols}, at::kInt).to(at::kLong);
  return data::overlay_mask(bgr, mask, 0.5);
}

}  // namespace ostrov::tasks
