#include "ostrov/data/visualize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/image.h"

namespace ostrov::data {

namespace {

constexpr double kGoldenRatioConjugate = 0.6180339887498949;

// Sasha Trubetskoy's 20 distinct colours (RGB).
constexpr std::array<std::array<uint8_t, 3>, 20> kTable = {{{230, 25, 75},   {60, 180, 75},
                                                            {255, 225, 25},  {0, 130, 200},
                                                            {245, 130, 48},  {145, 30, 180},
                                                            {70, 240, 240},  {240, 50, 230},
                                                            {210, 245, 60},  {250, 190, 212},
                                                            {0, 128, 128},   {220, 190, 255},
                                                            {170, 110, 40},  {255, 250, 200},
                                                            {128, 0, 0},     {170, 255, 195},
                                                            {128, 128, 0},   {255, 215, 180},
                                                            {0, 0, 128},     {128, 128, 128}}};

cv::Vec3b hsv_bgr(double h, double s, double v) {
  h -= std::floor(h);
  const double h6 = h * 6.0;
  const int sector = static_cast<int>(h6) % 6;
  const double f = h6 - std::floor(h6);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r, g, b;
  switch (sector) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
  }
  auto byte = [](double x) { return static_cast<uint8_t>(std::lround(std::clamp(x, 0.0, 1.0) * 255.0)); };
  return cv::Vec3b(byte(b), byte(g), byte(r));
}

void check_image(const cv::Mat& image, const char* what) {
  TORCH_CHECK(!image.empty() && image.type() == CV_8UC3, what,
              ": expected an [H,W,3] uint8 BGR image (CV_8UC3), got type ", image.type(),
              image.empty() ? " (empty)" : "");
}

// [H,W] integer mask in 0..255 -> CV_8UC1 Mat (owning).
cv::Mat mask_bytes(const at::Tensor& mask, const char* what) {
  TORCH_CHECK(mask.dim() == 2, what, ": mask should be [H,W], got ", mask.sizes());
  auto m = mask.detach().to(at::kCPU);
  if (m.scalar_type() == at::kBool) m = m.to(at::kByte);
  TORCH_CHECK(!at::isFloatingType(m.scalar_type()), what, ": mask should hold integers, got ",
              m.scalar_type());
  if (m.numel() > 0) {
    const int64_t lo = m.min().item<int64_t>(), hi = m.max().item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi <= 255, what, ": mask labels should be in [0,255], got [", lo, ",",
                hi, "]");
  }
  auto bytes = m.to(at::kByte).contiguous();
  return cv::Mat(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC1,
                 bytes.data_ptr<uint8_t>())
      .clone();
}

cv::Mat blend(const cv::Mat& image, const cv::Mat& colours, const cv::Mat& where, double alpha) {
  cv::Mat mixed;
  cv::addWeighted(image, 1.0 - alpha, colours, alpha, 0.0, mixed);
  cv::Mat out = image.clone();
  mixed.copyTo(out, where);
  return out;
}

}  // namespace

cv::Vec3b class_color(int64_t label) {
  if (label == 0) return cv::Vec3b(0, 0, 0);
  if (label == 255) return cv::Vec3b(220, 220, 220);
  if (label >= 1 && label <= static_cast<int64_t>(kTable.size())) {
    const auto& c = kTable[label - 1];
    return cv::Vec3b(c[2], c[1], c[0]);
  }
  const double h = 0.1 + static_cast<double>(label) * kGoldenRatioConjugate;
  return hsv_bgr(h, label % 2 ? 0.75 : 0.55, label % 3 ? 0.95 : 0.75);
}

cv::Vec3b instance_color(int64_t index) {
  return hsv_bgr(0.05 + static_cast<double>(index) * kGoldenRatioConjugate, 0.85,
                 index % 2 ? 0.8 : 1.0);
}

cv::Mat colorize_mask(const at::Tensor& mask) {
  const cv::Mat labels = mask_bytes(mask, "colorize_mask");
  cv::Mat lut(1, 256, CV_8UC3);
  for (int v = 0; v < 256; ++v) lut.at<cv::Vec3b>(0, v) = class_color(v);
  cv::Mat labels3, out;
  cv::cvtColor(labels, labels3, cv::COLOR_GRAY2BGR);
  cv::LUT(labels3, lut, out);
  return out;
}

cv::Mat overlay_mask(const cv::Mat& image, const at::Tensor& mask, double alpha) {
  check_image(image, "overlay_mask");
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == image.rows && mask.size(1) == image.cols,
              "overlay_mask: mask should be [", image.rows, ",", image.cols,
              "] like the image, got ", mask.sizes());
  TORCH_CHECK(alpha >= 0.0 && alpha <= 1.0, "overlay_mask: alpha should be in [0,1], got ", alpha);
  const cv::Mat colours = colorize_mask(mask);
  const cv::Mat labels = mask_bytes(mask, "overlay_mask");
  return blend(image, colours, labels != 0, alpha);
}

