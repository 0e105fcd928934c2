#pragma once
// Template definitions of ConfigReader (included by ostrov/io/json.h).

#include <type_traits>
#include <vector>

#include "ostrov/core/error.h"

namespace ostrov::io {

namespace detail {

template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};

/// The name of T as --schema prints it.
template <typename T>
const char* config_type_name() {
  if constexpr (std::is_same_v<T, bool>) {
    return "boolean";
  } else if constexpr (std::is_integral_v<T>) {
    return "integer";
  } else if constexpr (std::is_floating_point_v<T>) {
    return "number";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "string";
  } else if constexpr (IsVector<T>::value) {
    using Item = typename T::value_type;
    if constexpr (std::is_same_v<Item, bool>) return "list of booleans";
    if constexpr (std::is_integral_v<Item>) return "list of integers";
    if constexpr (std::is_floating_point_v<Item>) return "list of numbers";
    if constexpr (std::is_same_v<Item, std::string>) return "list of strings";
    return "list";
  } else {
    return "any";
  }
}

}  // namespace detail

template <typename T>
T ConfigReader::required(const std::string& key) {
  if (detail::recording_keys()) {
    detail::record_key(path_of(key), detail::config_type_name<T>(), Json(), /*required=*/true);
  }
  if (!has(key)) {
    throw ConfigError(where_ + ": missing required key " + path_of(key));
  }
  return read<T>(key, T{});
}

template <typename T>
T ConfigReader::get(const std::string& key, const T& fallback) {
  if (detail::recording_keys()) {
    detail::record_key(path_of(key), detail::config_type_name<T>(), Json(fallback),
                       /*required=*/false);
  }
  return read<T>(key, fallback);
}

template <typename T>
std::optional<T> ConfigReader::find(const std::string& key) {
  if (detail::recording_keys()) {
    detail::record_key(path_of(key), detail::config_type_name<T>(), Json(), /*required=*/false);
  }
  if (!has(key)) {
    used_.push_back(key);
    return std::nullopt;
  }
  return read<T>(key, T{});
}

template <typename T>
T ConfigReader::read(const std::string& key, const T& fallback) {
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
