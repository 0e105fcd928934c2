#pragma once
// JSON configuration helpers: reading files with good errors, dotted key paths, overrides and
// strict key checking (unknown keys are errors, never silently ignored).

#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
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

/// One key a ConfigReader read, as recorded by a KeyRecording.
struct ConfigKey {
  std::string path;       ///< dotted from the config's root, e.g. "train.lr"
  std::string type;       ///< "boolean", "integer", "number", "string", "list of numbers", ...
  Json fallback;          ///< the default; null for a required key or a raw value
  bool required = false;  ///< read with required<T>()
};

/// Records every key the ConfigReaders of this thread read while it is alive: how
/// `ostrov config --schema` learns the keys from the readers themselves, so that the schema
/// and what a config may hold cannot drift apart. At most one per thread at a time.
class KeyRecording {
 public:
  KeyRecording();
  ~KeyRecording();
  KeyRecording(const KeyRecording&) = delete;
  KeyRecording& operator=(const KeyRecording&) = delete;
  /// The keys read so far, in reading order (a key read twice appears twice).
  const std::vector<ConfigKey>& keys() const { return keys_; }
  /// Appends a key (ConfigReader does, through detail::record_key).
  void add(ConfigKey key) { keys_.push_back(std::move(key)); }

 private:
  std::vector<ConfigKey> keys_;
};

namespace detail {
/// Adds a key to the thread's KeyRecording; does nothing without one.
void record_key(const std::string& path, const char* type, const Json& fallback, bool required);
bool recording_keys();
}  // namespace detail

/// Reads typed values from a JSON object, with every error naming `where` (the file) and
/// the full key path, and with unknown keys rejected by `finish()`.
///
///   ConfigReader r(config["train"], "run.json", "train");
///   int epochs = r.get<int>("epochs", 10);
///   double lr = r.required<double>("lr");
///   r.finish();   // ConfigError "run.json: unknown key train.lrr (known here: ...)"
class ConfigReader {
 public:
  /// Reads `object` (kept by reference: it must outlive the reader; null reads as empty);
  /// `prefix` is the key path of `object` in messages. ConfigError unless an object or null.
  ConfigReader(const Json& object, std::string where, std::string prefix = "");

  /// Whether `key` is present and not null (does not count it as used).
  bool has(const std::string& key) const;
  /// The value of `key` as T (the key counts as used); ConfigError when absent, null or of
  /// another type.
  template <typename T>
  T required(const std::string& key);
  /// The value of `key` as T, or `fallback` when absent or null (the key counts as used);
  /// ConfigError when of another type.
  template <typename T>
  T get(const std::string& key, const T& fallback);
  /// The value when the key is present (its default then depends on other keys).
  template <typename T>
  std::optional<T> find(const std::string& key);
  /// A nested object as its own reader (the key counts as used).
  ConfigReader child(const std::string& key);
  /// The raw value (the key counts as used); null when absent.
  const Json& raw(const std::string& key);
  /// Throws ConfigError listing unknown keys.
  void finish() const;

  /// The full dotted path of `key` ("train.lr" for key "lr" under prefix "train").
  std::string path_of(const std::string& key) const;
  /// The `where` given to the constructor (the file), as errors name it.
  const std::string& where() const { return where_; }

 private:
  const Json& object_;
  std::string where_;
  std::string prefix_;
  std::vector<std::string> used_;
  [[noreturn]] void type_error(const std::string& key, const char* expected) const;
  template <typename T>
  T read(const std::string& key, const T& fallback);
};

}  // namespace ostrov::io

#include "ostrov/io/json_inl.h"
