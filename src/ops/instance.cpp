#include "ostrov/ops/instance.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"

namespace ostrov::ops {

namespace {

std::string size_string(int64_t height, int64_t width) {
  return std::to_string(height) + "x" + std::to_string(width);
}

// A wrong sum would make decoding read or write out of bounds.
void check_counts_sum(const Rle& rle, const char* what) {
  if (rle.height < 0 || rle.width < 0) {
    throw DataError(std::string(what) + ": RLE size must be non-negative, got " +
                    size_string(rle.height, rle.width));
  }
  uint64_t total = 0;
  for (uint32_t c : rle.counts) total += c;
  const auto pixels = static_cast<uint64_t>(rle.height) * static_cast<uint64_t>(rle.width);
  if (total != pixels) {
    throw DataError(std::string(what) + ": RLE counts sum to " + std::to_string(total) +
                    " but the mask is " + size_string(rle.height, rle.width) + " = " +
                    std::to_string(pixels) + " pixels");
  }
}

// A CV_8UC1 0/1 image of a [H,W] tensor (non-zero = 1); owns its memory.
cv::Mat binary_mat(const at::Tensor& mask) {
  auto bytes = mask.detach().ne(0).to(at::kCPU, at::kByte).contiguous();
  cv::Mat wrapped(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8UC1,
                  bytes.data_ptr<uint8_t>());
  return wrapped.clone();
}

// Largest mask side polygons_to_mask draws (keeps OpenCV's fixed-point coordinates in int).
constexpr int64_t kMaxRasterSize = int64_t{1} << 22;

// Sutherland-Hodgman clipping of a closed polygon to [x0,x1]x[y0,y1]. Keeps the even-odd fill
// inside the window (self-intersecting polygons included); may add edges along its border.
std::vector<cv::Point2d> clip_to_window(std::vector<cv::Point2d> poly, double x0, double y0,
                                        double x1, double y1) {
  auto clip = [&poly](auto inside, auto cross) {
    std::vector<cv::Point2d> out;
    if (poly.empty()) return;
    out.reserve(poly.size() + 4);
    cv::Point2d prev = poly.back();
    bool prev_in = inside(prev);
    for (const auto& cur : poly) {
      const bool cur_in = inside(cur);
      if (cur_in != prev_in) out.push_back(cross(prev, cur));
      if (cur_in) out.push_back(cur);
      prev = cur;
      prev_in = cur_in;
    }
    poly = std::move(out);
  };
  auto at_x = [](const cv::Point2d& a, const cv::Point2d& b, double x) {
    return cv::Point2d(x, a.y + (x - a.x) / (b.x - a.x) * (b.y - a.y));
  };
  auto at_y = [](const cv::Point2d& a, const cv::Point2d& b, double y) {
    return cv::Point2d(a.x + (y - a.y) / (b.y - a.y) * (b.x - a.x), y);
  };
  clip([&](const cv::Point2d& p) { return p.x >= x0; },
       [&](const cv::Point2d& a, const cv::Point2d& b) { return at_x(a, b, x0); });
  clip([&](const cv::Point2d& p) { return p.x <= x1; },
       [&](const cv::Point2d& a, const cv::Point2d& b) { return at_x(a, b, x1); });
  clip([&](const cv::Point2d& p) { return p.y >= y0; },
       [&](const cv::Point2d& a, const cv::Point2d& b) { return at_y(a, b, y0); });
  clip([&](const cv::Point2d& p) { return p.y <= y1; },
       [&](const cv::Point2d& a, const cv::Point2d& b) { return at_y(a, b, y1); });
  return poly;
}

}  // namespace

Rle rle_encode(const at::Tensor& mask) {
  TORCH_CHECK(mask.dim() == 2, "rle_encode: mask should be [H,W], got ", mask.sizes());
  TORCH_CHECK(mask.numel() <= std::numeric_limits<uint32_t>::max(),
              "rle_encode: RLE counts are 32-bit, the mask has ", mask.numel(), " pixels");
  Rle rle;
  rle.height = mask.size(0);
  rle.width = mask.size(1);
  // [W,H] row-major = [H,W] column-major (pycocotools encodes Fortran-order masks).
  auto columns = mask.detach().ne(0).to(at::kCPU, at::kByte).t().contiguous();
  const uint8_t* p = columns.data_ptr<uint8_t>();
  const int64_t n = columns.numel();
  uint8_t value = 0;
  uint32_t run = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] != value) {
      rle.counts.push_back(run);
      run = 0;
      value = p[i];
    }
    ++run;
  }
  rle.counts.push_back(run);
  return rle;
}

