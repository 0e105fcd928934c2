// Precompiled header of the test executable (internal).
#pragma once
// Debian's LibTorch pulls in glog, whose CHECK(cond) would replace Catch2's CHECK: include
// torch first, drop glog's CHECK, then Catch2 (glog's include guard keeps it from returning).
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn.h>
#include <torch/types.h>
#include <opencv2/core.hpp>
#include <nlohmann/json.hpp>
#undef CHECK
#include "catch.h"
