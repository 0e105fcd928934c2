#pragma once
// The built-in task kinds, one function per task file (task.cpp puts them in the registry),
// and what their entries share.

#include <string>

#include "ostrov/tasks/task.h"

namespace ostrov::tasks::detail {

TaskEntry segmentation_entry();
TaskEntry detection_entry();
TaskEntry instance_entry();
TaskEntry classification_entry();

/// config.model's "name" when it is a string, "" otherwise (the model's own check names a
/// missing or mistyped one).
std::string model_name(const RunConfig& config);

}  // namespace ostrov::tasks::detail