at::Tensor rle_decode(const Rle& rle) {
  check_counts_sum(rle, "rle_decode");
  auto columns = at::empty({rle.width, rle.height}, at::kByte);
  uint8_t* p = columns.data_ptr<uint8_t>();
  uint8_t value = 0;
  for (uint32_t c : rle.counts) {
    std::fill(p, p + c, value);
    p += c;
    value ^= 1;
  }
  return columns.t().contiguous();
}

std::string rle_to_string(const Rle& rle) {
  std::string s;
  s.reserve(rle.counts.size() * 2);
  for (size_t i = 0; i < rle.counts.size(); ++i) {
    int64_t x = rle.counts[i];
    if (i > 2) x -= static_cast<int64_t>(rle.counts[i - 2]);
    bool more = true;
    while (more) {
      int c = static_cast<int>(x & 0x1f);
      x >>= 5;  // arithmetic shift (GCC/Clang), as pycocotools relies on
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(static_cast<char>(c + 48));
    }
  }
  return s;
}

Rle rle_from_string(const std::string& counts, int64_t height, int64_t width) {
  Rle rle;
  rle.height = height;
  rle.width = width;
  size_t p = 0;
  while (p < counts.size()) {
    const size_t start = p;
    int64_t x = 0;
    int k = 0;
    bool more = true;
    while (more) {
      if (p >= counts.size()) {
        throw DataError("rle_from_string: counts string ends inside count " +
                        std::to_string(rle.counts.size()) + " (starting at character " +
                        std::to_string(start) + ")");
      }
      const int c = static_cast<unsigned char>(counts[p]) - 48;
      if (c < 0 || c > 63) {
        throw DataError("rle_from_string: invalid character '" + std::string(1, counts[p]) +
                        "' (code " + std::to_string(static_cast<unsigned char>(counts[p])) +
                        ") at position " + std::to_string(p) + ", expected '0'..'o'");
      }
      if (k >= 12) {
        throw DataError("rle_from_string: count " + std::to_string(rle.counts.size()) +
                        " starting at character " + std::to_string(start) + " is too long");
      }
      x |= static_cast<int64_t>(static_cast<uint64_t>(c & 0x1f) << (5 * k));
      more = (c & 0x20) != 0;
      ++p;
      ++k;
      if (!more && (c & 0x10)) x |= static_cast<int64_t>(~uint64_t{0} << (5 * k));
    }
    const size_t m = rle.counts.size();
    if (m > 2) x += static_cast<int64_t>(rle.counts[m - 2]);
    if (x < 0 || x > static_cast<int64_t>(std::numeric_limits<uint32_t>::max())) {
      throw DataError("rle_from_string: count " + std::to_string(m) + " (characters " +
                      std::to_string(start) + ".." + std::to_string(p - 1) + ") is " +
                      std::to_string(x) + ", outside [0, 2^32-1]");
    }
    rle.counts.push_back(static_cast<uint32_t>(x));
  }
  check_counts_sum(rle, "rle_from_string");
  return rle;
}

int64_t rle_area(const Rle& rle) {
  int64_t area = 0;
  for (size_t i = 1; i < rle.counts.size(); i += 2) area += rle.counts[i];
  return area;
}

