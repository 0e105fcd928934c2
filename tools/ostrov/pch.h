// Precompiled header of the ostrov CLI (internal).
#pragma once
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
