// Precompiled header of ostrov::losses (internal).
#pragma once
#include <ATen/ATen.h>
