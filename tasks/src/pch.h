// Precompiled header of ostrov::tasks (internal).
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/types.h>
#include <opencv2/core.hpp>
#include <nlohmann/json.hpp>
