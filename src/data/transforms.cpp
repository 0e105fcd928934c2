#include "ostrov/data/transforms.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/io/json.h"

namespace ostrov::data {

namespace {

// ---- portable random numbers from the engine's raw output -----------------------------------

double uniform01(std::mt19937_64& rng) {  // [0, 1), 53 random bits
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

double uniform(std::mt19937_64& rng, double lo, double hi) {
  return lo + (hi - lo) * uniform01(rng);
}

int64_t randint(std::mt19937_64& rng, int64_t n) {  // [0, n); modulo bias < n / 2^64
  const uint64_t r = rng();
  return n <= 1 ? 0 : static_cast<int64_t>(r % static_cast<uint64_t>(n));
}

bool coin(std::mt19937_64& rng, double p) { return uniform01(rng) < p; }

// ---- sample helpers --------------------------------------------------------------------------

std::string describe(const Sample& s) {
  std::string d = "sample " + std::to_string(s.image_id);
  if (!s.source.empty()) d += " (" + s.source + ")";
  return d;
}

// Keeps the objects where `keep` ([K] bool) is true: boxes, labels, instances, iscrowd.
void select_objects(Sample& s, const at::Tensor& keep) {
  const auto idx = keep.nonzero().squeeze(1);
  if (s.boxes.defined()) s.boxes = s.boxes.index_select(0, idx);
  if (s.labels.defined()) s.labels = s.labels.index_select(0, idx);
  if (s.instances.defined()) s.instances = s.instances.index_select(0, idx);
  if (s.iscrowd.defined()) s.iscrowd = s.iscrowd.index_select(0, idx);
}

std::vector<double> rgb_fill(const std::vector<double>& fill, const char* who) {
  TORCH_CHECK(fill.size() == 1 || fill.size() == 3, who,
              ": fill should have 1 or 3 values (RGB), got ", fill.size());
  return fill.size() == 1 ? std::vector<double>(3, fill[0]) : fill;
}

// Window [top, top+h) x [left, left+w) of the last two dims of t; parts outside t are filled
// with fill[0], or fill[c] for t[c] when fill has one value per leading index (RGB images).
at::Tensor window(const at::Tensor& t, int64_t top, int64_t left, int64_t h, int64_t w,
                  const std::vector<double>& fill) {
  const int64_t H = t.size(-2), W = t.size(-1);
  if (top >= 0 && left >= 0 && top + h <= H && left + w <= W) {
    return t.slice(-2, top, top + h).slice(-1, left, left + w);
  }
  auto sizes = t.sizes().vec();
  sizes[sizes.size() - 2] = h;
  sizes[sizes.size() - 1] = w;
  auto out = at::empty(sizes, t.options());
  if (fill.size() == 1) {
    out.fill_(fill[0]);
  } else {
    for (int64_t c = 0; c < out.size(0); ++c) out[c].fill_(fill[static_cast<size_t>(c)]);
  }
  const int64_t y0 = std::max<int64_t>(top, 0), y1 = std::min(top + h, H);
  const int64_t x0 = std::max<int64_t>(left, 0), x1 = std::min(left + w, W);
  if (y1 > y0 && x1 > x0) {
    out.slice(-2, y0 - top, y1 - top)
        .slice(-1, x0 - left, x1 - left)
        .copy_(t.slice(-2, y0, y1).slice(-1, x0, x1));
  }
  return out;
}

// Crops (or pads, where the window leaves the image) every spatial field and shifts boxes.
Sample crop_or_pad(Sample s, int64_t top, int64_t left, int64_t h, int64_t w,
                   const std::vector<double>& fill, int64_t mask_fill, const char* who) {
  TORCH_CHECK(h > 0 && w > 0, who, ": empty window ", h, "x", w);
  s.image = window(s.image, top, left, h, w, rgb_fill(fill, who));
  if (s.mask.defined()) s.mask = window(s.mask, top, left, h, w, {static_cast<double>(mask_fill)});
  if (s.instances.defined()) s.instances = window(s.instances, top, left, h, w, {0.0});
  if (s.boxes.defined() && s.boxes.size(0) > 0) {
    const auto shift = at::tensor({static_cast<double>(left), static_cast<double>(top),
                                   static_cast<double>(left), static_cast<double>(top)},
                                  s.boxes.options());
    s.boxes = s.boxes - shift;
  }
  return sanitize_boxes(std::move(s));
}

// Centre-aligned nearest-neighbour source indices: floor((j + 0.5) * in / out).
std::vector<int64_t> nearest_index(int64_t in, int64_t out) {
  std::vector<int64_t> index(static_cast<size_t>(out));
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t j = 0; j < out; ++j) {
    index[static_cast<size_t>(j)] =
        std::min(in - 1, static_cast<int64_t>(std::floor((static_cast<double>(j) + 0.5) * scale)));
  }
  return index;
}

template <typename T>
void gather_planes(const T* src, T* dst, int64_t planes, int64_t H, int64_t W,
                   const std::vector<int64_t>& ys, const std::vector<int64_t>& xs) {
  const auto h = static_cast<int64_t>(ys.size()), w = static_cast<int64_t>(xs.size());
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t y = 0; y < h; ++y) {
      const T* row = src + (p * H + ys[static_cast<size_t>(y)]) * W;
      T* out = dst + (p * h + y) * w;
      for (int64_t x = 0; x < w; ++x) out[x] = row[xs[static_cast<size_t>(x)]];
    }
  }
}

