#pragma once
// The dataset interface every ostrov dataset implements (folders, COCO, generated scenes) and
// loaders draw from.

#include <cstdint>

#include "ostrov/data/sample.h"

namespace ostrov::data {

/// A random-access collection of Samples.
///
/// `get` is const and must be safe to call from several threads at once (loaders call it
/// from their worker threads): implementations keep no shared mutable state.
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Number of samples.
  virtual int64_t size() const = 0;
  /// The sample at `index` in [0, size()). Throws ostrov errors naming the file on bad data.
  virtual Sample get(int64_t index) const = 0;
};

}  // namespace ostrov::data
