#include "ostrov/tasks/schema.h"

#include <algorithm>
#include <array>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/tasks/task.h"

namespace ostrov::tasks {

namespace {

using nlohmann::json;

// Named, not a temporary at each call: a temporary argument makes GCC 14 suspect the returned
// reference (-Wdangling-reference).
const std::string kSchemaWhere = "config --schema";

/// One probe config: the values of the keys that decide which other keys are read.
struct Probe {
  std::string format, model, loss;  // loss: a loss name, "(terms)" or "" (the task's default)
};

json probe_split(const std::string& format) {
  if (format == "coco") return {{"annotations", "instances.json"}, {"images", "images"}};
  return {{"root", "images"}};
}

json probe_config(const std::string& task, const Probe& p) {
  json config = {{"task", task},
                 {"data",
                  {{"format", p.format},
                   {"num_classes", 3},
                   {"train", probe_split(p.format)},
                   {"val", probe_split(p.format)}}},
                 {"model", {{"name", p.model}}},
                 {"train", {{"epochs", 1}, {"schedule", {{"name", "cosine"}}}}}};
  if (p.loss == "(terms)") {
    config["loss"] = {{"terms", json::array({{{"name", "cross_entropy"}, {"weight", 1.0}}})}};
  } else if (!p.loss.empty()) {
    config["loss"] = {{"name", p.loss}};
  }
  return config;
}

// "loss.terms[0].weight" -> "loss.terms[].weight"
std::string normalise_path(const std::string& path) {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    out += path[i];
    if (path[i] == '[') {
      while (i + 1 < path.size() && path[i + 1] != ']') ++i;
    }
  }
  return out;
}

bool is_untyped(const std::string& type) { return type == "any" || type == "object"; }

// What the keys read whole (ConfigReader::raw) hold; the readers of their parts check them.
std::string raw_type(const std::string& path, const std::string& type) {
  static const std::map<std::string, std::string> kTypes = {
      {"model", "object"},
      {"loss", "object"},
      {"data.transforms", "list of objects"},
      {"loss.terms", "list of objects"},
      {"train.schedule", "string or object"}};
  const auto it = kTypes.find(path);
  return it != kTypes.end() && type == "any" ? it->second : type;
}

// The keys one probe reads, each once: an untyped record (a section read raw by one reader
// and typed by another) gives way to a typed record of the same path.
std::vector<io::ConfigKey> read_keys(const std::string& task, const Probe& probe) {
  std::vector<io::ConfigKey> keys;
  {
    io::KeyRecording recording;
    try {
      parse_run_config(probe_config(task, probe), "(schema probe)");
    } catch (const ConfigError& e) {
      throw Error(std::string("config_schema: the ") + task + " probe with model " +
                  probe.model + " (loss " + (probe.loss.empty() ? "default" : probe.loss) +
                  ", data " + probe.format + ") fails, so its keys cannot be listed: " + e.what());
    }
    keys = recording.keys();
  }
  for (auto& k : keys) k.path = normalise_path(k.path);
  std::vector<io::ConfigKey> out;
  for (const auto& k : keys) {
    // A term of the (terms) probe reads its loss's keys, listed under loss.name already.
    if (probe.loss == "(terms)" && k.path.rfind("loss.terms[].", 0) == 0 &&
        k.path != "loss.terms[].name" && k.path != "loss.terms[].weight") {
      continue;
    }
    auto same = std::find_if(out.begin(), out.end(),
                             [&](const io::ConfigKey& o) { return o.path == k.path; });
    if (same == out.end()) {
      out.push_back(k);
    } else if (is_untyped(same->type) && !is_untyped(k.type)) {
      *same = k;
    } else if (!is_untyped(k.type)) {
      same->required = same->required || k.required;
    }
  }
  return out;
}

int section_rank(const std::string& path) {
  static const std::vector<std::string> kOrder = {"task", "data", "model", "loss", "train"};
  const std::string top = path.substr(0, path.find('.'));
  const auto it = std::find(kOrder.begin(), kOrder.end(), top);
  return static_cast<int>(it - kOrder.begin());
}

std::string join(const std::vector<std::string>& words, const std::string& sep) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : sep) + w;
  return out;
}

// The values of one probe dimension that make a row's probes exactly the probes with one of
// those values; "" when that dimension does not explain the row.
std::string explain(const std::vector<Probe>& probes, const std::set<size_t>& rows,
                    const std::function<std::string(const Probe&)>& dim, const std::string& name) {
  std::vector<std::string> values;
  for (size_t i : rows) {
    const auto v = dim(probes[i]);
    if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
  }
  size_t matching = 0;
  std::set<std::string> all;
  for (const auto& p : probes) {
    all.insert(dim(p));
    if (std::find(values.begin(), values.end(), dim(p)) != values.end()) ++matching;
  }
  if (matching != rows.size() || values.size() == all.size()) return "";
  if (name == "loss" && values == std::vector<std::string>{"(terms)"}) return "with loss.terms";
  if (name == "loss" && values.size() + 1 == all.size() && !rows.empty() &&
      std::find(values.begin(), values.end(), "(terms)") == values.end()) {
    return "without loss.terms";
  }
  return (name == "loss" ? "loss.name" : name) + " = " + join(values, " | ");
}

}  // namespace