// Nearest-neighbour resize of the last two dims ([H,W] masks, [K,H,W] instances), with the
// same source pixels for every dtype. (index_select on uint8 is several times slower.)
at::Tensor resize_nearest(const at::Tensor& t, int64_t h, int64_t w) {
  const int64_t H = t.size(-2), W = t.size(-1);
  const auto ys = nearest_index(H, h), xs = nearest_index(W, w);
  if (!t.device().is_cpu()) {
    return t.index_select(-2, at::tensor(ys, t.options().dtype(at::kLong)))
        .index_select(-1, at::tensor(xs, t.options().dtype(at::kLong)));
  }
  auto sizes = t.sizes().vec();
  sizes[sizes.size() - 2] = h;
  sizes[sizes.size() - 1] = w;
  const auto src = t.contiguous();
  auto out = at::empty(sizes, t.options());
  const int64_t planes = H * W == 0 ? 0 : src.numel() / (H * W);
  AT_DISPATCH_ALL_TYPES_AND(at::kBool, t.scalar_type(), "resize_nearest", [&] {
    gather_planes<scalar_t>(src.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), planes, H, W, ys, xs);
  });
  return out;
}

Sample resize_sample(Sample s, int64_t h, int64_t w) {
  const int64_t H = s.image.size(1), W = s.image.size(2);
  if (H == h && W == w) return s;
  s.image = at::upsample_bilinear2d(s.image.unsqueeze(0), {h, w}, /*align_corners=*/false)
                .squeeze(0);
  if (s.mask.defined()) s.mask = resize_nearest(s.mask, h, w);
  if (s.instances.defined()) s.instances = resize_nearest(s.instances, h, w);
  if (s.boxes.defined() && s.boxes.size(0) > 0) {
    const double sx = static_cast<double>(w) / W, sy = static_cast<double>(h) / H;
    s.boxes = s.boxes * at::tensor({sx, sy, sx, sy}, s.boxes.options());
  }
  return sanitize_boxes(std::move(s));
}

// ---- colour helper ---------------------------------------------------------------------------