at::Tensor polygons_to_mask(const std::vector<std::vector<double>>& polygons, int64_t height,
                            int64_t width) {
  TORCH_CHECK(height >= 0 && width >= 0, "polygons_to_mask: size must be non-negative, got ",
              height, "x", width);
  TORCH_CHECK(height <= kMaxRasterSize && width <= kMaxRasterSize,
              "polygons_to_mask: size must be at most ", kMaxRasterSize, " per side, got ", height,
              "x", width);
  std::vector<std::vector<cv::Point2d>> clipped;
  clipped.reserve(polygons.size());
  for (size_t i = 0; i < polygons.size(); ++i) {
    const auto& poly = polygons[i];
    if (poly.size() % 2 != 0) {
      throw DataError("polygons_to_mask: polygon " + std::to_string(i) + " has " +
                      std::to_string(poly.size()) + " coordinates, expected x,y pairs");
    }
    if (poly.size() < 6) {
      throw DataError("polygons_to_mask: polygon " + std::to_string(i) + " has " +
                      std::to_string(poly.size() / 2) + " points, a polygon needs at least 3");
    }
    std::vector<cv::Point2d> points;
    points.reserve(poly.size() / 2);
    for (size_t j = 0; j < poly.size(); j += 2) {
      const double x = poly[j], y = poly[j + 1];
      if (!std::isfinite(x) || !std::isfinite(y)) {
        throw DataError("polygons_to_mask: polygon " + std::to_string(i) + " point " +
                        std::to_string(j / 2) + " is (" + std::to_string(x) + ", " +
                        std::to_string(y) + "), expected finite coordinates");
      }
      points.emplace_back(x, y);
    }
    // OpenCV clips edges that leave the canvas with rounded end points (up to ~1.7 px off), so
    // clip exactly here to a window one pixel larger than the image, and draw on a canvas
    // padded enough that OpenCV never clips.
    points = clip_to_window(std::move(points), -1.0, -1.0, static_cast<double>(width) + 1.0,
                            static_cast<double>(height) + 1.0);
    if (points.size() >= 3) clipped.push_back(std::move(points));
  }
  constexpr int kPad = 2;
  constexpr int kShift = 8;  // fractional bits handed to cv::fillPoly
  constexpr double kScale = 1 << kShift;
  cv::Mat canvas = cv::Mat::zeros(static_cast<int>(height) + 2 * kPad,
                                  static_cast<int>(width) + 2 * kPad, CV_8UC1);
  // One call per polygon: a single call with all of them would apply the even-odd rule
  // across polygons, cutting their overlaps out instead of taking the union.
  for (const auto& points : clipped) {
    std::vector<cv::Point> fixed;
    fixed.reserve(points.size());
    for (const auto& p : points) {
      // COCO's continuous frame -> OpenCV's pixel-centre frame (-0.5), padded canvas, fixed point.
      fixed.emplace_back(static_cast<int>(std::lround((p.x - 0.5 + kPad) * kScale)),
                         static_cast<int>(std::lround((p.y - 0.5 + kPad) * kScale)));
    }
    cv::fillPoly(canvas, std::vector<std::vector<cv::Point>>{fixed}, cv::Scalar(1), cv::LINE_8,
                 kShift);
  }
  cv::Mat inner = canvas(cv::Rect(kPad, kPad, static_cast<int>(width), static_cast<int>(height)));
  auto t = at::empty({height, width}, at::kByte);
  if (t.numel() > 0) {
    cv::Mat wrapped(static_cast<int>(height), static_cast<int>(width), CV_8UC1, t.data_ptr<uint8_t>());
    inner.copyTo(wrapped);
  }
  return t;
}

at::Tensor connected_components(const at::Tensor& mask, int64_t* count, int connectivity) {
  TORCH_CHECK(mask.dim() == 2, "connected_components: mask should be [H,W], got ", mask.sizes());
  TORCH_CHECK(connectivity == 4 || connectivity == 8,
              "connected_components: connectivity should be 4 or 8, got ", connectivity);
  const int64_t height = mask.size(0), width = mask.size(1);
  if (height == 0 || width == 0) {
    if (count != nullptr) *count = 0;
    return at::zeros({height, width}, at::kInt);
  }
  cv::Mat binary = binary_mat(mask);
  cv::Mat labels;
  const int n = cv::connectedComponents(binary, labels, connectivity, CV_32S);
  // OpenCV's numbering depends on the algorithm and on threading; renumber by first pixel in
  // row-major order so the result is deterministic.
  std::vector<int32_t> renumber(static_cast<size_t>(n), 0);
  int32_t next = 1;
  auto out = at::empty({height, width}, at::kInt);
  int32_t* dst = out.data_ptr<int32_t>();
  for (int y = 0; y < labels.rows; ++y) {
    const int32_t* row = labels.ptr<int32_t>(y);
    for (int x = 0; x < labels.cols; ++x) {
      const int32_t l = row[x];
      if (l > 0 && renumber[static_cast<size_t>(l)] == 0) renumber[static_cast<size_t>(l)] = next++;
      *dst++ = l > 0 ? renumber[static_cast<size_t>(l)] : 0;
    }
  }
  if (count != nullptr) *count = n - 1;
  return out;
}

