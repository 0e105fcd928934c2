#include "ostrov/losses/unet_weights.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "ostrov/losses/segmentation.h"

namespace ostrov::losses {

namespace {

at::Tensor as_batch(const at::Tensor& instances, const char* fn) {
  TORCH_CHECK(instances.dim() == 2 || instances.dim() == 3, fn,
              ": instances should be [H,W] or [N,H,W], got ", instances.sizes());
  TORCH_CHECK(!at::isFloatingType(instances.scalar_type()) && instances.scalar_type() != at::kBool,
              fn, ": instances should be integer labels, got ", instances.scalar_type());
  return (instances.dim() == 2 ? instances.unsqueeze(0) : instances)
      .to(at::kCPU, at::kLong)
      .contiguous();
}

void weight_map_of_image(const at::Tensor& labels, const UNetWeightMapOptions& o, float* out) {
  const int h = static_cast<int>(labels.size(0));
  const int w = static_cast<int>(labels.size(1));
  const int64_t total = static_cast<int64_t>(h) * w;
  const int64_t* lab = labels.data_ptr<int64_t>();
  std::set<int64_t> ids;
  int64_t foreground = 0;
  for (int64_t p = 0; p < total; ++p) {
    if (lab[p] != 0) {
      ids.insert(lab[p]);
      ++foreground;
    }
  }
  // w_c
  double wb = 1.0, wf = 1.0;
  if (!o.class_weights().empty()) {
    wb = o.class_weights()[0];
    wf = o.class_weights()[1];
  } else if (o.balance_classes() && foreground > 0 && foreground < total) {
    wb = static_cast<double>(total) / (2.0 * static_cast<double>(total - foreground));
    wf = static_cast<double>(total) / (2.0 * static_cast<double>(foreground));
  }
  for (int64_t p = 0; p < total; ++p) out[p] = static_cast<float>(lab[p] != 0 ? wf : wb);
  if (ids.size() < 2 || o.w0() == 0.0) return;

  // d1 <= d2: the two smallest distances to any object, updated one object at a time.
  const float inf = std::numeric_limits<float>::max();
  cv::Mat d1(h, w, CV_32F, cv::Scalar(inf)), d2(h, w, CV_32F, cv::Scalar(inf));
  cv::Mat src(h, w, CV_8U), dist;
  for (int64_t id : ids) {
    for (int y = 0; y < h; ++y) {
      auto* row = src.ptr<uint8_t>(y);
      for (int x = 0; x < w; ++x) row[x] = lab[static_cast<int64_t>(y) * w + x] == id ? 0 : 255;
    }
    cv::distanceTransform(src, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE, CV_32F);
    cv::min(d2, cv::max(d1, dist), d2);
    cv::min(d1, dist, d1);
  }
  const double two_sigma2 = 2.0 * o.sigma() * o.sigma();
  for (int y = 0; y < h; ++y) {
    const float* a = d1.ptr<float>(y);
    const float* b = d2.ptr<float>(y);
    for (int x = 0; x < w; ++x) {
      const int64_t p = static_cast<int64_t>(y) * w + x;
      if (lab[p] != 0) continue;
      const double s = static_cast<double>(a[x]) + static_cast<double>(b[x]);
      out[p] += static_cast<float>(o.w0() * std::exp(-s * s / two_sigma2));
    }
  }
}

}  // namespace

at::Tensor unet_weight_map(const at::Tensor& instances, const UNetWeightMapOptions& o) {
  TORCH_CHECK(o.sigma() > 0, "unet_weight_map: sigma must be > 0, got ", o.sigma());
  TORCH_CHECK(o.class_weights().empty() || o.class_weights().size() == 2,
              "unet_weight_map: class_weights should be {background, foreground}, got ",
              o.class_weights().size(), " values");
  auto batch = as_batch(instances, "unet_weight_map");
  auto out = at::empty(batch.sizes(), at::kFloat);
  for (int64_t i = 0; i < batch.size(0); ++i) {
    weight_map_of_image(batch[i], o, out[i].data_ptr<float>());
  }
  return instances.dim() == 2 ? out.squeeze(0) : out;
}

at::Tensor unet_three_class_target(const at::Tensor& instances, int64_t border_width) {
  TORCH_CHECK(border_width >= 1, "unet_three_class_target: border_width must be >= 1, got ",
              border_width);
  auto batch = as_batch(instances, "unet_three_class_target");
  auto lab = batch.to(at::kDouble).unsqueeze(1);  // [N,1,H,W]; double is exact for labels < 2^53
  const int64_t k = 2 * border_width + 1;
  auto hi = at::max_pool2d(lab, {k, k}, {1, 1}, {border_width, border_width});
  auto lo = -at::max_pool2d(-lab, {k, k}, {1, 1}, {border_width, border_width});
  auto object = batch.ne(0);
  auto border = object & (hi.squeeze(1).ne(batch.to(at::kDouble)) | lo.squeeze(1).ne(batch.to(at::kDouble)));
  auto out = object.to(at::kLong) * kUNetCell;
  out.masked_fill_(border, kUNetBorder);
  return instances.dim() == 2 ? out.squeeze(0) : out;
}

at::Tensor class_balance_map(const at::Tensor& target, int64_t ignore_index) {
  TORCH_CHECK(target.scalar_type() == at::kLong, "class_balance_map: target should be int64, got ",
              target.scalar_type());
  auto valid = target.ne(ignore_index);
  auto safe = target.masked_fill(~valid, 0);
  if (target.numel() == 0) return at::zeros(target.sizes(), target.options().dtype(at::kFloat));
  const auto lo = safe.min().item<int64_t>();
  TORCH_CHECK(lo >= 0, "class_balance_map: target label ", lo, " is negative and not ignore_index ",
              ignore_index);
  auto counts = at::bincount(safe.masked_select(valid)).to(at::kFloat);
  if (counts.numel() == 0) return at::zeros(target.sizes(), target.options().dtype(at::kFloat));
  const auto present = counts.gt(0).sum().item<int64_t>();
  const auto total = counts.sum();
  auto per_class = at::where(counts.gt(0), total / (counts * static_cast<double>(std::max<int64_t>(present, 1))),
                             at::zeros_like(counts));
  return per_class.index_select(0, safe.flatten()).view(target.sizes()) * valid.to(at::kFloat);
}

WeightedCrossEntropyImpl::WeightedCrossEntropyImpl(WeightedCrossEntropyOptions options_)
    : options(std::move(options_)) {
  reset();
}

void WeightedCrossEntropyImpl::reset() {
  const auto& m = options.weight_map();
  TORCH_CHECK(m.sigma() > 0, "weighted_cross_entropy: weight_map.sigma must be > 0, got ",
              m.sigma());
  TORCH_CHECK(m.w0() >= 0, "weighted_cross_entropy: weight_map.w0 must be >= 0, got ", m.w0());
  TORCH_CHECK(m.class_weights().empty() || m.class_weights().size() == 2,
              "weighted_cross_entropy: the weight map's fixed w_c should be {background, "
              "foreground}, got ", m.class_weights().size(), " values");
}

at::Tensor WeightedCrossEntropyImpl::forward(const at::Tensor& logits, const at::Tensor& target,
                                             const at::Tensor& instances) {
  TORCH_CHECK(instances.dim() == 3 && target.dim() == 3 && instances.sizes() == target.sizes(),
              "weighted_cross_entropy: instances ", instances.sizes(),
              " should be [N,H,W] like the target ", target.sizes());
  const auto weights = unet_weight_map(instances, options.weight_map()).to(logits.device());
  return functional::cross_entropy(logits, target, options.class_weights(), weights,
                                   options.ignore_index());
}

at::Tensor WeightedCrossEntropyImpl::compute(const LossInputs& in) {
  return forward(need(in.logits, "weighted_cross_entropy", "logits"),
                 need(in.target, "weighted_cross_entropy", "target"),
                 need(in.instances, "weighted_cross_entropy", "instances"));
}

void WeightedCrossEntropyImpl::pretty_print(std::ostream& stream) const {
  const auto& m = options.weight_map();
  stream << "ostrov::losses::WeightedCrossEntropy(w0=" << m.w0() << ", sigma=" << m.sigma()
         << ", balance_classes=" << (m.balance_classes() ? "true" : "false")
         << ", classes weighted=" << (options.class_weights().empty() ? "no" : "yes")
         << ", ignore_index=" << options.ignore_index() << ")";
}

}  // namespace ostrov::losses
