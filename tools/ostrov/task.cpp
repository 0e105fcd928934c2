#include "task.h"

#include "detection_task.h"
#include "instance_task.h"
#include "ostrov/core/error.h"
#include "segmentation_task.h"

namespace ostrov::cli {

std::unique_ptr<CliTask> make_task(const RunConfig& config, const c10::Device& device) {
  if (config.task == "segmentation") return std::make_unique<SegmentationTask>(config, device);
  if (config.task == "detection") return std::make_unique<DetectionTask>(config, device);
  if (config.task == "instance") return std::make_unique<InstanceTask>(config, device);
  throw ConfigError(config.path + ": task \"" + config.task + "\" has no implementation");
}

}  // namespace ostrov::cli