at::Tensor masks_to_boxes(const at::Tensor& masks) {
  TORCH_CHECK(masks.dim() == 3, "masks_to_boxes: masks should be [K,H,W], got ", masks.sizes());
  const int64_t k = masks.size(0), height = masks.size(1), width = masks.size(2);
  auto float_opts = masks.options().dtype(at::kFloat);
  if (k == 0 || height == 0 || width == 0) return at::zeros({k, 4}, float_opts);
  auto inside = masks.ne(0);
  auto cols = inside.any(1);  // [K,W]
  auto rows = inside.any(2);  // [K,H]
  auto long_opts = masks.options().dtype(at::kLong);
  auto xs = at::arange(width, long_opts).unsqueeze(0);
  auto ys = at::arange(height, long_opts).unsqueeze(0);
  auto x1 = at::where(cols, xs, at::full_like(xs, width)).amin(1);
  auto x2 = at::where(cols, xs + 1, at::zeros_like(xs)).amax(1);
  auto y1 = at::where(rows, ys, at::full_like(ys, height)).amin(1);
  auto y2 = at::where(rows, ys + 1, at::zeros_like(ys)).amax(1);
  auto boxes = at::stack({x1, y1, x2, y2}, 1).to(at::kFloat);
  auto empty = cols.any(1).logical_not().unsqueeze(1);
  return boxes.masked_fill_(empty, 0.0);
}

at::Tensor paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height,
                       int64_t width, int64_t padding) {
  TORCH_CHECK(masks.dim() == 3 || (masks.dim() == 4 && masks.size(1) == 1),
              "paste_masks: masks should be [K,M,M] or [K,1,M,M], got ", masks.sizes());
  const at::Tensor m = masks.dim() == 4 ? masks.squeeze(1) : masks;
  TORCH_CHECK(m.size(1) == m.size(2) && m.size(1) > 0,
              "paste_masks: masks should be square and non-empty, got ", masks.sizes());
  TORCH_CHECK(at::isFloatingType(m.scalar_type()), "paste_masks: masks should be floating point, got ",
              m.scalar_type());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "paste_masks: boxes should be [K,4], got ",
              boxes.sizes());
  TORCH_CHECK(boxes.size(0) == m.size(0), "paste_masks: ", m.size(0), " masks but ", boxes.size(0),
              " boxes");
  TORCH_CHECK(height >= 0 && width >= 0, "paste_masks: image size must be non-negative, got ",
              height, "x", width);
  TORCH_CHECK(padding >= 0, "paste_masks: padding must be non-negative, got ", padding);

  const int64_t k = m.size(0), size = m.size(-1);
  auto out = at::zeros({k, height, width}, m.options());
  if (k == 0) return out;

  // torchvision's expand_masks / expand_boxes, with the same tensor ops so the float rounding
  // before the truncation to integers is the same.
  const double scale = static_cast<double>(size + 2 * padding) / static_cast<double>(size);
  auto padded = at::constant_pad_nd(m.detach(), {padding, padding, padding, padding}, 0);
  auto b = boxes.detach().to(at::kCPU);
  auto w_half = (b.select(1, 2) - b.select(1, 0)) * 0.5;
  auto h_half = (b.select(1, 3) - b.select(1, 1)) * 0.5;
  auto x_c = (b.select(1, 2) + b.select(1, 0)) * 0.5;
  auto y_c = (b.select(1, 3) + b.select(1, 1)) * 0.5;
  w_half.mul_(scale);
  h_half.mul_(scale);
  auto expanded = at::zeros_like(b);
  expanded.select(1, 0).copy_(x_c - w_half);
  expanded.select(1, 2).copy_(x_c + w_half);
  expanded.select(1, 1).copy_(y_c - h_half);
  expanded.select(1, 3).copy_(y_c + h_half);
  auto ib = expanded.to(at::kLong).contiguous();
  auto acc = ib.accessor<int64_t, 2>();

  for (int64_t i = 0; i < k; ++i) {
    const int64_t bx0 = acc[i][0], by0 = acc[i][1], bx1 = acc[i][2], by1 = acc[i][3];
    const int64_t x0 = std::max<int64_t>(bx0, 0), x1 = std::min<int64_t>(bx1 + 1, width);
    const int64_t y0 = std::max<int64_t>(by0, 0), y1 = std::min<int64_t>(by1 + 1, height);
    if (x1 <= x0 || y1 <= y0) continue;  // wholly outside the image
    const int64_t w = std::max<int64_t>(bx1 - bx0 + 1, 1);
    const int64_t h = std::max<int64_t>(by1 - by0 + 1, 1);
    auto resized = at::upsample_bilinear2d(padded[i].unsqueeze(0).unsqueeze(0), {h, w},
                                           /*align_corners=*/false)[0][0];
    out[i].slice(0, y0, y1).slice(1, x0, x1).copy_(
        resized.slice(0, y0 - by0, y1 - by0).slice(1, x0 - bx0, x1 - bx0));
  }
  return out;
}

}  // namespace ostrov::ops
