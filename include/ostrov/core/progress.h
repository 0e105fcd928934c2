#pragma once
// Progress of counted work that takes a while (`ostrov eval`, `ostrov predict` over a folder,
// tasks::evaluate): on a terminal one line redrawn in place, like training's; otherwise a log
// line about every tenth of the work and at the end.

#include <chrono>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

namespace ostrov::core {

/// "MM:SS" (minutes may exceed 59): the ETA and durations of progress lines.
std::string format_duration(double seconds);

/// Whether standard error is a terminal (progress lines are redrawn there).
bool stderr_is_terminal();

/// Progress of `total` units of work: a bar redrawn in place on `terminal` when given,
/// otherwise a log line about every tenth of the work; finish() logs the total time.
class ProgressLine {
 public:
  /// Writes "\r[####....] what done/total unit  rate unit/s  ETA MM:SS" to `terminal`, or,
  /// when `terminal` is null, "what done/total unit, rate unit/s, ETA MM:SS" through `log` at
  /// every tenth of `total` (default log: the ostrov logger at info level).
  ProgressLine(std::string what, int64_t total, std::string unit, std::ostream* terminal,
               std::function<void(const std::string&)> log = {});
  /// Counts `n` more done and reports when due.
  void advance(int64_t n = 1);
  /// Ends the terminal line; logs "what: done unit in MM:SS".
  void finish();

 private:
  std::string line(bool bar) const;

  std::string what_, unit_;
  int64_t total_, done_ = 0, next_log_ = 0;
  std::ostream* terminal_;
  std::function<void(const std::string&)> log_;
  std::chrono::steady_clock::time_point start_;
  bool finished_ = false;
};

}  // namespace ostrov::core
