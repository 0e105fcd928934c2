#include "ostrov/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "ostrov/core/runtime.h"

namespace ostrov::core {

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, seconds));
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%02lld:%02lld", s / 60, s % 60);
  return buffer;
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

ProgressLine::ProgressLine(std::string what, int64_t total, std::string unit,
                           std::ostream* terminal, std::function<void(const std::string&)> log)
    : what_(std::move(what)),
      unit_(std::move(unit)),
      total_(std::max<int64_t>(total, 0)),
      terminal_(terminal),
      log_(log ? std::move(log) : [](const std::string& s) { logger()->info("{}", s); }),
      start_(std::chrono::steady_clock::now()) {
  next_log_ = std::max<int64_t>(1, (total_ + 9) / 10);
}

std::string ProgressLine::line(bool bar) const {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0.0 ? static_cast<double>(done_) / elapsed : 0.0;
  const double eta = done_ > 0 ? elapsed / static_cast<double>(done_) *
                                     static_cast<double>(std::max<int64_t>(total_ - done_, 0))
                               : 0.0;
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(1);
  if (bar) {
    const int width = 24;
    const int filled =
        total_ > 0 ? static_cast<int>(std::min<int64_t>(done_, total_) * width / total_) : 0;
    out << "\r[" << std::string(filled, '#') << std::string(width - filled, '.') << "] " << what_
        << " " << done_ << "/" << total_ << " " << unit_ << "  " << rate << " " << unit_
        << "/s  ETA " << format_duration(eta) << " ";
  } else {
    out << what_ << " " << done_ << "/" << total_ << " " << unit_ << ", " << rate << " " << unit_
        << "/s, ETA " << format_duration(eta);
  }
  return out.str();
}

void ProgressLine::advance(int64_t n) {
  done_ += n;
  if (terminal_ != nullptr) {
    *terminal_ << line(true) << std::flush;
  } else if (done_ >= next_log_ && done_ < total_) {
    log_(line(false));
    while (next_log_ <= done_) next_log_ += std::max<int64_t>(1, (total_ + 9) / 10);
  }
}

void ProgressLine::finish() {
  if (finished_) return;
  finished_ = true;
  if (terminal_ != nullptr) *terminal_ << "\n" << std::flush;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  log_(what_ + ": " + std::to_string(done_) + " " + unit_ + " in " + format_duration(elapsed));
}

}  // namespace ostrov::core
