#include "ostrov/ops/nms.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/ATen.h>

#include "input_checks.h"
#include "ostrov/ops/generic.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ostrov::ops {

namespace {

template <typename T>
void check_no_nan(const at::Tensor& scores) {
  const auto s = scores.contiguous();
  const T* p = s.data_ptr<T>();
  const int64_t n = s.numel();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(!std::isnan(p[i]), "nms: scores should not be NaN, got NaN at index ", i);
  }
}

// torchvision suppresses when `iou > iou_threshold` with the IoU in T promoted to double.
// The same test in T alone: iou >= the smallest T above the threshold (never true for a NaN
// IoU, as the original), which lets the loop below stay in one precision and vectorise.
template <typename T>
struct Threshold {
  explicit Threshold(double threshold) {
    never = !(threshold < std::numeric_limits<double>::infinity());  // +inf or NaN
    value = static_cast<T>(threshold);
    if (static_cast<double>(value) <= threshold) {
      value = std::nextafter(value, std::numeric_limits<T>::infinity());
    }
  }
  T value;
  bool never;
};

// torchvision's overlap test for box b against candidate j, operation for operation (same
// std::max/std::min argument order, so NaN behaves the same).
template <typename T>
inline bool overlaps(T bx1, T by1, T bx2, T by2, T barea, T x1, T y1, T x2, T y2, T area, T limit) {
  const T xx1 = std::max(bx1, x1);
  const T yy1 = std::max(by1, y1);
  const T xx2 = std::min(bx2, x2);
  const T yy2 = std::min(by2, y2);
  const T w = std::max(static_cast<T>(0), xx2 - xx1);
  const T h = std::max(static_cast<T>(0), yy2 - yy1);
  const T inter = w * h;
  const T iou = inter / (barea + area - inter);
  return iou >= limit;
}

#if defined(__SSE2__)
// Four floats (two doubles) at a time with SSE2, present on every x86-64: the same operations
// as `overlaps`, with min/max operands ordered so that _mm_max_ps(b, a) is std::max(a, b)
// exactly (NaN and signed zeros included). Marks dead[j] for hits; returns where it stopped.
struct LanesFloat {
  using V = __m128;
  using T = float;
  static constexpr int64_t kLanes = 4;
  static V set1(T v) { return _mm_set1_ps(v); }
  static V load(const T* p) { return _mm_loadu_ps(p); }
  static V max(V a, V b) { return _mm_max_ps(a, b); }
  static V min(V a, V b) { return _mm_min_ps(a, b); }
  static V add(V a, V b) { return _mm_add_ps(a, b); }
  static V sub(V a, V b) { return _mm_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm_mul_ps(a, b); }
  static V div(V a, V b) { return _mm_div_ps(a, b); }
  static int hits(V iou, V limit) { return _mm_movemask_ps(_mm_cmpge_ps(iou, limit)); }
};
struct LanesDouble {
  using V = __m128d;
  using T = double;
  static constexpr int64_t kLanes = 2;
  static V set1(T v) { return _mm_set1_pd(v); }
  static V load(const T* p) { return _mm_loadu_pd(p); }
  static V max(V a, V b) { return _mm_max_pd(a, b); }
  static V min(V a, V b) { return _mm_min_pd(a, b); }
  static V add(V a, V b) { return _mm_add_pd(a, b); }
  static V sub(V a, V b) { return _mm_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm_mul_pd(a, b); }
  static V div(V a, V b) { return _mm_div_pd(a, b); }
  static int hits(V iou, V limit) { return _mm_movemask_pd(_mm_cmpge_pd(iou, limit)); }
};
template <typename T>
struct LanesFor;
template <>
struct LanesFor<float> {
  using type = LanesFloat;
};
template <>
struct LanesFor<double> {
  using type = LanesDouble;
};

