#pragma once
// The std random engine ostrov's data code draws from (seeded by seed_everything).

#include <random>

namespace ostrov::core {

/// Process-wide std engine for non-tensor randomness (augmentation choices, shuffles).
/// Not thread-safe: loaders give each worker its own engine seeded from this one.
std::mt19937_64& generator();

}  // namespace ostrov::core
