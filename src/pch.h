// Precompiled header of ostrov::core (internal; never included by public headers).
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/functional.h>
#include <torch/types.h>
#include <opencv2/core.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