// Scales saturation and rotates hue of a [3,H,W] RGB image in [0,1] through OpenCV's float HSV
// (H in degrees [0,360), S and V in [0,1]).
at::Tensor adjust_hsv(const at::Tensor& image, bool do_saturation, double saturation, bool do_hue,
                      double hue_degrees) {
  auto hwc = image.to(at::kCPU, at::kFloat).permute({1, 2, 0}).contiguous();
  const int H = static_cast<int>(hwc.size(0)), W = static_cast<int>(hwc.size(1));
  const cv::Mat rgb(H, W, CV_32FC3, hwc.data_ptr<float>());
  cv::Mat hsv;
  cv::cvtColor(rgb, hsv, cv::COLOR_RGB2HSV);
  const auto sat = static_cast<float>(saturation);
  const auto shift = static_cast<float>(hue_degrees);
  for (int y = 0; y < H; ++y) {
    auto* p = hsv.ptr<float>(y);
    for (int x = 0; x < W; ++x, p += 3) {
      if (do_hue) {
        float h = p[0] + shift;
        if (h < 0.0f) h += 360.0f;
        if (h >= 360.0f) h -= 360.0f;
        p[0] = h;
      }
      if (do_saturation) p[1] = std::min(std::max(p[1] * sat, 0.0f), 1.0f);
    }
  }
  auto out = at::empty({H, W, 3}, at::kFloat);
  cv::Mat out_mat(H, W, CV_32FC3, out.data_ptr<float>());
  cv::cvtColor(hsv, out_mat, cv::COLOR_HSV2RGB);  // writes into `out` (same size and type)
  TORCH_CHECK(out_mat.data == out.data_ptr(), "adjust_hsv: OpenCV reallocated its output");
  return out.permute({2, 0, 1}).contiguous().to(image.device());
}

}  // namespace

// ---- checks and sanitising -------------------------------------------------------------------

void check_sample(const Sample& s, const std::string& who) {
  TORCH_CHECK(s.image.defined(), who, ": ", describe(s), " has no image");
  TORCH_CHECK(s.image.dim() == 3 && s.image.size(0) == 3, who, ": ", describe(s),
              ": image should be [3,H,W], got ", s.image.sizes());
  TORCH_CHECK(at::isFloatingType(s.image.scalar_type()), who, ": ", describe(s),
              ": image should be float, got ", s.image.scalar_type());
  const int64_t H = s.image.size(1), W = s.image.size(2);
  if (s.mask.defined()) {
    TORCH_CHECK(s.mask.dim() == 2 && s.mask.size(0) == H && s.mask.size(1) == W, who, ": ",
                describe(s), ": mask should be [", H, ",", W, "] like the image, got ",
                s.mask.sizes());
  }
  int64_t k = -1;
  const char* k_from = "";
  auto check_count = [&](const at::Tensor& t, const char* field) {
    if (k < 0) {
      k = t.size(0);
      k_from = field;
    }
    TORCH_CHECK(t.size(0) == k, who, ": ", describe(s), ": ", field, " has ", t.size(0),
                " objects but ", k_from, " has ", k);
  };
  if (s.boxes.defined()) {
    TORCH_CHECK(s.boxes.dim() == 2 && s.boxes.size(1) == 4, who, ": ", describe(s),
                ": boxes should be [K,4], got ", s.boxes.sizes());
    TORCH_CHECK(at::isFloatingType(s.boxes.scalar_type()), who, ": ", describe(s),
                ": boxes should be float, got ", s.boxes.scalar_type());
    check_count(s.boxes, "boxes");
  }
  if (s.instances.defined()) {
    TORCH_CHECK(s.instances.dim() == 3 && s.instances.size(1) == H && s.instances.size(2) == W,
                who, ": ", describe(s), ": instances should be [K,", H, ",", W,
                "] like the image, got ", s.instances.sizes());
    check_count(s.instances, "instances");
  }
  if (s.labels.defined()) {
    TORCH_CHECK(s.labels.dim() == 1, who, ": ", describe(s), ": labels should be [K], got ",
                s.labels.sizes());
    check_count(s.labels, "labels");
  }
  if (s.iscrowd.defined()) {
    TORCH_CHECK(s.iscrowd.dim() == 1, who, ": ", describe(s), ": iscrowd should be [K], got ",
                s.iscrowd.sizes());
    check_count(s.iscrowd, "iscrowd");
  }
}

