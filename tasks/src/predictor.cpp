#include "ostrov/tasks/predictor.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/device.h"
#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/io/json.h"
#include "ostrov/tasks/run.h"

namespace fs = std::filesystem;

namespace ostrov::tasks {

namespace {

// CV_8UC3 BGR of an image predict() accepts.
cv::Mat to_bgr(const cv::Mat& image, size_t index) {
  const std::string which = "predict: image " + std::to_string(index);
  if (image.empty()) throw Error(which + " is empty");
  if (image.depth() != CV_8U) {
    throw Error(which + " has depth " + std::to_string(image.depth()) +
                " (OpenCV's code); expected 8-bit (CV_8U) grey, BGR or BGRA");
  }
  switch (image.channels()) {
    case 3:
      return image;
    case 1: {
      cv::Mat bgr;
      cv::cvtColor(image, bgr, cv::COLOR_GRAY2BGR);
      return bgr;
    }
    case 4: {
      cv::Mat bgr;
      cv::cvtColor(image, bgr, cv::COLOR_BGRA2BGR);
      return bgr;
    }
    default:
      throw Error(which + " has " + std::to_string(image.channels()) +
                  " channels; expected 1 (grey), 3 (BGR) or 4 (BGRA)");
  }
}

// The floating tensors of `p` in float32 (autocast leaves some in bfloat16 or float16).
void to_float32(Prediction& p) {
  for (auto* t : {&p.probabilities, &p.boxes, &p.scores}) {
    if (t->defined() && t->is_floating_point() && t->scalar_type() != at::kFloat) {
      *t = t->to(at::kFloat);
    }
  }
}

}  // namespace

Predictor Predictor::load(const std::string& checkpoint, const c10::Device& device,
                          train::Precision precision) {
  return load(checkpoint, checkpoint_run_config(checkpoint), device, precision);
}

Predictor Predictor::load(const std::string& checkpoint, const std::string& device,
                          const std::string& precision) {
  const auto parsed = core::parse_device(device);
  return load(checkpoint, parsed, train::parse_precision(precision, parsed, "predict: precision"));
}

Predictor Predictor::load(const std::string& checkpoint, const RunConfig& config,
                          const c10::Device& device, train::Precision precision) {
  // The precision is checked before the checkpoint is read.
  train::parse_precision(train::precision_name(precision), device, "predict: precision");
  return Predictor(std::shared_ptr<Task>(load_task(config, checkpoint, device)), precision);
}

Predictor::Predictor(std::shared_ptr<Task> task, train::Precision precision)
    : task_(std::move(task)),
      precision_(precision),
      preprocess_(task_->transforms(/*training=*/false)) {
  train::parse_precision(train::precision_name(precision_), task_->device(), "predict: precision");
  task_->model().eval();
  // One pass at the input size fills what models cache per input size (the SSD's default
  // boxes), so concurrent predict() calls only read.
  const auto [h, w] = task_->input_size();
  predict(cv::Mat(static_cast<int>(h), static_cast<int>(w), CV_8UC3, cv::Scalar::all(0)));
}

Prediction Predictor::predict(const cv::Mat& image) const {
  return std::move(predict(std::vector<cv::Mat>{image}).front());
}

Prediction Predictor::predict(const cv::Mat& image, const PredictOptions& options) const {
  if (!options.tile()) return predict(image);
  c10::InferenceMode guard;
  train::AutocastGuard autocast(task_->device(), precision_);
  auto p = task_->predict_tiled(core::image_to_tensor(to_bgr(image, 0)).to(task_->device()),
                                options.overlap());
  to_float32(p);
  return p;
}

std::vector<Prediction> Predictor::predict(const std::vector<cv::Mat>& images) const {
  if (images.empty()) return {};
  c10::InferenceMode guard;
  std::vector<at::Tensor> inputs;
  std::vector<ops::GridSize> sizes;
  std::mt19937_64 rng(0);  // the evaluation transform draws nothing
  for (size_t i = 0; i < images.size(); ++i) {
    const cv::Mat bgr = to_bgr(images[i], i);
    data::Sample sample;
    sample.image = core::image_to_tensor(bgr);
    sample.original_height = bgr.rows;
    sample.original_width = bgr.cols;
    inputs.push_back((*preprocess_)(std::move(sample), rng).image);
    sizes.push_back({bgr.rows, bgr.cols});
  }
  const auto batch = core::stack_images(inputs).to(task_->device());
  train::AutocastGuard autocast(task_->device(), precision_);
  auto predictions = task_->predict(batch, sizes);
  for (auto& p : predictions) to_float32(p);
  return predictions;
}

cv::Mat Predictor::overlay(const cv::Mat& image, const Prediction& prediction) const {
  return task_->overlay(to_bgr(image, 0), prediction);
}

std::vector<std::string> Predictor::write(const cv::Mat& image, const Prediction& prediction,
                                          const std::string& stem,
                                          const std::string& out_dir) const {
  std::vector<std::string> written;
  const fs::path dir(out_dir);
  if (!prediction.mask.empty()) {
    written.push_back(stem + ".png");
    core::write_image((dir / written.back()).string(), prediction.mask);
  }
  const auto json = task_->prediction_json(prediction);
  if (!json.is_null()) {
    written.push_back(stem + ".json");
    io::write_json((dir / written.back()).string(), json);
  }
  written.push_back(stem + "_overlay.png");
  core::write_image((dir / written.back()).string(), overlay(image, prediction));
  return written;
}

}  // namespace ostrov::tasks
