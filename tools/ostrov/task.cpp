#include "task.h"

#include <opencv2/imgproc.hpp>

#include "classification_task.h"
#include "detection_task.h"
#include "instance_task.h"
#include "ostrov/core/error.h"
#include "ostrov/data/coco_dataset.h"
#include "ostrov/data/folder_dataset.h"
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

std::shared_ptr<data::Dataset> make_dataset(const RunConfig& config, const std::string& split,
                                            bool masks) {
  const DataSplit& s = split == "train" ? config.data.train : config.data.val;
  if (config.data.format == "folder") {
    if (s.root.empty()) throw ConfigError(config.path + ": missing required key data." + split + ".root");
    return std::make_shared<data::SegmentationFolder>(s.root, config.data.num_classes);
  }
  if (s.annotations.empty()) {
    throw ConfigError(config.path + ": missing required key data." + split + ".annotations");
  }
  auto coco = std::make_shared<data::CocoDataset>(
      s.annotations, s.images,
      data::CocoOptions().skip_invalid(config.data.skip_invalid).masks(masks));
  if (coco->num_classes() != config.data.num_classes) {
    throw ConfigError(config.path + ": data.num_classes is " +
                      std::to_string(config.data.num_classes) + " but " + s.annotations + " has " +
                      std::to_string(coco->num_classes() - 1) + " categories + background");
  }
  return coco;
}

std::shared_ptr<const data::Transform> make_transforms(const RunConfig& config, bool training) {
  std::vector<std::shared_ptr<const data::Transform>> steps;
  if (training && !config.data.transforms.is_null()) {
    steps.push_back(data::build_transforms(config.data.transforms, config.path, "data.transforms"));
  } else {
    steps.push_back(std::make_shared<data::Resize>(config.data.height, config.data.width));
    if (training) steps.push_back(std::make_shared<data::HorizontalFlip>(0.5));
  }
  steps.push_back(std::make_shared<data::Normalize>());
  return std::make_shared<data::Compose>(std::move(steps));
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