Sample sanitize_boxes(Sample s, double min_size) {
  if (!s.boxes.defined() || s.boxes.size(0) == 0) return s;
  const double H = static_cast<double>(s.image.size(1));
  const double W = static_cast<double>(s.image.size(2));
  const auto x1 = s.boxes.select(1, 0).clamp(0.0, W);
  const auto y1 = s.boxes.select(1, 1).clamp(0.0, H);
  const auto x2 = s.boxes.select(1, 2).clamp(0.0, W);
  const auto y2 = s.boxes.select(1, 3).clamp(0.0, H);
  s.boxes = at::stack({x1, y1, x2, y2}, 1);
  const auto keep = ((x2 - x1) >= min_size) & ((y2 - y1) >= min_size);
  if (!keep.all().item<bool>()) select_objects(s, keep);
  return s;
}

// ---- transforms ----------------------------------------------------------------------------

Compose::Compose(std::vector<std::shared_ptr<const Transform>> transforms)
    : transforms_(std::move(transforms)) {
  for (size_t i = 0; i < transforms_.size(); ++i) {
    TORCH_CHECK(transforms_[i] != nullptr, "Compose: transform ", i, " is null");
  }
}

Sample Compose::operator()(Sample sample, std::mt19937_64& rng) const {
  for (const auto& t : transforms_) sample = (*t)(std::move(sample), rng);
  return sample;
}

Resize::Resize(int64_t height, int64_t width) : height_(height), width_(width) {
  TORCH_CHECK(height > 0 && width > 0, "Resize: size must be positive, got ", height, "x", width);
}

Sample Resize::operator()(Sample sample, std::mt19937_64& /*rng*/) const {
  check_sample(sample, name());
  return resize_sample(std::move(sample), height_, width_);
}

RandomScaleCrop::RandomScaleCrop(double min_scale, double max_scale, int64_t crop_height,
                                 int64_t crop_width, std::vector<double> fill, int64_t mask_fill)
    : min_scale_(min_scale),
      max_scale_(max_scale),
      crop_height_(crop_height),
      crop_width_(crop_width),
      fill_(std::move(fill)),
      mask_fill_(mask_fill) {
  TORCH_CHECK(min_scale > 0 && min_scale <= max_scale,
              "RandomScaleCrop: need 0 < min_scale <= max_scale, got [", min_scale, ", ",
              max_scale, "]");
  TORCH_CHECK(crop_height > 0 && crop_width > 0, "RandomScaleCrop: crop size must be positive, got ",
              crop_height, "x", crop_width);
  rgb_fill(fill_, "RandomScaleCrop");
}

Sample RandomScaleCrop::operator()(Sample sample, std::mt19937_64& rng) const {
  check_sample(sample, name());
  const double scale = uniform(rng, min_scale_, max_scale_);
  const int64_t h = std::max<int64_t>(1, std::llround(sample.image.size(1) * scale));
  const int64_t w = std::max<int64_t>(1, std::llround(sample.image.size(2) * scale));
  sample = resize_sample(std::move(sample), h, w);
  const int64_t top = randint(rng, std::max<int64_t>(h - crop_height_, 0) + 1);
  const int64_t left = randint(rng, std::max<int64_t>(w - crop_width_, 0) + 1);
  return crop_or_pad(std::move(sample), top, left, crop_height_, crop_width_, fill_, mask_fill_,
                     "RandomScaleCrop");
}

SSDRandomCrop::SSDRandomCrop(std::vector<double> min_ious, double min_scale, double max_scale,
                             double min_aspect, double max_aspect, int64_t trials)
    : min_ious_(std::move(min_ious)),
      min_scale_(min_scale),
      max_scale_(max_scale),
      min_aspect_(min_aspect),
      max_aspect_(max_aspect),
      trials_(trials) {
  TORCH_CHECK(!min_ious_.empty(), "SSDRandomCrop: min_ious is empty");
  TORCH_CHECK(min_scale > 0 && min_scale <= max_scale && max_scale <= 1.0,
              "SSDRandomCrop: need 0 < min_scale <= max_scale <= 1, got [", min_scale, ", ",
              max_scale, "]");
  TORCH_CHECK(min_aspect > 0 && min_aspect <= max_aspect,
              "SSDRandomCrop: need 0 < min_aspect <= max_aspect, got [", min_aspect, ", ",
              max_aspect, "]");
  TORCH_CHECK(trials > 0, "SSDRandomCrop: trials must be positive, got ", trials);
}

