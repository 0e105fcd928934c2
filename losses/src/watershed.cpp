#include "ostrov/losses/watershed.h"

#include <algorithm>
#include <cmath>
#include <map>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "ostrov/losses/segmentation.h"
#include "checks.h"

namespace ostrov::losses {

namespace functional {

at::Tensor direction_loss(const at::Tensor& prediction, const at::Tensor& target,
                          const at::Tensor& mask, const at::Tensor& pixel_weights,
                          const DirectionLossOptions& options) {
  TORCH_CHECK(prediction.dim() == 4 && prediction.size(1) == 2,
              "direction_loss: prediction should be [N,2,H,W], got ", prediction.sizes());
  TORCH_CHECK(at::isFloatingType(prediction.scalar_type()),
              "direction_loss: prediction should be floating point, got ", prediction.scalar_type());
  TORCH_CHECK(target.sizes() == prediction.sizes(), "direction_loss: target ", target.sizes(),
              " should match prediction ", prediction.sizes());
  TORCH_CHECK(options.eps() > 0, "direction_loss: eps must be > 0, got ", options.eps());
  auto t = target.to(prediction.scalar_type());
  at::Tensor m;
  if (mask.defined()) {
    TORCH_CHECK(mask.dim() == 3 && mask.size(0) == prediction.size(0) &&
                    mask.size(1) == prediction.size(2) && mask.size(2) == prediction.size(3),
                "direction_loss: mask should be [N,H,W] matching prediction ", prediction.sizes(),
                ", got ", mask.sizes());
    m = mask.to(at::kBool);
  } else {
    m = t.pow(2).sum(1).gt(0.25);
  }
  auto w = m.to(prediction.scalar_type());
  if (pixel_weights.defined()) {
    w = w * detail::check_pixel_weights(pixel_weights, m, prediction, "direction_loss");
  }
  auto norm = prediction.pow(2).sum(1, /*keepdim=*/true).sqrt().clamp_min(options.eps());
  auto cosine = ((prediction / norm) * t).sum(1);  // [N,H,W]
  at::Tensor error;
  if (options.angular()) {
    // acos has an infinite slope at +-1: clamp just inside.
    error = at::acos(cosine.clamp(-1.0 + 1e-7, 1.0 - 1e-7)).pow(2);
  } else {
    error = 1.0 - cosine;
  }
  // Masked pixels may hold anything (a zero target): select, do not multiply, to keep NaN out.
  error = at::where(m, error, at::zeros_like(error));
  return (error * w).sum() / w.sum().clamp_min(1e-12);
}

at::Tensor energy_loss(const at::Tensor& logits, const at::Tensor& levels,
                       const EnergyLossOptions& options, const at::Tensor& pixel_weights) {
  return cross_entropy(logits, levels, options.class_weights(), pixel_weights,
                       options.ignore_index());
}

}  // namespace functional

namespace {

void targets_of_image(const at::Tensor& instances, const WatershedTargetOptions& o,
                      float* direction, int64_t* energy, float* weights) {
  const int h = static_cast<int>(instances.size(0));
  const int w = static_cast<int>(instances.size(1));
  const int64_t* lab = instances.data_ptr<int64_t>();
  struct Object {
    int x0, y0, x1, y1;
    int64_t area;
  };
  std::map<int64_t, Object> objects;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int64_t v = lab[static_cast<int64_t>(y) * w + x];
      if (v == 0) continue;
      auto [it, fresh] = objects.try_emplace(v, Object{x, y, x, y, 0});
      auto& b = it->second;
      b.x0 = std::min(b.x0, x);
      b.x1 = std::max(b.x1, x);
      b.y0 = std::min(b.y0, y);
      b.y1 = std::max(b.y1, y);
      ++b.area;
    }
  }
  const int64_t plane = static_cast<int64_t>(h) * w;
  for (const auto& [value, b] : objects) {
    // The object's box with a 1-pixel frame of "outside": beyond the image counts as outside.
    const int rh = b.y1 - b.y0 + 3, rw = b.x1 - b.x0 + 3;
    cv::Mat mask = cv::Mat::zeros(rh, rw, CV_8U);
    for (int y = b.y0; y <= b.y1; ++y) {
      auto* row = mask.ptr<uint8_t>(y - b.y0 + 1);
      for (int x = b.x0; x <= b.x1; ++x) {
        if (lab[static_cast<int64_t>(y) * w + x] == value) row[x - b.x0 + 1] = 255;
      }
    }
    cv::Mat dist, gx, gy;
    cv::distanceTransform(mask, dist, cv::DIST_L2, cv::DIST_MASK_PRECISE, CV_32F);
    cv::Sobel(dist, gx, CV_32F, 1, 0, 3, 1.0, 0.0, cv::BORDER_REPLICATE);
    cv::Sobel(dist, gy, CV_32F, 0, 1, 3, 1.0, 0.0, cv::BORDER_REPLICATE);
    const float weight = 1.0f / std::sqrt(static_cast<float>(b.area));
    for (int y = b.y0; y <= b.y1; ++y) {
      const int ry = y - b.y0 + 1;
      for (int x = b.x0; x <= b.x1; ++x) {
        const int rx = x - b.x0 + 1;
        if (!mask.at<uint8_t>(ry, rx)) continue;
        const int64_t p = static_cast<int64_t>(y) * w + x;
        const double d = dist.at<float>(ry, rx);
        energy[p] = std::min<int64_t>(o.num_levels() - 1,
                                      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(d / o.step() - 1e-9))));
        const float dx = gx.at<float>(ry, rx), dy = gy.at<float>(ry, rx);
        const float n = std::sqrt(dx * dx + dy * dy);
        if (n > 1e-6f) {
          direction[p] = dx / n;
          direction[plane + p] = dy / n;
        }
        weights[p] = weight;
      }
    }
  }
}

}  // namespace

