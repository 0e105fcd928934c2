// core::ProgressLine: the progress of eval and predict, redrawn on a terminal, logged otherwise.
#include "catch.h"

#include <sstream>
#include <string>
#include <vector>

#include "ostrov/core/progress.h"

using namespace ostrov;

TEST_CASE("format_duration writes minutes and seconds", "[core][progress]") {
  CHECK(core::format_duration(0) == "00:00");
  CHECK(core::format_duration(65.9) == "01:05");
  CHECK(core::format_duration(3600) == "60:00");
  CHECK(core::format_duration(-3) == "00:00");
}

TEST_CASE("ProgressLine logs about every tenth of the work, or redraws one terminal line",
          "[core][progress]") {
  std::vector<std::string> lines;
  const auto log = [&](const std::string& s) { lines.push_back(s); };
  {
    core::ProgressLine p("eval", 100, "images", nullptr, log);
    for (int i = 0; i < 25; ++i) p.advance(4);  // batches of 4
    p.finish();
  }
  // At 12, 20, ..., 96 (every tenth = 10, reached in steps of 4), then the summary.
  REQUIRE(lines.size() == 10);
  CHECK(lines[0].rfind("eval 12/100 images, ", 0) == 0);
  CHECK(lines[0].find("ETA ") != std::string::npos);
  CHECK(lines[8].rfind("eval 92/100 images", 0) == 0);
  CHECK(lines[9].rfind("eval: 100 images in 00:0", 0) == 0);

  lines.clear();
  std::ostringstream terminal;
  core::ProgressLine bar("predict", 3, "images", &terminal, log);
  bar.advance();
  bar.advance();
  CHECK(terminal.str().find("\r[################........] predict 2/3 images") !=
        std::string::npos);
  bar.advance();
  bar.finish();
  bar.finish();  // once only
  CHECK(terminal.str().find("\r[########################] predict 3/3 images") !=
        std::string::npos);
  CHECK(terminal.str().back() == '\n');
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("predict: 3 images in ", 0) == 0);
}