std::vector<SchemaKey> config_schema(const std::string& task) {
  const TaskEntry& entry = find_task(task, kSchemaWhere);
  const std::vector<std::string> models =
      entry.model_names ? entry.model_names() : std::vector<std::string>{};
  if (models.empty()) throw Error("config_schema: task " + task + " lists no model names");
  std::vector<std::string> losses;
  if (entry.loss_names) {
    losses = entry.loss_names();
    losses.push_back("(terms)");
  } else {
    losses.push_back("");
  }
  // Every format with the first model, every model with the first format, every loss with
  // the first model: the keys that depend on one of them are read at least once.
  std::vector<Probe> probes;
  for (const auto& f : entry.formats) probes.push_back({f, models.front(), losses.front()});
  for (size_t m = 1; m < models.size(); ++m) {
    probes.push_back({entry.formats.front(), models[m], losses.front()});
  }
  for (size_t l = 1; l < losses.size(); ++l) {
    probes.push_back({entry.formats.front(), models.front(), losses[l]});
  }
  // Probes vary one dimension at a time, so a key's condition is explained within the probes
  // that share the other two dimensions' first values.
  struct Row {
    io::ConfigKey key;
    std::set<size_t> probes;
  };
  std::vector<Row> rows;
  for (size_t i = 0; i < probes.size(); ++i) {
    for (const auto& k : read_keys(task, probes[i])) {
      auto same = std::find_if(rows.begin(), rows.end(), [&](const Row& r) {
        return r.key.path == k.path && r.key.type == k.type && r.key.fallback == k.fallback &&
               r.key.required == k.required;
      });
      if (same == rows.end()) {
        rows.push_back({k, {i}});
      } else {
        same->probes.insert(i);
      }
    }
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return section_rank(a.key.path) < section_rank(b.key.path);
  });

  std::vector<SchemaKey> out;
  for (const auto& row : rows) {
    SchemaKey key;
    key.path = row.key.path;
    key.type = raw_type(row.key.path, row.key.type);
    key.fallback = row.key.fallback;
    key.required = row.key.required;
    key.description = describe_key(key.path);
    if (row.probes.size() != probes.size()) {
      // Within the probes that vary one dimension, which values of it read the key.
      const std::pair<std::function<std::string(const Probe&)>, std::string> dims[] = {
          {[](const Probe& p) { return p.format; }, "data.format"},
          {[](const Probe& p) { return p.model; }, "model.name"},
          {[](const Probe& p) { return p.loss; }, "loss"}};
      const Probe& base = probes.front();
      for (const auto& [dim, name] : dims) {
        // The probes that differ from the first one in this dimension only (and the first).
        std::vector<Probe> varied;
        std::set<size_t> hits;
        for (size_t i = 0; i < probes.size(); ++i) {
          const Probe& p = probes[i];
          const int differing = (p.format != base.format) + (p.model != base.model) +
                                (p.loss != base.loss);
          const bool only_this = differing == 0 || (differing == 1 && dim(p) != dim(base));
          if (!only_this) continue;
          if (row.probes.count(i)) hits.insert(varied.size());
          varied.push_back(p);
        }
        if (hits.empty() || hits.size() == varied.size()) continue;
        key.condition = explain(varied, hits, dim, name);
        if (!key.condition.empty()) break;
      }
    }
    out.push_back(std::move(key));
  }
  return out;
}

std::string format_schema(const std::string& task, const std::vector<SchemaKey>& keys) {
  const TaskEntry& entry = find_task(task, kSchemaWhere);
  std::vector<std::array<std::string, 4>> lines;
  for (const auto& k : keys) {
    std::string fallback = k.required           ? "required"
                           : k.fallback.is_null() ? "-"
                                                  : k.fallback.dump();
    std::string description = k.description.empty() ? "(undocumented)" : k.description;
    if (!k.condition.empty()) description += "  [" + k.condition + "]";
    lines.push_back({k.path, k.type, fallback, description});
  }
  size_t width[3] = {3, 4, 7};
  for (const auto& l : lines) {
    for (size_t c = 0; c < 3; ++c) width[c] = std::max(width[c], std::min<size_t>(l[c].size(), 40));
  }
  std::ostringstream s;
  s << task << ": " << entry.description << "\n"
    << "Every key a run config of this task may hold; [..] names the values that make a key "
       "count.\nKeys read only with another model.backbone: docs/configs.md.\n\n";
  auto pad = [](const std::string& text, size_t w) {
    return text + std::string(text.size() < w ? w - text.size() : 1, ' ');
  };
  s << pad("key", width[0] + 2) << pad("type", width[1] + 2) << pad("default", width[2] + 2)
    << "description\n";
  for (const auto& l : lines) {
    s << pad(l[0], width[0] + 2) << pad(l[1], width[1] + 2) << pad(l[2], width[2] + 2) << l[3]
      << "\n";
  }
  return s.str();
}

}  // namespace ostrov::tasks
