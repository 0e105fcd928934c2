#include <catch2/catch.hpp>

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