Sample SSDRandomCrop::operator()(Sample sample, std::mt19937_64& rng) const {
  check_sample(sample, name());
  const int64_t H = sample.image.size(1), W = sample.image.size(2);
  // The search runs on plain numbers: it tries up to thousands of crops.
  std::vector<double> boxes;
  if (sample.boxes.defined() && sample.boxes.size(0) > 0) {
    const auto b = sample.boxes.to(at::kCPU, at::kDouble).contiguous();
    boxes.assign(b.data_ptr<double>(), b.data_ptr<double>() + b.numel());
  }
  const auto K = static_cast<int64_t>(boxes.size() / 4);
  std::vector<uint8_t> inside(static_cast<size_t>(K));
  for (int attempt = 0; attempt < 100; ++attempt) {
    const double min_iou = min_ious_[randint(rng, static_cast<int64_t>(min_ious_.size()))];
    if (min_iou >= 1.0) return sample;
    for (int64_t trial = 0; trial < trials_; ++trial) {
      const int64_t w = static_cast<int64_t>(W * uniform(rng, min_scale_, max_scale_));
      const int64_t h = static_cast<int64_t>(H * uniform(rng, min_scale_, max_scale_));
      const int64_t left = static_cast<int64_t>((W - w) * uniform01(rng));
      const int64_t top = static_cast<int64_t>((H - h) * uniform01(rng));
      if (w <= 0 || h <= 0) continue;
      const double aspect = static_cast<double>(w) / static_cast<double>(h);
      if (aspect < min_aspect_ || aspect > max_aspect_) continue;
      if (K == 0) {
        return crop_or_pad(std::move(sample), top, left, h, w, {0.0}, 255, "SSDRandomCrop");
      }
      const double x0 = static_cast<double>(left), y0 = static_cast<double>(top);
      const double x1 = static_cast<double>(left + w), y1 = static_cast<double>(top + h);
      bool any = false;
      double best_iou = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double* b = &boxes[static_cast<size_t>(4 * k)];
        const double cx = 0.5 * (b[0] + b[2]), cy = 0.5 * (b[1] + b[3]);
        inside[static_cast<size_t>(k)] = cx > x0 && cx < x1 && cy > y0 && cy < y1;
        if (!inside[static_cast<size_t>(k)]) continue;
        any = true;
        const double iw = std::max(0.0, std::min(b[2], x1) - std::max(b[0], x0));
        const double ih = std::max(0.0, std::min(b[3], y1) - std::max(b[1], y0));
        const double inter = iw * ih;
        const double area = (b[2] - b[0]) * (b[3] - b[1]);
        best_iou = std::max(best_iou, inter / (area + static_cast<double>(w * h) - inter));
      }
      if (!any || best_iou < min_iou) continue;
      select_objects(sample, at::tensor(std::vector<uint8_t>(inside), at::kByte)
                                 .to(at::kBool).to(sample.boxes.device()));
      return crop_or_pad(std::move(sample), top, left, h, w, {0.0}, 255, "SSDRandomCrop");
    }
  }
  return sample;
}

HorizontalFlip::HorizontalFlip(double p) : p_(p) {
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "HorizontalFlip: p must be in [0,1], got ", p);
}

Sample HorizontalFlip::operator()(Sample sample, std::mt19937_64& rng) const {
  check_sample(sample, name());
  if (!coin(rng, p_)) return sample;
  const double W = static_cast<double>(sample.image.size(2));
  sample.image = sample.image.flip({2});
  if (sample.mask.defined()) sample.mask = sample.mask.flip({1});
  if (sample.instances.defined()) sample.instances = sample.instances.flip({2});
  if (sample.boxes.defined() && sample.boxes.size(0) > 0) {
    const auto& b = sample.boxes;
    sample.boxes = at::stack({W - b.select(1, 2), b.select(1, 1), W - b.select(1, 0), b.select(1, 3)}, 1);
  }
  return sample;
}

