#pragma once
// A table of named entries that ostrov's components extend at run time: model kinds
// (models::register_segmentation_model, register_detection_model, register_instance_model)
// and tasks (tasks::register_task). Each component keeps one static Registry of its own entry
// type, filled with its built-in entries; users add theirs before building from a config.
// docs/architecture.md "Registries".

#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ostrov/core/error.h"

namespace ostrov::core {

/// Entries with a `name` member, in registration order. Thread-safe; entries are never removed,
/// so a reference from `get` stays valid for the program's life.
template <typename Entry>
class Registry {
 public:
  /// `kind` names an entry in messages ("model", "task"); `builtins` come first.
  Registry(std::string kind, std::vector<Entry> builtins) : kind_(std::move(kind)) {
    for (auto& e : builtins) entries_.push_back(std::move(e));
  }

  /// Adds an entry; ostrov::Error when its name is empty or taken.
  void add(Entry entry) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (entry.name.empty()) throw Error("registering a " + kind_ + ": the entry has no name");
    for (const auto& e : entries_) {
      if (e.name == entry.name) {
        throw Error("registering a " + kind_ + ": \"" + entry.name + "\" exists");
      }
    }
    entries_.push_back(std::move(entry));
  }

  /// The entry named `name`, or nullptr.
  const Entry* find(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& e : entries_) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }

  /// Every name, in registration order.
  std::vector<std::string> names() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::string> out;
    for (const auto& e : entries_) out.push_back(e.name);
    return out;
  }

  /// "a, b, c": the names for an error message that lists what is known.
  std::string known() const {
    std::string out;
    for (const auto& n : names()) out += (out.empty() ? "" : ", ") + n;
    return out;
  }

 private:
  std::string kind_;
  mutable std::mutex mutex_;
  std::deque<Entry> entries_;
};

}  // namespace ostrov::core
