#pragma once
// The built-in task kinds, one function per task file; task.cpp puts them in the registry.

#include "ostrov/tasks/task.h"

namespace ostrov::tasks::detail {

TaskEntry segmentation_entry();
TaskEntry detection_entry();
TaskEntry instance_entry();
TaskEntry classification_entry();

}  // namespace ostrov::tasks::detail
