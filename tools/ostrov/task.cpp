#include "task.h"

#include <opencv2/imgproc.hpp>

#include "classification_task.h"
#include "detection_task.h"
#include "instance_task.h"
#include "ostrov/core/error.h"
#include "segmentation_task.h"

namespace ostrov::cli {

at::Tensor network_input(const cv::Mat& bgr, int64_t height, int64_t width,
                         const c10::Device& device, const std::vector<double>& mean,
                         const std::vector<double>& std) {
  cv::Mat resized;
  cv::resize(bgr, resized, cv::Size(static_cast<int>(width), static_cast<int>(height)), 0, 0,
             cv::INTER_LINEAR);
  return core::normalize(core::image_to_tensor(resized), mean, std).unsqueeze(0).to(device);
}

std::unique_ptr<CliTask> make_task(const RunConfig& config, const c10::Device& device) {
  if (config.task == "segmentation") return std::make_unique<SegmentationTask>(config, device);
  if (config.task == "detection") return std::make_unique<DetectionTask>(config, device);
  if (config.task == "instance") return std::make_unique<InstanceTask>(config, device);
  if (config.task == "classification") {
    return std::make_unique<ClassificationTask>(config, device);
  }
  throw ConfigError(config.path + ": task \"" + config.task + "\" has no implementation");
}

}  // namespace ostrov::cli