PhotometricDistort::PhotometricDistort(double p, double brightness,
                                       std::pair<double, double> contrast,
                                       std::pair<double, double> saturation, double hue)
    : p_(p), brightness_(brightness), contrast_(contrast), saturation_(saturation), hue_(hue) {
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "PhotometricDistort: p must be in [0,1], got ", p);
  TORCH_CHECK(brightness >= 0.0, "PhotometricDistort: brightness must be >= 0, got ", brightness);
  TORCH_CHECK(contrast.first >= 0.0 && contrast.first <= contrast.second,
              "PhotometricDistort: contrast should be [lo,hi] with 0 <= lo <= hi, got [",
              contrast.first, ", ", contrast.second, "]");
  TORCH_CHECK(saturation.first >= 0.0 && saturation.first <= saturation.second,
              "PhotometricDistort: saturation should be [lo,hi] with 0 <= lo <= hi, got [",
              saturation.first, ", ", saturation.second, "]");
  TORCH_CHECK(hue >= 0.0 && hue <= 180.0, "PhotometricDistort: hue must be in [0,180] degrees, got ",
              hue);
}

Sample PhotometricDistort::operator()(Sample sample, std::mt19937_64& rng) const {
  check_sample(sample, name());
  at::Tensor img = sample.image;
  if (coin(rng, p_)) img = (img + uniform(rng, -brightness_, brightness_)).clamp(0.0, 1.0);
  const bool contrast_first = coin(rng, 0.5);
  auto contrast = [&] {
    if (coin(rng, p_)) img = (img * uniform(rng, contrast_.first, contrast_.second)).clamp(0.0, 1.0);
  };
  if (contrast_first) contrast();
  const bool do_saturation = coin(rng, p_);
  const double saturation = uniform(rng, saturation_.first, saturation_.second);
  const bool do_hue = coin(rng, p_);
  const double hue = uniform(rng, -hue_, hue_);
  if (do_saturation || do_hue) img = adjust_hsv(img, do_saturation, saturation, do_hue, hue);
  if (!contrast_first) contrast();
  if (coin(rng, p_)) {
    static const int64_t kPerms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                         {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    const auto* perm = kPerms[randint(rng, 6)];
    img = img.index_select(0, at::tensor({perm[0], perm[1], perm[2]}, at::kLong).to(img.device()));
  }
  sample.image = img.to(sample.image.scalar_type());
  return sample;
}

Expand::Expand(double max_ratio, double p, std::vector<double> fill, int64_t mask_fill)
    : max_ratio_(max_ratio), p_(p), fill_(std::move(fill)), mask_fill_(mask_fill) {
  TORCH_CHECK(max_ratio >= 1.0, "Expand: max_ratio must be >= 1, got ", max_ratio);
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "Expand: p must be in [0,1], got ", p);
  rgb_fill(fill_, "Expand");
}

Sample Expand::operator()(Sample sample, std::mt19937_64& rng) const {
  check_sample(sample, name());
  if (!coin(rng, p_)) return sample;
  const int64_t H = sample.image.size(1), W = sample.image.size(2);
  const double ratio = uniform(rng, 1.0, max_ratio_);
  const int64_t h = std::max(H, static_cast<int64_t>(H * ratio));
  const int64_t w = std::max(W, static_cast<int64_t>(W * ratio));
  const int64_t left = static_cast<int64_t>(uniform(rng, 0.0, static_cast<double>(w - W)));
  const int64_t top = static_cast<int64_t>(uniform(rng, 0.0, static_cast<double>(h - H)));
  return crop_or_pad(std::move(sample), -top, -left, h, w, fill_, mask_fill_, "Expand");
}

PadToMultiple::PadToMultiple(int64_t multiple, std::vector<double> fill, int64_t mask_fill)
    : multiple_(multiple), fill_(std::move(fill)), mask_fill_(mask_fill) {
  TORCH_CHECK(multiple > 0, "PadToMultiple: multiple must be positive, got ", multiple);
  rgb_fill(fill_, "PadToMultiple");
}

Sample PadToMultiple::operator()(Sample sample, std::mt19937_64& /*rng*/) const {
  check_sample(sample, name());
  const int64_t H = sample.image.size(1), W = sample.image.size(2);
  const int64_t h = (H + multiple_ - 1) / multiple_ * multiple_;
  const int64_t w = (W + multiple_ - 1) / multiple_ * multiple_;
  if (h == H && w == W) return sample;
  return crop_or_pad(std::move(sample), 0, 0, h, w, fill_, mask_fill_, "PadToMultiple");
}

