#include "ostrov/train/history.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/io/checkpoint.h"

namespace ostrov::train {

History::History(std::string path, bool resume) : path_(std::move(path)) {
  if (resume) {
    std::ifstream in(path_);
    std::string line;
    int64_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (line.empty()) continue;
      try {
        records_.push_back(nlohmann::json::parse(line));
      } catch (const nlohmann::json::exception&) {
        // A line cut by a crash: everything before it is kept, the rest is rewritten below.
        break;
      }
    }
  }
  std::string text;
  for (const auto& r : records_) text += r.dump() + "\n";
  io::write_file_atomic(path_, text);
}

void History::append(const nlohmann::json& record) {
  std::ofstream out(path_, std::ios::app);
  if (!out) throw IoError(path_ + ": cannot append");
  out << record.dump() << "\n";
  out.flush();
  if (!out) throw IoError(path_ + ": write failed");
  records_.push_back(record);
}

void History::truncate_after(int64_t step, bool keep_evaluations_at_step) {
  records_.erase(std::remove_if(records_.begin(), records_.end(),
                                [step, keep_evaluations_at_step](const nlohmann::json& r) {
                                  const int64_t s = r.value("step", int64_t{0});
                                  return s > step || (!keep_evaluations_at_step && s == step &&
                                                      r.value("split", "") == "val");
                                }),
                 records_.end());
  std::string text;
  for (const auto& r : records_) text += r.dump() + "\n";
  io::write_file_atomic(path_, text);
}

namespace {

struct Series {
  std::vector<double> x, y;
};

Series series(const std::vector<nlohmann::json>& records, const std::string& split,
              const std::string& key) {
  Series s;
  for (const auto& r : records) {
    if (r.value("split", "") != split || !r.contains(key) || !r[key].is_number()) continue;
    const double v = r[key].get<double>();
    if (!std::isfinite(v)) continue;
    s.x.push_back(r.value("step", 0.0));
    s.y.push_back(v);
  }
  return s;
}

}  // namespace

void plot_history(const std::vector<nlohmann::json>& records, const std::string& png_path,
                  const std::string& metric) {
  const int width = 800, height = 480, left = 70, right = 70, top = 40, bottom = 50;
  cv::Mat canvas(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  const cv::Rect plot(left, top, width - left - right, height - top - bottom);
  cv::rectangle(canvas, plot, cv::Scalar(0, 0, 0), 1);

  Series train = series(records, "train", "loss");
  Series val = series(records, "val", "loss");
  Series met = metric.empty() ? Series{} : series(records, "val", metric);
  // Exponential smoothing of the noisy per-step training loss.
  for (size_t i = 1; i < train.y.size(); ++i) train.y[i] = 0.9 * train.y[i - 1] + 0.1 * train.y[i];

  double max_x = 1.0, max_loss = 1e-12;
  for (const auto* s : {&train, &val, &met}) {
    for (double x : s->x) max_x = std::max(max_x, x);
  }
  for (const auto* s : {&train, &val}) {
    for (double y : s->y) max_loss = std::max(max_loss, y);
  }
  auto to_px = [&](double x, double y, double y_max) {
    return cv::Point(plot.x + static_cast<int>(std::lround(x / max_x * plot.width)),
                     plot.y + plot.height -
                         static_cast<int>(std::lround(std::clamp(y / y_max, 0.0, 1.0) * plot.height)));
  };
  auto draw = [&](const Series& s, double y_max, const cv::Scalar& colour) {
    for (size_t i = 1; i < s.x.size(); ++i) {
      cv::line(canvas, to_px(s.x[i - 1], s.y[i - 1], y_max), to_px(s.x[i], s.y[i], y_max), colour,
               2, cv::LINE_AA);
    }
    for (size_t i = 0; i < s.x.size() && s.x.size() < 60; ++i) {
      cv::circle(canvas, to_px(s.x[i], s.y[i], y_max), 3, colour, cv::FILLED, cv::LINE_AA);
    }
  };
  draw(train, max_loss, cv::Scalar(200, 120, 30));
  draw(val, max_loss, cv::Scalar(40, 40, 220));
  draw(met, 1.0, cv::Scalar(40, 160, 40));

  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  std::ostringstream lmax;
  lmax.precision(3);
  lmax << max_loss;
  cv::putText(canvas, lmax.str(), {5, top + 5}, font, 0.45, {0, 0, 0}, 1, cv::LINE_AA);
  cv::putText(canvas, "0", {left - 15, top + plot.height}, font, 0.45, {0, 0, 0}, 1, cv::LINE_AA);
  cv::putText(canvas, "step " + std::to_string(static_cast<int64_t>(max_x)),
              {plot.x + plot.width - 90, height - 15}, font, 0.45, {0, 0, 0}, 1, cv::LINE_AA);
  if (!met.x.empty()) {
    cv::putText(canvas, "1.0", {plot.x + plot.width + 8, top + 5}, font, 0.45, {40, 160, 40}, 1,
                cv::LINE_AA);
  }
  int legend_x = left;
  auto legend = [&](const std::string& text, const cv::Scalar& colour) {
    cv::line(canvas, {legend_x, 22}, {legend_x + 25, 22}, colour, 3);
    cv::putText(canvas, text, {legend_x + 30, 27}, font, 0.5, {0, 0, 0}, 1, cv::LINE_AA);
    legend_x += 40 + static_cast<int>(text.size()) * 10;
  };
  legend("train loss (smoothed)", cv::Scalar(200, 120, 30));
  legend("val loss", cv::Scalar(40, 40, 220));
  if (!metric.empty()) legend("val " + metric + " (right axis)", cv::Scalar(40, 160, 40));
  core::write_image(png_path, canvas);
}

}  // namespace ostrov::train
