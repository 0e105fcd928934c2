// Precompiled header of ostrov::metrics (internal).
#pragma once
#include <ATen/ATen.h>