Normalize::Normalize(std::vector<double> mean, std::vector<double> std)
    : mean_(std::move(mean)), std_(std::move(std)) {
  TORCH_CHECK(mean_.size() == 3, "Normalize: mean should have 3 values (RGB), got ", mean_.size());
  TORCH_CHECK(std_.size() == 3, "Normalize: std should have 3 values (RGB), got ", std_.size());
  for (double s : std_) TORCH_CHECK(s > 0.0, "Normalize: std must be positive, got ", s);
}

Sample Normalize::operator()(Sample sample, std::mt19937_64& /*rng*/) const {
  check_sample(sample, name());
  sample.image = core::normalize(sample.image, mean_, std_);
  return sample;
}

// ---- JSON builder ---------------------------------------------------------------------------

namespace {

using io::ConfigReader;
using io::Json;

[[noreturn]] void bad_value(const ConfigReader& r, const std::string& key, const std::string& expected,
                            const Json& got) {
  throw ConfigError(r.where() + ": key " + r.path_of(key) + " must be " + expected + ", got " +
                    got.dump());
}

std::vector<double> read_numbers(ConfigReader& r, const std::string& key, size_t n,
                                 std::vector<double> fallback) {
  const Json& v = r.raw(key);
  if (v.is_null()) return fallback;
  if (!v.is_array() || v.size() != n) {
    bad_value(r, key, "a list of " + std::to_string(n) + " numbers", v);
  }
  std::vector<double> out;
  for (const auto& x : v) {
    if (!x.is_number()) bad_value(r, key, "a list of " + std::to_string(n) + " numbers", v);
    out.push_back(x.get<double>());
  }
  return out;
}

std::pair<int64_t, int64_t> read_size(ConfigReader& r, const std::string& key) {
  if (!r.has(key)) throw ConfigError(r.where() + ": missing required key " + r.path_of(key));
  const Json& v = r.raw(key);
  if (!v.is_array() || v.size() != 2 || !v[0].is_number_integer() || !v[1].is_number_integer() ||
      v[0].get<int64_t>() <= 0 || v[1].get<int64_t>() <= 0) {
    bad_value(r, key, "[H, W] with positive integers", v);
  }
  return {v[0].get<int64_t>(), v[1].get<int64_t>()};
}

std::pair<double, double> read_range(ConfigReader& r, const std::string& key,
                                     std::pair<double, double> fallback) {
  const Json& v = r.raw(key);
  if (v.is_null()) return fallback;
  if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number() ||
      v[0].get<double>() > v[1].get<double>()) {
    bad_value(r, key, "[lo, hi] with lo <= hi", v);
  }
  return {v[0].get<double>(), v[1].get<double>()};
}

std::vector<double> read_fill(ConfigReader& r, const std::string& key, std::vector<double> fallback) {
  const Json& v = r.raw(key);
  if (v.is_null()) return fallback;
  if (v.is_number()) return {v.get<double>()};
  return read_numbers(r, key, 3, fallback);
}

std::vector<double> read_min_ious(ConfigReader& r, const std::string& key,
                                  std::vector<double> fallback) {
  const Json& v = r.raw(key);
  if (v.is_null()) return fallback;
  if (!v.is_array() || v.empty()) bad_value(r, key, "a non-empty list of numbers or nulls", v);
  std::vector<double> out;
  for (const auto& x : v) {
    if (x.is_null()) {
      out.push_back(1.0);  // "no crop", as ssd.pytorch's None
    } else if (x.is_number()) {
      out.push_back(x.get<double>());
    } else {
      bad_value(r, key, "a non-empty list of numbers or nulls", v);
    }
  }
  return out;
}

const char* const kTransformNames =
    "resize, random_scale_crop, ssd_random_crop, horizontal_flip, photometric_distort, expand, "
    "pad_to_multiple, normalize";

