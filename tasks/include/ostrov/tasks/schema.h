#pragma once
// The keys a task's run config may hold, with their types, defaults and one-line descriptions:
// what `ostrov config --schema TASK` prints.
//
// The keys are not listed by hand: config_schema() runs the config reader
// (parse_run_config, the model's and the loss's readers) on probe configs, one per data
// format, model name and loss name the task accepts, and records every key they read
// (io::KeyRecording). Only the descriptions come from a table, and the tests check that the
// table describes exactly the keys read, so the schema cannot drift from the reader. Keys that
// only a non-default `model.backbone` reads (U-Net over a ResNet: `decoder_channels` as a list)
// are not probed; docs/configs.md lists them.
//
//   for (const auto& key : ostrov::tasks::config_schema("detection")) {
//     std::cout << key.path << " (" << key.type << "): " << key.description << "\n";
//   }

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ostrov::tasks {

/// One key of a task's config.
struct SchemaKey {
  std::string path;          ///< dotted; list items as "[]": "loss.terms[].weight"
  std::string type;          ///< "integer", "number", "string", "list of integers", "object", ...
  nlohmann::json fallback;   ///< the default; null when required or set by other keys
  bool required = false;     ///< read with ConfigReader::required
  std::string description;   ///< one line; empty when the table lacks the key
  /// Empty when the key is always read; otherwise the values of `data.format`, `model.name`
  /// or `loss.name` that make the reader read it, e.g. "model.name = unet | fc_densenet67".
  std::string condition;
};

/// Every key the reader of `task` reads, in reading order (grouped by section), each once per
/// distinct default. ConfigError naming the known tasks when `task` is not one.
std::vector<SchemaKey> config_schema(const std::string& task);

/// The schema as aligned text: one line per key with its type, default, description and
/// condition, under a heading naming the task.
std::string format_schema(const std::string& task, const std::vector<SchemaKey>& keys);

/// The description of a dotted key path ("" when the table has none); exposed for the tests.
const std::string& describe_key(const std::string& path);

/// The paths the description table holds; exposed for the tests.
std::vector<std::string> described_keys();

}  // namespace ostrov::tasks
