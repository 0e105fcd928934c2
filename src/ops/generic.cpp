#include "ostrov/ops/generic.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>

#include "input_checks.h"

// The arithmetic here mirrors the CPU kernels in nms.cpp and roi_align.cpp (themselves
// torchvision's, operation for operation) with one ATen operation per step: elementwise IEEE
// operations give the same results on every device, so these agree with the CPU kernels.
// Two things are avoided on purpose: dividing by a plain Scalar (CUDA turns `tensor / scalar`
// into a multiplication by the reciprocal, one rounding off), and clamp/maximum where
// torchvision uses std::max or a comparison (they differ on NaN and signed zeros).

namespace ostrov::ops::generic {

namespace {

// Elements of the IoU matrix computed at a time, in whole rows: the [rows, N] temporaries (about
// a dozen) stay near this size whatever N is.
constexpr int64_t kBlockElements = int64_t{1} << 22;

void check_no_nan(const at::Tensor& scores) {
  const auto nan = at::isnan(scores);
  if (!nan.any().item<bool>()) return;
  const int64_t first = nan.nonzero()[0][0].item<int64_t>();  // nonzero lists in index order
  TORCH_CHECK(false, "nms: scores should not be NaN, got NaN at index ", first);
}

// torchvision suppresses when `iou > iou_threshold` with the IoU in T promoted to double. ATen
// would compare a T tensor with the threshold rounded to T, which is not the same test; as the
// CPU kernel does, test `iou >= the smallest T above the threshold` instead, a T value that
// the comparison represents exactly. Returns false when nothing can be suppressed (+inf, NaN).
template <typename T>
bool suppression_limit(double threshold, double* limit) {
  if (!(threshold < std::numeric_limits<double>::infinity())) return false;
  T value = static_cast<T>(threshold);
  if (static_cast<double>(value) <= threshold) {
    value = std::nextafter(value, std::numeric_limits<T>::infinity());
  }
  *limit = static_cast<double>(value);
  return true;
}

// std::max(a, b) and std::min(a, b) as torchvision writes them (a: the kept box, b: the
// candidate): (a < b) ? b : a and (b < a) ? b : a, so a NaN picks the same operand.
at::Tensor std_max(const at::Tensor& a, const at::Tensor& b) { return at::where(a < b, b, a); }
at::Tensor std_min(const at::Tensor& a, const at::Tensor& b) { return at::where(b < a, b, a); }

// [n, ceil(n / 8)] uint8 on the boxes' device: bit j % 8 of byte j / 8 in row i is set when
// sorted box i overlaps the later sorted box j with IoU above the threshold.
at::Tensor suppression_mask(const at::Tensor& sorted, double limit) {
  const int64_t n = sorted.size(0);
  const int64_t words = (n + 7) / 8;
  const auto x1 = sorted.select(1, 0);
  const auto y1 = sorted.select(1, 1);
  const auto x2 = sorted.select(1, 2);
  const auto y2 = sorted.select(1, 3);
  const auto area = (x2 - x1) * (y2 - y1);
  const auto long_options = sorted.options().dtype(at::kLong);
  const auto column = at::arange(n, long_options).unsqueeze(0);
  auto mask = at::empty({n, words}, sorted.options().dtype(at::kByte));
  const int64_t block = std::max<int64_t>(1, kBlockElements / n);
  for (int64_t r0 = 0; r0 < n; r0 += block) {
    const int64_t rows = std::min(block, n - r0);
    const auto row = [&](const at::Tensor& c) { return c.narrow(0, r0, rows).unsqueeze(1); };
    const auto col = [](const at::Tensor& c) { return c.unsqueeze(0); };
    const auto dw = std_min(row(x2), col(x2)) - std_max(row(x1), col(x1));
    const auto dh = std_min(row(y2), col(y2)) - std_max(row(y1), col(y1));
    // std::max(0, d): a NaN or -0 difference gives +0, as in torchvision.
    const auto inter = at::where(dw > 0, dw, 0.0) * at::where(dh > 0, dh, 0.0);
    const auto iou = inter / ((row(area) + col(area)) - inter);
    // Only later boxes: a box never suppresses itself or the boxes visited before it.
    const auto later = column > at::arange(r0, r0 + rows, long_options).unsqueeze(1);
    const auto hit = iou.ge(limit).logical_and_(later);
    // Eight columns to a byte: a weighted sum of disjoint bits, in uint8 throughout.
    auto bits = at::zeros({rows, words * 8}, mask.options());
    bits.narrow(1, 0, n).copy_(hit);
    const auto lanes = bits.view({rows, words, 8});
    auto packed = lanes.select(2, 0).clone();
    for (int64_t k = 1; k < 8; ++k) packed.add_(lanes.select(2, k) * (int64_t{1} << k));
    mask.narrow(0, r0, rows).copy_(packed);
  }
  return mask;
}

void check_batch_indices(const at::Tensor& rois, int64_t batch) {
  const auto b = rois.select(1, 0);
  // Written as the CPU kernel's `b >= 0 && b < batch`, so that a NaN index is rejected too.
  const auto bad = b.ge(0).logical_and_(b.lt(batch)).logical_not_();
  if (!bad.any().item<bool>()) return;
  const int64_t k = bad.nonzero()[0][0].item<int64_t>();
  TORCH_CHECK(false, "roi_align: rois[", k, "] has batch index ", b[k].item<double>(),
              ", expected one in [0, ", batch, ")");
}

// Output of a region set with nothing to sample, still connected to input when input needs a
// gradient (which is then zero), as the CPU kernel's autograd function is.
at::Tensor connect_to_input(const at::Tensor& output, const at::Tensor& input) {
  if (!input.requires_grad() || output.requires_grad()) return output;
  return output + input.flatten().narrow(0, 0, 0).sum();  // an empty sum: exactly 0
}

// The sample coordinates of grid index i along one axis (y or x) for every region and bin,
// reduced to what the bilinear interpolation needs, as torchvision's pre-calculation: [K, P].
struct AxisSamples {
  at::Tensor inside;     // bool: the point is within [-1, size]; outside points contribute 0
  at::Tensor low, high;  // int64 pixel indices of the two neighbours
  at::Tensor l, h;       // their weights: l for high, h = 1 - l for low
};

AxisSamples axis_samples(const at::Tensor& start, const at::Tensor& bin, const at::Tensor& grid,
                         int64_t i, int64_t pooled, int64_t size) {
  const auto type = start.scalar_type();
  const auto bins = at::arange(pooled, start.options());
  // start + p * bin + (i + .5) * bin / grid, grouped as the kernel's expression is.
  auto c = (start.unsqueeze(1) + bins * bin.unsqueeze(1)) +
           (bin * (static_cast<double>(i) + 0.5) / grid).unsqueeze(1);
  AxisSamples s;
  // Written as the kernel's negation of `c < -1 || c > size`: a NaN point is outside.
  s.inside = c.ge(-1.0).logical_and_(c.le(size));
  // c <= 0 becomes 0; outside points get 0 too, only so that their indices stay in range.
  c = at::where(s.inside.logical_and(c > 0), c, 0.0);
  auto low = c.to(at::kLong);  // truncation of a value >= 0, as the kernel's (int) cast
  const auto at_end = low >= size - 1;
  low = at::where(at_end, size - 1, low);
  s.high = at::where(at_end, low, low + 1);
  c = at::where(at_end, low.to(type), c);
  s.l = c - low.to(type);
  s.h = 1 - s.l;
  s.low = low;
  return s;
}

// ceil(v) as an integer, with no sample points where v is NaN or infinite (the CPU kernel's
// integer conversion of an infinity is undefined; x86 gives a negative count, hence none).
at::Tensor adaptive_grid(const at::Tensor& v) {
  const auto c = at::ceil(v);
  return at::where(at::isfinite(c), c, 0.0).to(at::kLong);
}

}  // namespace

at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  detail::check_nms_inputs(boxes, scores, "nms");
  const auto long_options = boxes.options().dtype(at::kLong);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, long_options);
  check_no_nan(scores);
  // Stable, as torchvision 0.14's kernel: among equal scores the lower index is visited first.
  const auto order =
      std::get<1>(scores.detach().sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  double limit = 0.0;
  const bool can_suppress = boxes.scalar_type() == at::kFloat
                                ? suppression_limit<float>(iou_threshold, &limit)
                                : suppression_limit<double>(iou_threshold, &limit);
  if (!can_suppress) return order;
  const auto mask = suppression_mask(boxes.detach().index_select(0, order), limit);

  // The greedy pass is inherently sequential (whether box i is kept depends on every kept box
  // before it), so as torchvision's CUDA kernel it runs on the host, over one copy of the
  // bitmask: the only device-to-host transfer, and a synchronisation with the device.
  const auto host = mask.cpu().contiguous();
  const uint8_t* bits = host.data_ptr<uint8_t>();
  const int64_t words = host.size(1);
  std::vector<uint8_t> removed(static_cast<size_t>(words), 0);
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < n; ++i) {
    if (((removed[i >> 3] >> (i & 7)) & 1) != 0) continue;
    kept.push_back(i);
    const uint8_t* row = bits + i * words;
    for (int64_t w = i >> 3; w < words; ++w) removed[w] |= row[w];
  }
  return order.index_select(0, at::tensor(kept, long_options));
}