WatershedTargets watershed_targets(const at::Tensor& instances, const WatershedTargetOptions& o) {
  TORCH_CHECK(instances.dim() == 2 || instances.dim() == 3,
              "watershed_targets: instances should be [H,W] or [N,H,W], got ", instances.sizes());
  TORCH_CHECK(!at::isFloatingType(instances.scalar_type()),
              "watershed_targets: instances should be integer labels, got ", instances.scalar_type());
  TORCH_CHECK(o.num_levels() >= 2, "watershed_targets: num_levels must be >= 2, got ",
              o.num_levels());
  TORCH_CHECK(o.step() > 0, "watershed_targets: step must be > 0, got ", o.step());
  auto inst = (instances.dim() == 2 ? instances.unsqueeze(0) : instances)
                  .to(at::kCPU, at::kLong).contiguous();
  const int64_t n = inst.size(0), h = inst.size(1), w = inst.size(2);
  WatershedTargets t;
  t.direction = at::zeros({n, 2, h, w}, at::kFloat);
  t.energy = at::zeros({n, h, w}, at::kLong);
  t.weights = at::zeros({n, h, w}, at::kFloat);
  for (int64_t i = 0; i < n; ++i) {
    targets_of_image(inst[i], o, t.direction[i].data_ptr<float>(), t.energy[i].data_ptr<int64_t>(),
                     t.weights[i].data_ptr<float>());
  }
  return t;
}

DirectionLossImpl::DirectionLossImpl(DirectionLossOptions options_) : options(options_) {}

at::Tensor DirectionLossImpl::forward(const at::Tensor& prediction, const at::Tensor& target,
                                      const at::Tensor& mask, const at::Tensor& pixel_weights) {
  return functional::direction_loss(prediction, target, mask, pixel_weights, options);
}

void DirectionLossImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::DirectionLoss(angular=" << (options.angular() ? "true" : "false")
         << ", eps=" << options.eps() << ")";
}

EnergyLossImpl::EnergyLossImpl(EnergyLossOptions options_) : options(std::move(options_)) {}

at::Tensor EnergyLossImpl::forward(const at::Tensor& logits, const at::Tensor& levels,
                                   const at::Tensor& pixel_weights) {
  return functional::energy_loss(logits, levels, options, pixel_weights);
}

void EnergyLossImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::EnergyLoss(classes=" << options.class_weights().size()
         << ", ignore_index=" << options.ignore_index() << ")";
}

at::Tensor DirectionLossImpl::compute(const LossInputs& in) {
  return forward(need(in.direction, "direction", "direction"),
                 need(in.target_direction, "direction", "target_direction"), in.mask,
                 in.pixel_weights);
}

at::Tensor EnergyLossImpl::compute(const LossInputs& in) {
  return forward(need(in.logits, "energy", "logits"), need(in.target, "energy", "target"),
                 in.pixel_weights);
}

}  // namespace ostrov::losses