std::shared_ptr<Transform> build_one(ConfigReader& r, const std::string& name) {
  if (name == "resize") {
    const auto size = read_size(r, "size");
    return std::make_shared<Resize>(size.first, size.second);
  }
  if (name == "random_scale_crop") {
    const auto size = read_size(r, "size");
    const auto scale = read_range(r, "scale", {0.5, 2.0});
    const auto fill = read_fill(r, "fill", {0.0});
    const auto mask_fill = r.get<int64_t>("mask_fill", 255);
    return std::make_shared<RandomScaleCrop>(scale.first, scale.second, size.first, size.second,
                                             fill, mask_fill);
  }
  if (name == "ssd_random_crop") {
    const auto min_ious = read_min_ious(r, "min_ious", {0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0});
    const double min_scale = r.get<double>("min_scale", 0.3);
    const double max_scale = r.get<double>("max_scale", 1.0);
    const double min_aspect = r.get<double>("min_aspect", 0.5);
    const double max_aspect = r.get<double>("max_aspect", 2.0);
    const int64_t trials = r.get<int64_t>("trials", 40);
    return std::make_shared<SSDRandomCrop>(min_ious, min_scale, max_scale, min_aspect,
                                           max_aspect, trials);
  }
  if (name == "horizontal_flip") {
    return std::make_shared<HorizontalFlip>(r.get<double>("p", 0.5));
  }
  if (name == "photometric_distort") {
    const double p = r.get<double>("p", 0.5);
    const double brightness = r.get<double>("brightness", 32.0 / 255.0);
    const auto contrast = read_range(r, "contrast", {0.5, 1.5});
    const auto saturation = read_range(r, "saturation", {0.5, 1.5});
    const double hue = r.get<double>("hue", 18.0);
    return std::make_shared<PhotometricDistort>(p, brightness, contrast, saturation, hue);
  }
  if (name == "expand") {
    const double max_ratio = r.get<double>("max_ratio", 4.0);
    const double p = r.get<double>("p", 0.5);
    const auto fill = read_fill(r, "fill", {0.485, 0.456, 0.406});
    const auto mask_fill = r.get<int64_t>("mask_fill", 255);
    return std::make_shared<Expand>(max_ratio, p, fill, mask_fill);
  }
  if (name == "pad_to_multiple") {
    const auto multiple = r.required<int64_t>("multiple");
    const auto fill = read_fill(r, "fill", {0.0});
    const auto mask_fill = r.get<int64_t>("mask_fill", 255);
    return std::make_shared<PadToMultiple>(multiple, fill, mask_fill);
  }
  if (name == "normalize") {
    const auto mean = read_numbers(r, "mean", 3, {0.485, 0.456, 0.406});
    const auto std = read_numbers(r, "std", 3, {0.229, 0.224, 0.225});
    return std::make_shared<Normalize>(mean, std);
  }
  throw ConfigError(r.where() + ": " + r.path_of("name") + ": unknown transform '" + name +
                    "' (known: " + kTransformNames + ")");
}

}  // namespace

std::shared_ptr<Transform> build_transforms(const nlohmann::json& list, const std::string& where,
                                            const std::string& prefix) {
  std::vector<std::shared_ptr<const Transform>> transforms;
  if (list.is_null()) return std::make_shared<Compose>(std::move(transforms));
  if (!list.is_array()) {
    throw ConfigError(where + ": " + prefix + " must be a list of transforms, got " +
                      list.type_name());
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = prefix + "[" + std::to_string(i) + "]";
    const Json& item = list[i];
    if (!item.is_object()) {
      throw ConfigError(where + ": " + path + " must be an object with a \"name\", got " +
                        item.dump());
    }
    ConfigReader r(item, where, path);
    const auto name = r.required<std::string>("name");
    std::shared_ptr<Transform> t;
    try {
      t = build_one(r, name);
    } catch (const c10::Error& e) {  // a constructor's range check
      throw ConfigError(where + ": " + path + " (" + name + "): " + e.what_without_backtrace());
    }
    r.finish();
    transforms.push_back(std::move(t));
  }
  return std::make_shared<Compose>(std::move(transforms));
}

}  // namespace ostrov::data
