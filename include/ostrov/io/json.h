#pragma once
// JSON configuration helpers: reading files with good errors, dotted key paths, overrides and
// strict key checking (unknown keys are errors, never silently ignored).

#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ostrov::io {

using Json = nlohmann::json;

/// Parses a JSON file, which may hold `//` and `/* */` comments. ostrov::IoError when missing;
/// ostrov::ConfigError with path, line and column on a syntax error.
Json read_json(const std::string& path);

/// Writes JSON atomically (pretty-printed with 2 spaces).
void write_json(const std::string& path, const Json& value);

/// Applies "a.b.c=value" to `config`. The value is parsed as JSON when it parses (numbers,
/// true/false, null, arrays, objects, quoted strings), otherwise taken as a string.
/// Intermediate objects are created. ostrov::ConfigError on a malformed assignment or when a
/// path crosses a non-object.
void apply_override(Json& config, const std::string& assignment);

/// Reads typed values from a JSON object, with every error naming `where` (the file) and
/// the full key path, and with unknown keys rejected by `finish()`.
///
///   ConfigReader r(config["train"], "run.json", "train");
///   int epochs = r.get<int>("epochs", 10);
///   double lr = r.required<double>("lr");
///   r.finish();   // ConfigError "run.json: unknown key train.lrr (known: ...)"
class ConfigReader {
 public:
  ConfigReader(const Json& object, std::string where, std::string prefix = "");

  bool has(const std::string& key) const;
  template <typename T>
  T required(const std::string& key);
  template <typename T>
  T get(const std::string& key, const T& fallback);
  /// A nested object as its own reader (the key counts as used).
  ConfigReader child(const std::string& key);
  /// The raw value (the key counts as used); null when absent.
  const Json& raw(const std::string& key);
  /// Throws ConfigError listing unknown keys.
  void finish() const;

  std::string path_of(const std::string& key) const;
  const std::string& where() const { return where_; }

 private:
  const Json& object_;
  std::string where_;
  std::string prefix_;
  std::vector<std::string> used_;
  [[noreturn]] void type_error(const std::string& key, const char* expected) const;
};

}  // namespace ostrov::io

#include "ostrov/io/json_inl.h"