cv::Mat overlay_instances(const cv::Mat& image, const at::Tensor& instances, double alpha) {
  check_image(image, "overlay_instances");
  TORCH_CHECK(instances.dim() == 3 && instances.size(1) == image.rows &&
                  instances.size(2) == image.cols,
              "overlay_instances: instances should be [K,", image.rows, ",", image.cols,
              "] like the image, got ", instances.sizes());
  TORCH_CHECK(alpha >= 0.0 && alpha <= 1.0, "overlay_instances: alpha should be in [0,1], got ",
              alpha);
  const auto binary = (instances.detach().to(at::kCPU) != 0).to(at::kByte).contiguous();
  cv::Mat colours = image.clone();
  cv::Mat any = cv::Mat::zeros(image.rows, image.cols, CV_8UC1);
  std::vector<cv::Mat> masks;
  for (int64_t k = 0; k < binary.size(0); ++k) {
    cv::Mat m(image.rows, image.cols, CV_8UC1, binary[k].data_ptr<uint8_t>());
    const cv::Vec3b c = instance_color(k);
    colours.setTo(cv::Scalar(c[0], c[1], c[2]), m);
    any.setTo(1, m);
    masks.push_back(m);
  }
  cv::Mat out = blend(image, colours, any, alpha);
  for (size_t k = 0; k < masks.size(); ++k) {
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(masks[k].clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
    const cv::Vec3b c = instance_color(static_cast<int64_t>(k));
    cv::drawContours(out, contours, -1, cv::Scalar(c[0], c[1], c[2]), 1, cv::LINE_8);
  }
  return out;
}

cv::Mat draw_boxes(const cv::Mat& image, const at::Tensor& boxes, const at::Tensor& labels,
                   const at::Tensor& scores, const std::vector<std::string>& class_names,
                   int thickness) {
  check_image(image, "draw_boxes");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "draw_boxes: boxes should be [K,4], got ",
              boxes.sizes());
  const int64_t k = boxes.size(0);
  TORCH_CHECK(!labels.defined() || (labels.dim() == 1 && labels.size(0) == k),
              "draw_boxes: labels should be [", k, "], got ", labels.sizes());
  TORCH_CHECK(!scores.defined() || (scores.dim() == 1 && scores.size(0) == k),
              "draw_boxes: scores should be [", k, "], got ", scores.sizes());
  TORCH_CHECK(thickness >= 1, "draw_boxes: thickness should be >= 1, got ", thickness);
  const auto b = boxes.detach().to(at::kCPU, at::kFloat).contiguous();
  const auto l = labels.defined() ? labels.detach().to(at::kCPU, at::kLong).contiguous() : at::Tensor();
  const auto s = scores.defined() ? scores.detach().to(at::kCPU, at::kFloat).contiguous() : at::Tensor();
  cv::Mat out = image.clone();
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = 0.4;
  for (int64_t i = 0; i < k; ++i) {
    const float* v = b.data_ptr<float>() + 4 * i;
    if (!std::isfinite(v[0]) || !std::isfinite(v[1]) || !std::isfinite(v[2]) || !std::isfinite(v[3])) {
      continue;  // nothing sensible to draw
    }
    const cv::Point p1(static_cast<int>(std::lround(v[0])), static_cast<int>(std::lround(v[1])));
    // x2/y2 are exclusive: the last pixel inside is one less.
    const cv::Point p2(std::max(p1.x, static_cast<int>(std::lround(v[2])) - 1),
                       std::max(p1.y, static_cast<int>(std::lround(v[3])) - 1));
    const int64_t label = l.defined() ? l.data_ptr<int64_t>()[i] : -1;
    const cv::Vec3b c = label >= 0 ? class_color(label) : instance_color(i);
    const cv::Scalar colour(c[0], c[1], c[2]);
    cv::rectangle(out, p1, p2, colour, thickness, cv::LINE_8);

    std::string caption;
    if (label >= 0) {
      caption = (label < static_cast<int64_t>(class_names.size())) ? class_names[label]
                                                                    : std::to_string(label);
    }
    if (s.defined()) {
      char number[32];
      std::snprintf(number, sizeof(number), "%.2f", static_cast<double>(s.data_ptr<float>()[i]));
      caption += (caption.empty() ? "" : " ") + std::string(number);
    }
    if (caption.empty()) continue;
    int baseline = 0;
    const cv::Size size = cv::getTextSize(caption, font, scale, 1, &baseline);
    // Above the box when there is room, else inside its top edge.
    int top = p1.y - size.height - baseline - 2;
    if (top < 0) top = p1.y;
    const cv::Rect background(p1.x, top, size.width + 4, size.height + baseline + 2);
    cv::rectangle(out, background, colour, cv::FILLED);
    const double luminance = 0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2];
    const cv::Scalar ink = luminance > 128 ? cv::Scalar(0, 0, 0) : cv::Scalar(255, 255, 255);
    cv::putText(out, caption, cv::Point(p1.x + 2, top + size.height + 1), font, scale, ink, 1,
                cv::LINE_AA);
  }
  return out;
}

cv::Mat visualize_sample(const Sample& sample, const std::vector<std::string>& class_names,
                         double alpha) {
  TORCH_CHECK(sample.image.defined(), "visualize_sample: the sample has no image");
  cv::Mat out = core::tensor_to_image(sample.image);
  if (sample.instances.defined() && sample.instances.size(0) > 0) {
    out = overlay_instances(out, sample.instances, alpha);
  } else if (sample.mask.defined()) {
    out = overlay_mask(out, sample.mask, alpha);
  }
  if (sample.boxes.defined() && sample.boxes.size(0) > 0) {
    out = draw_boxes(out, sample.boxes, sample.labels, {}, class_names);
  }
  return out;
}

}  // namespace ostrov::data
