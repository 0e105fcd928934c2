#include "catch.h"

#include <cmath>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "ostrov/train/history.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

TEST_CASE("History writes one JSON object per line and resumes", "[train][history]") {
  TempDir dir;
  const std::string path = dir / "metrics.jsonl";
  {
    train::History h(path);
    for (int s = 1; s <= 4; ++s) h.append({{"epoch", 0}, {"step", s}, {"split", "train"}, {"loss", 1.0 / s}});
    h.append({{"epoch", 0}, {"step", 4}, {"split", "val"}, {"loss", 0.3}, {"miou", 0.5}});
  }
  // A crash may leave a cut last line.
  test::write_bytes(path, test::read_bytes(path) + "{\"epoch\": 1, \"st");
  train::History resumed(path, /*resume=*/true);
  REQUIRE(resumed.records().size() == 5);
  CHECK(resumed.records()[4]["miou"] == 0.5);
  resumed.truncate_after(2);
  CHECK(resumed.records().size() == 2);
  train::History again(path, true);
  CHECK(again.records().size() == 2);
  train::History fresh(path);  // without resume: starts empty
  CHECK(fresh.records().empty());
  CHECK(test::read_bytes(path).empty());
}

TEST_CASE("plot_history draws a PNG with the curves", "[train][history]") {
  TempDir dir;
  std::vector<nlohmann::json> records;
  for (int s = 1; s <= 50; ++s) records.push_back({{"step", s}, {"split", "train"}, {"loss", 2.0 / s}});
  for (int s = 10; s <= 50; s += 10) {
    records.push_back({{"step", s}, {"split", "val"}, {"loss", 1.0 / s}, {"miou", s / 60.0}});
  }
  const std::string png = dir / "loss.png";
  train::plot_history(records, png, "miou");
  cv::Mat image = cv::imread(png);
  REQUIRE(image.cols == 800);
  REQUIRE(image.rows == 480);
  // Some pixels carry the train-loss colour (BGR 200,120,30) and the metric colour.
  int train_px = 0, metric_px = 0;
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x) {
      auto p = image.at<cv::Vec3b>(y, x);
      train_px += (p == cv::Vec3b(200, 120, 30));
      metric_px += (p == cv::Vec3b(40, 160, 40));
    }
  CHECK(train_px > 100);
  CHECK(metric_px > 100);
  train::plot_history({}, dir / "empty.png");  // no data: an empty frame, no error
}

TEST_CASE("nice_ticks: steps of 1, 2 or 5 x 10^k up to the first tick past the maximum",
          "[train][history]") {
  using V = std::vector<double>;
  const auto near = [](const V& got, const V& want) {
    if (got.size() != want.size()) return false;
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::abs(got[i] - want[i]) > 1e-9 * std::max(1.0, std::abs(want[i]))) return false;
    }
    return true;
  };
  CHECK(near(train::nice_ticks(2.37, 5), V{0, 0.5, 1, 1.5, 2, 2.5}));      // 2.37/5 = 0.47 -> 0.5
  CHECK(near(train::nice_ticks(1000, 5), V{0, 200, 400, 600, 800, 1000}));  // exactly 200
  CHECK(near(train::nice_ticks(1001, 5), V{0, 500, 1000, 1500}));            // 200.2 -> 500
  CHECK(near(train::nice_ticks(0.083, 4), V{0, 0.05, 0.1}));                 // 0.02075 -> 0.05
  CHECK(near(train::nice_ticks(7, 8), V{0, 1, 2, 3, 4, 5, 6, 7}));          // 0.875 -> 1
  CHECK(near(train::nice_ticks(0, 5), V{0, 1}));
  CHECK(near(train::nice_ticks(std::nan(""), 5), V{0, 1}));
}