template <typename L, typename T = typename L::T>
int64_t mark_lanes(const T* box, const T* x1, const T* y1, const T* x2, const T* y2,
                   const T* area, uint8_t* dead, int64_t j, int64_t end, T limit,
                   int64_t* newly) {
  using V = typename L::V;
  const V bx1 = L::set1(box[0]), by1 = L::set1(box[1]), bx2 = L::set1(box[2]),
          by2 = L::set1(box[3]), barea = L::set1(box[4]), lim = L::set1(limit),
          zero = L::set1(0);
  for (; j + L::kLanes <= end; j += L::kLanes) {
    const V xx1 = L::max(L::load(x1 + j), bx1);  // std::max(bx1, x1[j])
    const V yy1 = L::max(L::load(y1 + j), by1);
    const V xx2 = L::min(L::load(x2 + j), bx2);  // std::min(bx2, x2[j])
    const V yy2 = L::min(L::load(y2 + j), by2);
    const V w = L::max(L::sub(xx2, xx1), zero);  // std::max(0, xx2 - xx1)
    const V h = L::max(L::sub(yy2, yy1), zero);
    const V inter = L::mul(w, h);
    const V iou = L::div(inter, L::sub(L::add(barea, L::load(area + j)), inter));
    const int hits = L::hits(iou, lim);
    if (hits != 0) {
      for (int64_t k = 0; k < L::kLanes; ++k) {
        if (((hits >> k) & 1) != 0) {
          *newly += dead[j + k] ^ 1;
          dead[j + k] = 1;
        }
      }
    }
  }
  return j;
}
#endif

// Greedy NMS over boxes already in visiting order, stored as columns. Each kept box marks the
// candidates after it (several at a time with SSE2, the rest one by one); once half of the
// remaining candidates are marked, they are compacted away, so later boxes read only
// contiguous, mostly live data (torchvision re-reads every suppressed box through the order
// array). The kept set is the same as torchvision's because every test is.
// Returns the number of indices written to `keep`.
template <typename T>
int64_t nms_sorted(T* x1, T* y1, T* x2, T* y2, T* area, int64_t* index, int64_t n,
                   double iou_threshold, int64_t* keep) {
  const Threshold<T> threshold(iou_threshold);
  std::vector<uint8_t> dead_storage(static_cast<size_t>(n), 0);
  uint8_t* dead = dead_storage.data();
  int64_t kept = 0;
  int64_t live = n;       // candidates are [0, live), some of them marked dead
  int64_t marked = 0;     // dead entries in (p, live)
  for (int64_t p = 0; p < live; ++p) {
    if (dead[p] != 0) {
      --marked;
      continue;
    }
    keep[kept++] = index[p];
    if (threshold.never) continue;
    const T bx1 = x1[p], by1 = y1[p], bx2 = x2[p], by2 = y2[p], barea = area[p];
    const T limit = threshold.value;
    int64_t j = p + 1;
    int64_t newly = 0;
#if defined(__SSE2__)
    const T box[5] = {bx1, by1, bx2, by2, barea};
    j = mark_lanes<typename LanesFor<T>::type>(box, x1, y1, x2, y2, area, dead, j, live, limit,
                                               &newly);
#endif
    for (; j < live; ++j) {
      const uint8_t hit =
          overlaps<T>(bx1, by1, bx2, by2, barea, x1[j], y1[j], x2[j], y2[j], area[j], limit) ? 1 : 0;
      newly += hit & (dead[j] ^ 1);
      dead[j] |= hit;
    }
    marked += newly;
    if (2 * marked > live - p - 1) {  // compact (p, live)
      int64_t out = p + 1;
      for (int64_t k = p + 1; k < live; ++k) {
        if (dead[k] != 0) continue;
        x1[out] = x1[k];
        y1[out] = y1[k];
        x2[out] = x2[k];
        y2[out] = y2[k];
        area[out] = area[k];
        index[out] = index[k];
        dead[out] = 0;
        ++out;
      }
      live = out;
      marked = 0;
    }
  }
  return kept;
}

template <typename T>
at::Tensor nms_impl(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  check_no_nan<T>(scores);
  const int64_t n = boxes.size(0);
  // torchvision 0.14's kernel sorts stably: equal scores are visited in index order.
  const auto order_t = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t* order = order_t.data_ptr<int64_t>();
  const auto b = boxes.contiguous();
  const T* bp = b.data_ptr<T>();

  std::vector<T> columns(static_cast<size_t>(5 * n));
  T* x1 = columns.data();
  T* y1 = x1 + n;
  T* x2 = y1 + n;
  T* y2 = x2 + n;
  T* area = y2 + n;
  std::vector<int64_t> index(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = order[k];
    const T* q = bp + 4 * i;
    x1[k] = q[0];
    y1[k] = q[1];
    x2[k] = q[2];
    y2[k] = q[3];
    area[k] = (q[2] - q[0]) * (q[3] - q[1]);
    index[k] = i;
  }
  auto keep = at::empty({n}, boxes.options().dtype(at::kLong));
  const int64_t kept =
      nms_sorted<T>(x1, y1, x2, y2, area, index.data(), n, iou_threshold, keep.data_ptr<int64_t>());
  return keep.narrow(0, 0, kept);
}

