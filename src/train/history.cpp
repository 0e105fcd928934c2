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

std::vector<double> nice_ticks(double max, int count) {
  if (!(max > 0.0) || !std::isfinite(max) || count < 1) return {0.0, 1.0};
  const double raw = max / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10.0 * power;
  for (const double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw * (1.0 - 1e-9)) {
      step = m * power;
      break;
    }
  }
  std::vector<double> ticks;
  for (int k = 0;; ++k) {
    const double t = k * step;
    ticks.push_back(t);
    if (t >= max * (1.0 - 1e-9)) break;
  }
  return ticks;
}

namespace {

std::string tick_label(double value) {
  std::ostringstream out;
  out.precision(value != 0.0 && std::abs(value) < 0.01 ? 2 : 6);
  if (value != 0.0 && std::abs(value) < 0.01) {
    out << std::scientific << value;
  } else {
    out << value;
  }
  return out.str();
}

}  // namespace

void plot_history(const std::vector<nlohmann::json>& records, const std::string& png_path,
                  const std::string& metric) {
  const int width = 800, height = 480, left = 70, right = 70, top = 40, bottom = 50;
  cv::Mat canvas(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  const cv::Rect plot(left, top, width - left - right, height - top - bottom);

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
  // The axes end at their last tick, so every curve lies under a labelled value.
  const auto x_ticks = nice_ticks(max_x, 8);
  const auto loss_ticks = nice_ticks(max_loss, 5);
  max_x = x_ticks.back();
  max_loss = loss_ticks.back();
  auto to_px = [&](double x, double y, double y_max) {
    return cv::Point(plot.x + static_cast<int>(std::lround(x / max_x * plot.width)),
                     plot.y + plot.height -
                         static_cast<int>(std::lround(std::clamp(y / y_max, 0.0, 1.0) * plot.height)));
  };

  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  const cv::Scalar grid(225, 225, 225), ink(0, 0, 0), green(40, 160, 40);
  auto text = [&](const std::string& s, cv::Point at, const cv::Scalar& colour, bool right_align) {
    int baseline = 0;
    const auto size = cv::getTextSize(s, font, 0.42, 1, &baseline);
    if (right_align) at.x -= size.width;
    cv::putText(canvas, s, at, font, 0.42, colour, 1, cv::LINE_AA);
  };
  for (const double t : x_ticks) {
    const auto p = to_px(t, 0.0, 1.0);
    cv::line(canvas, {p.x, plot.y}, {p.x, plot.y + plot.height}, grid, 1);
    cv::line(canvas, {p.x, plot.y + plot.height}, {p.x, plot.y + plot.height + 5}, ink, 1);
    text(tick_label(t), {p.x - 10, plot.y + plot.height + 20}, ink, false);
  }
  for (const double t : loss_ticks) {
    const auto p = to_px(0.0, t, max_loss);
    cv::line(canvas, {plot.x, p.y}, {plot.x + plot.width, p.y}, grid, 1);
    cv::line(canvas, {plot.x - 5, p.y}, {plot.x, p.y}, ink, 1);
    text(tick_label(t), {plot.x - 8, p.y + 5}, ink, true);
  }
  text("step", {plot.x + plot.width / 2 - 15, height - 8}, ink, false);
  text("loss", {5, top - 8}, ink, false);
  if (!met.x.empty()) {
    for (const double t : {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}) {
      const auto p = to_px(0.0, t, 1.0);
      cv::line(canvas, {plot.x + plot.width, p.y}, {plot.x + plot.width + 5, p.y}, green, 1);
      text(tick_label(t), {plot.x + plot.width + 8, p.y + 5}, green, false);
    }
  }
  cv::rectangle(canvas, plot, ink, 1);

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
  draw(met, 1.0, green);

  // The best evaluation of the metric: a ring around its point and its value in the legend.
  std::string best;
  if (!met.y.empty()) {
    const auto at = std::max_element(met.y.begin(), met.y.end()) - met.y.begin();
    cv::circle(canvas, to_px(met.x[at], met.y[at], 1.0), 7, green, 2, cv::LINE_AA);
    std::ostringstream b;
    b.precision(3);
    b << ", best " << met.y[at] << " at step " << static_cast<int64_t>(met.x[at]);
    best = b.str();
  }
  int legend_x = left;
  auto legend = [&](const std::string& label, const cv::Scalar& colour) {
    cv::line(canvas, {legend_x, 22}, {legend_x + 25, 22}, colour, 3);
    int baseline = 0;
    const auto size = cv::getTextSize(label, font, 0.45, 1, &baseline);
    cv::putText(canvas, label, {legend_x + 30, 27}, font, 0.45, ink, 1, cv::LINE_AA);
    legend_x += 45 + size.width;
  };
  legend("train loss (smoothed)", cv::Scalar(200, 120, 30));
  legend("val loss", cv::Scalar(40, 40, 220));
  if (!metric.empty()) legend("val " + metric + " (right axis)" + best, green);
  core::write_image(png_path, canvas);
}

}  // namespace ostrov::train