at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                       double iou_threshold) {
  detail::check_nms_inputs(boxes, scores, "batched_nms");
  detail::check_batched_nms_idxs(boxes, idxs);
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  // torchvision's _batched_nms_coordinate_trick: boxes of different categories are moved
  // apart by more than the largest coordinate, so they cannot overlap.
  const auto b = boxes.detach();
  const auto offsets = idxs.to(b.options()) * (b.max() + 1);
  return generic::nms(b + offsets.unsqueeze(1), scores, iou_threshold);
}

at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois,
                     std::array<int64_t, 2> output_size, double spatial_scale,
                     int64_t sampling_ratio, bool aligned) {
  const int64_t pooled_h = output_size[0];
  const int64_t pooled_w = output_size[1];
  detail::check_roi_align_inputs(input, rois, pooled_h, pooled_w);
  const int64_t batches = input.size(0);
  const int64_t channels = input.size(1);
  const int64_t height = input.size(2);
  const int64_t width = input.size(3);
  const int64_t regions = rois.size(0);
  const auto type = input.scalar_type();
  const auto options = input.options();
  if (regions == 0 || channels == 0) {
    return connect_to_input(at::zeros({regions, channels, pooled_h, pooled_w}, options), input);
  }
  // rois get no gradient, as torchvision's.
  const auto r = rois.detach();
  check_batch_indices(r, batches);

  // Region geometry, per region: [K].
  const double scale = type == at::kFloat
                           ? static_cast<double>(static_cast<float>(spatial_scale))
                           : spatial_scale;  // rounded to the dtype, as torchvision
  const double offset = aligned ? 0.5 : 0.0;
  const auto start_w = r.select(1, 1) * scale - offset;
  const auto start_h = r.select(1, 2) * scale - offset;
  auto roi_w = (r.select(1, 3) * scale - offset) - start_w;
  auto roi_h = (r.select(1, 4) * scale - offset) - start_h;
  if (!aligned) {  // legacy: regions become at least 1x1 (std::max(roi, 1), NaN kept)
    roi_w = at::where(roi_w < 1, 1.0, roi_w);
    roi_h = at::where(roi_h < 1, 1.0, roi_h);
  }
  const auto bin_h = roi_h / at::scalar_tensor(pooled_h, options);
  const auto bin_w = roi_w / at::scalar_tensor(pooled_w, options);
  at::Tensor grid_h, grid_w;  // int64 sample points per bin along y and x
  int64_t max_h = sampling_ratio, max_w = sampling_ratio;
  const bool adaptive = sampling_ratio <= 0;
  if (adaptive) {  // ceil(roi / pooled): each region has its own grid
    grid_h = adaptive_grid(bin_h);
    grid_w = adaptive_grid(bin_w);
    const auto largest = at::stack({grid_h.max(), grid_w.max()}).cpu();
    max_h = largest[0].item<int64_t>();
    max_w = largest[1].item<int64_t>();
  } else {
    grid_h = grid_w = at::full({regions}, sampling_ratio, options.dtype(at::kLong));
  }
  const auto count = (grid_h * grid_w).clamp_min(1).to(type).view({regions, 1, 1, 1});

  // Channels last, so that one gathered row holds a pixel's C values: rows b * H * W + y * W + x.
  const auto pixels = input.permute({0, 2, 3, 1}).reshape({batches * height * width, channels});
  const auto base = (r.select(1, 0).to(at::kLong) * (height * width)).view({regions, 1, 1});

  std::vector<AxisSamples> xs;
  const auto grid_w_t = grid_w.to(type);
  for (int64_t ix = 0; ix < max_w; ++ix) {
    xs.push_back(axis_samples(start_w, bin_w, grid_w_t, ix, pooled_w, width));
  }
  const auto grid_h_t = grid_h.to(type);
  // value[k, ph, pw, c] accumulates the samples of bin (ph, pw) in the kernel's order (iy, ix);
  // every step is a tensor operation, so autograd differentiates it with respect to input.
  auto value = at::zeros({regions, pooled_h, pooled_w, channels}, options);
  for (int64_t iy = 0; iy < max_h; ++iy) {
    const auto y = axis_samples(start_h, bin_h, grid_h_t, iy, pooled_h, height);
    const auto y_inside = y.inside.unsqueeze(2);  // [K, PH, 1]
    const auto y_low = (y.low * width).unsqueeze(2);
    const auto y_high = (y.high * width).unsqueeze(2);
    const auto ly = y.l.unsqueeze(2);
    const auto hy = y.h.unsqueeze(2);
    for (int64_t ix = 0; ix < max_w; ++ix) {
      const auto& x = xs[static_cast<size_t>(ix)];
      const auto inside = y_inside.logical_and(x.inside.unsqueeze(1));  // [K, PH, PW]
      const auto x_low = x.low.unsqueeze(1);                            // [K, 1, PW]
      const auto x_high = x.high.unsqueeze(1);
      const auto lx = x.l.unsqueeze(1);
      const auto hx = x.h.unsqueeze(1);
      // One neighbour's weighted values. An outside point reads pixel 0 of its plane with weight
      // 0, as torchvision (so a non-finite pixel 0 still turns the sum into NaN).
      const auto corner = [&](const at::Tensor& wy, const at::Tensor& wx, const at::Tensor& row,
                              const at::Tensor& col) {
        const auto weight = at::where(inside, wy * wx, 0.0).unsqueeze(3);
        const auto index = base + at::where(inside, row + col, 0);
        const auto values = pixels.index_select(0, index.reshape({-1}));
        return weight * values.view({regions, pooled_h, pooled_w, channels});
      };
      // w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4, left to right, as the kernel.
      const auto term = ((corner(hy, hx, y_low, x_low) + corner(hy, lx, y_low, x_high)) +
                         corner(ly, hx, y_high, x_low)) +
                        corner(ly, lx, y_high, x_high);
      if (adaptive) {  // a region whose grid is smaller than (iy, ix) skips the point
        const auto has_point =
            grid_h.gt(iy).logical_and_(grid_w.gt(ix)).view({regions, 1, 1, 1});
        value = at::where(has_point, value + term, value);
      } else {
        value = value + term;
      }
    }
  }
  const auto output = (value / count).permute({0, 3, 1, 2}).contiguous();
  return connect_to_input(output, input);  // no grid point at all: still differentiable
}

}  // namespace ostrov::ops::generic
