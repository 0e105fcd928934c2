// Precompiled header of ostrov::models (internal).
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn.h>
#include <torch/types.h>
