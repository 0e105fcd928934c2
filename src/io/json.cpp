#include "ostrov/io/json.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "ostrov/core/error.h"
#include "ostrov/io/checkpoint.h"

namespace ostrov::io {

Json read_json(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw IoError(path + ": no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open for reading");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    // Configs may hold // and /* */ comments (nlohmann's ignore_comments).
    return Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const Json::parse_error& e) {
    // Turn the byte offset into line:column for the user.
    const size_t offset = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    const size_t line = 1 + std::count(text.begin(), text.begin() + offset, '\n');
    const size_t line_start = text.rfind('\n', offset == 0 ? 0 : offset - 1);
    const size_t column = offset - (line_start == std::string::npos ? 0 : line_start + 1) + 1;
    throw ConfigError(path + ":" + std::to_string(line) + ":" + std::to_string(column) +
                      ": invalid JSON: " + e.what());
  } catch (const Json::exception& e) {
    // Syntax that parses but cannot be represented, e.g. a number beyond double's range
    // ("1E400": out_of_range.406). Found by the config fuzz target.
    throw ConfigError(path + ": invalid JSON: " + e.what());
  }
}

void write_json(const std::string& path, const Json& value) {
  write_file_atomic(path, value.dump(2) + "\n");
}

void apply_override(Json& config, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw ConfigError("--set " + assignment + ": expected key.path=value");
  }
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  Json value;
  try {
    value = Json::parse(text);
  } catch (const Json::parse_error&) {
    value = text;  // bare words are strings: --set train.device=cpu
  } catch (const Json::exception& e) {
    throw ConfigError("--set " + assignment + ": " + e.what());
  }
  Json* node = &config;
  size_t start = 0;
  std::string walked;
  while (true) {
    const auto dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? dot : dot - start);
    if (key.empty()) throw ConfigError("--set " + assignment + ": empty key in " + path);
    if (!node->is_object()) {
      if (!node->is_null()) {
        throw ConfigError("--set " + assignment + ": " + (walked.empty() ? "<root>" : walked) +
                          " is not an object");
      }
      *node = Json::object();
    }
    walked += (walked.empty() ? "" : ".") + key;
    if (dot == std::string::npos) {
      (*node)[key] = value;
      return;
    }
    node = &(*node)[key];
    start = dot + 1;
  }
}

namespace {
thread_local KeyRecording* t_recording = nullptr;
}  // namespace

KeyRecording::KeyRecording() {
  if (t_recording != nullptr) throw Error("KeyRecording: this thread records keys already");
  t_recording = this;
}

KeyRecording::~KeyRecording() { t_recording = nullptr; }

bool detail::recording_keys() { return t_recording != nullptr; }

void detail::record_key(const std::string& path, const char* type, const Json& fallback,
                        bool required) {
  if (t_recording == nullptr) return;
  t_recording->add(ConfigKey{path, type, fallback, required});
}

ConfigReader::ConfigReader(const Json& object, std::string where, std::string prefix)
    : object_(object), where_(std::move(where)), prefix_(std::move(prefix)) {
  if (!object_.is_null() && !object_.is_object()) {
    throw ConfigError(where_ + ": " + (prefix_.empty() ? std::string("the config") : prefix_) +
                      " must be a JSON object, got " + object_.type_name());
  }
}

bool ConfigReader::has(const std::string& key) const {
  return object_.is_object() && object_.contains(key) && !object_.at(key).is_null();
}

std::string ConfigReader::path_of(const std::string& key) const {
  return prefix_.empty() ? key : prefix_ + "." + key;
}

ConfigReader ConfigReader::child(const std::string& key) {
  used_.push_back(key);
  detail::record_key(path_of(key), "object", Json(), /*required=*/false);
  static const Json kNull;
  return ConfigReader(has(key) ? object_.at(key) : kNull, where_, path_of(key));
}

const Json& ConfigReader::raw(const std::string& key) {
  used_.push_back(key);
  detail::record_key(path_of(key), "any", Json(), /*required=*/false);
  static const Json kNull;
  return has(key) ? object_.at(key) : kNull;
}

void ConfigReader::finish() const {
  if (!object_.is_object()) return;
  std::vector<std::string> unknown;
  for (const auto& item : object_.items()) {
    if (std::find(used_.begin(), used_.end(), item.key()) == used_.end()) {
      unknown.push_back(path_of(item.key()));
    }
  }
  if (unknown.empty()) return;
  std::string msg = where_ + ": unknown key" + (unknown.size() > 1 ? "s " : " ");
  for (size_t i = 0; i < unknown.size(); ++i) msg += (i ? ", " : "") + unknown[i];
  std::vector<std::string> known = used_;
  std::sort(known.begin(), known.end());
  known.erase(std::unique(known.begin(), known.end()), known.end());
  msg += " (known here: ";
  for (size_t i = 0; i < known.size(); ++i) msg += (i ? ", " : "") + known[i];
  throw ConfigError(msg + ")");
}

void ConfigReader::type_error(const std::string& key, const char* expected) const {
  throw ConfigError(where_ + ": key " + path_of(key) + " must be " + expected + ", got " +
                    object_.at(key).dump());
}

}  // namespace ostrov::io
