#pragma once
// Template definitions of ConfigReader (included by ostrov/io/json.h).

#include "ostrov/core/error.h"

namespace ostrov::io {

template <typename T>
T ConfigReader::required(const std::string& key) {
  if (!has(key)) {
    throw ConfigError(where_ + ": missing required key " + path_of(key));
  }
  return get<T>(key, T{});
}

template <typename T>
T ConfigReader::get(const std::string& key, const T& fallback) {
  used_.push_back(key);
  if (!object_.is_object() || !object_.contains(key) || object_.at(key).is_null()) return fallback;
  const Json& v = object_.at(key);
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) type_error(key, "a boolean");
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) type_error(key, "an integer");
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) type_error(key, "a number");
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) type_error(key, "a string");
  }
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(where_ + ": key " + path_of(key) + ": " + e.what());
  }
}

}  // namespace ostrov::io
