#pragma once
// Error types. Every error ostrov raises derives from std::runtime_error and names what went
// wrong with the values involved and, where there is one, the file and the key.

#include <stdexcept>
#include <string>

namespace ostrov {

/// Base class of ostrov's errors.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A file could not be read or written, or its content is not what it should be
/// (missing, truncated, corrupt, wrong format). The message names the path.
class IoError : public Error {
 public:
  using Error::Error;
};

/// A configuration or command-line value is missing, unknown, of the wrong type or out of
/// range. The message names the file and the key path (e.g. `train.lr`).
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// Input data (images, masks, annotations) is inconsistent. The message names the file and,
/// where there is one, the annotation or image id.
class DataError : public Error {
 public:
  using Error::Error;
};

}  // namespace ostrov
