#pragma once
// Training history: DIR/metrics.jsonl (one JSON object per line) and a loss/metric curve PNG.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ostrov::train {

/// Appends records to a JSON-lines file and keeps them in memory for plotting. Each record
/// has at least `epoch`, `step`, `split` ("train" | "val") and `loss`.
class History {
 public:
  /// Opens (and, with `resume`, first reads back) `path`. Without resume the file is truncated.
  explicit History(std::string path, bool resume = false);
  /// Appends one record (a line, flushed) and remembers it.
  void append(const nlohmann::json& record);
  /// The file's records in order: those read back on resume, then those appended.
  const std::vector<nlohmann::json>& records() const { return records_; }
  /// Drops records with step > `step` (after resuming from an earlier checkpoint) — and, with
  /// `keep_evaluations_at_step` false, the "val" records at `step` too (an evaluation that
  /// will run again) — and rewrites the file atomically.
  void truncate_after(int64_t step, bool keep_evaluations_at_step = true);
  /// The JSON-lines file, as given to the constructor.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<nlohmann::json> records_;
};

/// Axis ticks for [0, max]: 0, d, 2d, ... up to the first multiple of d >= max, with d = 1, 2 or
/// 5 x 10^k the smallest such step that needs at most `count` intervals (max <= 0: {0, 1}).
/// E.g. (2.37, 5) -> 0, 0.5, ..., 2.5; (1000, 5) -> 0, 200, ..., 1000.
std::vector<double> nice_ticks(double max, int count = 5);

/// Draws train loss (per step, smoothed) and val loss and `metric` (per evaluation, on a second
/// axis scaled to [0,1]) with OpenCV and writes the PNG atomically: tick labels and grid lines
/// on the step axis and both value axes, the best `metric` marked and named in the legend.
/// Records without the keys are skipped; fewer than 2 points draws an empty frame.
void plot_history(const std::vector<nlohmann::json>& records, const std::string& png_path,
                  const std::string& metric = "");

}  // namespace ostrov::train
