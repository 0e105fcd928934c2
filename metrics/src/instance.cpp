#include "ostrov/metrics/instance.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <tuple>

#include <ATen/ATen.h>

namespace ostrov::metrics {

namespace {

void check_pair(const at::Tensor& a, const at::Tensor& b, const char* fn, int64_t dims) {
  TORCH_CHECK(a.sizes() == b.sizes(), fn, ": prediction ", a.sizes(), " and target ", b.sizes(),
              " differ in shape");
  TORCH_CHECK(dims == 0 ? (a.dim() == 2 || a.dim() == 3) : a.dim() == dims, fn,
              ": label images should be ", dims == 0 ? "[H,W] or [N,H,W]" : "[H,W]", ", got ",
              a.sizes());
  TORCH_CHECK(!at::isFloatingType(a.scalar_type()) && !at::isFloatingType(b.scalar_type()), fn,
              ": label images should hold integer labels, got ", a.scalar_type(), " and ",
              b.scalar_type());
}

int64_t object_count(const at::Tensor& labels) {
  auto values = std::get<0>(at::_unique(labels.flatten(), /*sorted=*/true));
  return values.numel() - values.eq(0).sum().item<int64_t>();
}

double best_dice_unchecked(const at::Tensor& a, const at::Tensor& b) {
  auto fa = a.flatten().to(at::kCPU, at::kLong);
  auto fb = b.flatten().to(at::kCPU, at::kLong);
  auto [ua, ia, ca] = at::_unique2(fa, /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/true);
  auto [ub, ib, cb] = at::_unique2(fb, true, true, true);
  const int64_t na = ua.numel(), nb = ub.numel();
  auto joint = at::bincount(ia * nb + ib, {}, na * nb).view({na, nb}).to(at::kDouble);
  auto sizes = ca.to(at::kDouble).unsqueeze(1) + cb.to(at::kDouble).unsqueeze(0);
  auto dice = 2.0 * joint / sizes;  // sizes >= 1 everywhere
  auto rows = ua.ne(0);
  auto cols = ub.ne(0);
  const int64_t m = rows.sum().item<int64_t>();
  if (m == 0) return 0.0;  // no object in a: the challenge code's "trivial solution"
  if (cols.sum().item<int64_t>() == 0) return 0.0;
  auto objects = dice.index_select(0, rows.nonzero().squeeze(1))
                     .index_select(1, cols.nonzero().squeeze(1));
  return std::get<0>(objects.max(1)).mean().item<double>();
}

}  // namespace

double best_dice(const at::Tensor& a, const at::Tensor& b) {
  check_pair(a, b, "best_dice", 2);
  return best_dice_unchecked(a, b);
}

double symmetric_best_dice(const at::Tensor& prediction, const at::Tensor& target) {
  check_pair(prediction, target, "symmetric_best_dice", 2);
  return std::min(best_dice_unchecked(prediction, target), best_dice_unchecked(target, prediction));
}

int64_t difference_in_count(const at::Tensor& prediction, const at::Tensor& target) {
  check_pair(prediction, target, "difference_in_count", 2);
  return object_count(prediction) - object_count(target);
}

void CvpppMetrics::update(const at::Tensor& prediction, const at::Tensor& target) {
  check_pair(prediction, target, "CvpppMetrics::update", 0);
  auto p = prediction.dim() == 2 ? prediction.unsqueeze(0) : prediction;
  auto t = target.dim() == 2 ? target.unsqueeze(0) : target;
  for (int64_t i = 0; i < p.size(0); ++i) {
    const double sbd = std::min(best_dice_unchecked(p[i], t[i]), best_dice_unchecked(t[i], p[i]));
    const int64_t dic = object_count(p[i]) - object_count(t[i]);
    sbd_sum_ += sbd;
    dic_sum_ += static_cast<double>(dic);
    abs_dic_sum_ += static_cast<double>(std::llabs(dic));
    ++images_;
  }
}

void CvpppMetrics::merge(const CvpppMetrics& other) {
  images_ += other.images_;
  sbd_sum_ += other.sbd_sum_;
  abs_dic_sum_ += other.abs_dic_sum_;
  dic_sum_ += other.dic_sum_;
}

void CvpppMetrics::reset() { *this = CvpppMetrics(); }

double CvpppMetrics::sbd() const {
  return images_ ? sbd_sum_ / static_cast<double>(images_) : std::numeric_limits<double>::quiet_NaN();
}

double CvpppMetrics::abs_dic() const {
  return images_ ? abs_dic_sum_ / static_cast<double>(images_)
                 : std::numeric_limits<double>::quiet_NaN();
}

double CvpppMetrics::dic() const {
  return images_ ? dic_sum_ / static_cast<double>(images_) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace ostrov::metrics