// torchvision's _batched_nms_coordinate_trick.
at::Tensor batched_nms_offsets(const at::Tensor& boxes, const at::Tensor& scores,
                               const at::Tensor& idxs, double iou_threshold) {
  const auto max_coordinate = boxes.max();
  const auto offsets = idxs.to(boxes.options()) * (max_coordinate + 1);
  return nms(boxes + offsets.unsqueeze(1), scores, iou_threshold);
}

// torchvision's _batched_nms_vanilla: one nms per category over its boxes in index order, then
// the kept indices (ascending) reordered by the same descending sort of their scores (Python's
// `.sort(descending=True)`, which is not stable: LibTorch's sort gives the same tie order).
at::Tensor batched_nms_per_category(const at::Tensor& boxes, const at::Tensor& scores,
                                    const at::Tensor& idxs, double iou_threshold) {
  const int64_t n = boxes.size(0);
  // Group the boxes by category with a stable sort: each group lists its boxes in index order,
  // as torch.where(idxs == class_id) does.
  const auto sorted = idxs.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  const auto& values = std::get<0>(sorted);
  const auto& members = std::get<1>(sorted);
  const auto starts_t =
      at::where(values.slice(0, 1).ne(values.slice(0, 0, n - 1)))[0].add(1).contiguous();
  std::vector<int64_t> starts = {0};
  starts.insert(starts.end(), starts_t.data_ptr<int64_t>(),
                starts_t.data_ptr<int64_t>() + starts_t.numel());
  starts.push_back(n);

  std::vector<uint8_t> keep_mask(static_cast<size_t>(n), 0);
  for (size_t g = 0; g + 1 < starts.size(); ++g) {
    const auto curr = members.slice(0, starts[g], starts[g + 1]);
    const auto curr_keep =
        nms(boxes.index_select(0, curr), scores.index_select(0, curr), iou_threshold);
    const auto chosen = curr.index_select(0, curr_keep).contiguous();
    const int64_t* c = chosen.data_ptr<int64_t>();
    for (int64_t k = 0; k < chosen.numel(); ++k) keep_mask[c[k]] = 1;
  }
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < n; ++i) {
    if (keep_mask[i] != 0) kept.push_back(i);
  }
  const auto keep_indices =
      at::tensor(kept, boxes.options().dtype(at::kLong));
  const auto order = std::get<1>(scores.index_select(0, keep_indices).sort(-1, /*descending=*/true));
  return keep_indices.index_select(0, order);
}

}  // namespace

at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  if (detail::reduced_precision(boxes) || detail::reduced_precision(scores)) {
    return nms(boxes.to(at::kFloat), scores.to(at::kFloat), iou_threshold);
  }
  detail::check_nms_inputs(boxes, scores, "nms");
  // Other devices take the ATen-operations path (IoU on the device, greedy pass on the host).
  if (!boxes.is_cpu()) return generic::nms(boxes, scores, iou_threshold);
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  at::Tensor result;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "nms", [&] {
    result = nms_impl<scalar_t>(boxes, scores, iou_threshold);
  });
  return result;
}

at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                       double iou_threshold) {
  if (detail::reduced_precision(boxes) || detail::reduced_precision(scores)) {
    return batched_nms(boxes.to(at::kFloat), scores.to(at::kFloat), idxs, iou_threshold);
  }
  detail::check_nms_inputs(boxes, scores, "batched_nms");
  detail::check_batched_nms_idxs(boxes, idxs);
  // Other devices: the coordinate-offset strategy for every N, on the device.
  if (!boxes.is_cpu()) return generic::batched_nms(boxes, scores, idxs, iou_threshold);
  if (boxes.size(0) == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  // torchvision switches strategy at this size on the CPU (vision#1311 benchmarks).
  if (boxes.numel() > 4000) return batched_nms_per_category(boxes, scores, idxs, iou_threshold);
  return batched_nms_offsets(boxes, scores, idxs, iou_threshold);
}

}  // namespace ostrov::ops
