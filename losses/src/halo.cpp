#include "ostrov/losses/halo.h"

#include <algorithm>
#include <limits>
#include <map>
#include <vector>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

namespace ostrov::losses {

namespace functional {

namespace {

void check_options(const HaloLossOptions& o) {
  TORCH_CHECK(o.margin() >= 1, "halo_loss: margin must be >= 1, got ", o.margin());
  TORCH_CHECK(o.mu() >= 0, "halo_loss: mu must be >= 0, got ", o.mu());
  TORCH_CHECK(o.ignore_index() != 0, "halo_loss: ignore_index cannot be 0 (the background)");
}

void check_inputs(const at::Tensor& logits, const at::Tensor& instances) {
  TORCH_CHECK(logits.dim() == 4, "halo_loss: logits should be [N,C,H,W], got ", logits.sizes());
  TORCH_CHECK(logits.size(1) >= 2,
              "halo_loss: logits need at least 2 maps (background + 1 colour), got ",
              logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()),
              "halo_loss: logits should be floating point, got ", logits.scalar_type());
  TORCH_CHECK(instances.dim() == 3 && instances.size(0) == logits.size(0) &&
                  instances.size(1) == logits.size(2) && instances.size(2) == logits.size(3),
              "halo_loss: instances should be [N,H,W] matching logits ", logits.sizes(), ", got ",
              instances.sizes());
  TORCH_CHECK(instances.scalar_type() == at::kLong, "halo_loss: instances should be int64, got ",
              instances.scalar_type());
}

// Pixels of each object and of its halo, as flat indices with the object's number.
struct ObjectPixels {
  std::vector<int64_t> object_index, object_id;  // pixel, object number
  std::vector<int64_t> halo_index, halo_id;
  std::vector<int64_t> pixel_object;             // per pixel: object number, -1 bg, -2 ignored
  int64_t count = 0;
};

ObjectPixels object_pixels(const at::Tensor& instances, int64_t margin, int64_t ignore_index) {
  const int64_t h = instances.size(0);
  const int64_t w = instances.size(1);
  const int64_t* lab = instances.data_ptr<int64_t>();
  ObjectPixels out;
  out.pixel_object.assign(h * w, -1);
  struct Box {
    int64_t number, x0, y0, x1, y1;  // inclusive
  };
  std::map<int64_t, Box> boxes;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t v = lab[y * w + x];
      if (v == ignore_index) {
        out.pixel_object[y * w + x] = -2;
        continue;
      }
      if (v == 0) continue;
      auto it = boxes.find(v);
      if (it == boxes.end()) {
        it = boxes.emplace(v, Box{static_cast<int64_t>(boxes.size()), x, y, x, y}).first;
      }
      Box& b = it->second;
      b.x0 = std::min(b.x0, x);
      b.x1 = std::max(b.x1, x);
      b.y0 = std::min(b.y0, y);
      b.y1 = std::max(b.y1, y);
      out.pixel_object[y * w + x] = b.number;
      out.object_index.push_back(y * w + x);
      out.object_id.push_back(b.number);
    }
  }
  out.count = static_cast<int64_t>(boxes.size());
  const cv::Mat kernel = cv::getStructuringElement(
      cv::MORPH_ELLIPSE, cv::Size(static_cast<int>(2 * margin + 1), static_cast<int>(2 * margin + 1)));
  for (const auto& [value, b] : boxes) {
    const int64_t x0 = std::max<int64_t>(0, b.x0 - margin), x1 = std::min(w - 1, b.x1 + margin);
    const int64_t y0 = std::max<int64_t>(0, b.y0 - margin), y1 = std::min(h - 1, b.y1 + margin);
    cv::Mat mask(static_cast<int>(y1 - y0 + 1), static_cast<int>(x1 - x0 + 1), CV_8U);
    for (int64_t y = y0; y <= y1; ++y) {
      auto* row = mask.ptr<uint8_t>(static_cast<int>(y - y0));
      for (int64_t x = x0; x <= x1; ++x) row[x - x0] = lab[y * w + x] == value ? 255 : 0;
    }
    cv::Mat dilated;
    // Outside the region counts as "not object" (dilation's default border is the minimum).
    cv::dilate(mask, dilated, kernel);
    for (int64_t y = y0; y <= y1; ++y) {
      const auto* d = dilated.ptr<uint8_t>(static_cast<int>(y - y0));
      const auto* m = mask.ptr<uint8_t>(static_cast<int>(y - y0));
      for (int64_t x = x0; x <= x1; ++x) {
        if (d[x - x0] && !m[x - x0] && out.pixel_object[y * w + x] != -2) {
          out.halo_index.push_back(y * w + x);
          out.halo_id.push_back(b.number);
        }
      }
    }
  }
  return out;
}

at::Tensor index_tensor(const std::vector<int64_t>& v, const at::Device& device) {
  return at::tensor(v, at::TensorOptions().dtype(at::kLong)).to(device);
}

}  // namespace

at::Tensor halo_coloring(const at::Tensor& logits, const at::Tensor& instances,
                         const HaloLossOptions& options) {
  check_options(options);
  check_inputs(logits, instances);
  at::NoGradGuard no_grad;
  const int64_t n = logits.size(0), c = logits.size(1), h = logits.size(2), w = logits.size(3);
  auto inst_cpu = instances.to(at::kCPU).contiguous();
  auto target = at::full({n, h, w}, options.ignore_index(), at::kLong);
  auto* out = target.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    auto px = object_pixels(inst_cpu[i], options.margin(), options.ignore_index());
    std::vector<int64_t> colour(px.count, 1);
    if (px.count > 0) {
      const auto device = logits.device();
      // Double precision for the choice: log(1 - y) = log(-expm1(log y)) stays accurate near y=1.
      auto logp = at::log_softmax(logits[i].detach().to(at::kDouble), 0).reshape({c, h * w});
      TORCH_CHECK(!logp.isnan().any().item<bool>(), "halo_loss: the predictions ", logits.sizes(),
                  " contain NaN");
      auto obj_idx = index_tensor(px.object_index, device);
      auto obj_id = index_tensor(px.object_id, device);
      auto opts = logp.options();
      auto obj_sum = at::zeros({px.count, c}, opts).index_add_(0, obj_id, logp.index_select(1, obj_idx).t());
      auto obj_n = at::zeros({px.count}, opts).index_add_(0, obj_id, at::ones({obj_id.size(0)}, opts));
      auto score = obj_sum / obj_n.unsqueeze(1);
      if (!px.halo_index.empty() && options.mu() != 0.0) {
        auto halo_idx = index_tensor(px.halo_index, device);
        auto halo_id = index_tensor(px.halo_id, device);
        auto log1m = at::log(-at::expm1(logp.index_select(1, halo_idx))).clamp_min(-1e4);
        auto halo_sum = at::zeros({px.count, c}, opts).index_add_(0, halo_id, log1m.t());
        auto halo_n = at::zeros({px.count}, opts).index_add_(0, halo_id, at::ones({halo_id.size(0)}, opts));
        score = score + options.mu() * halo_sum / halo_n.clamp_min(1.0).unsqueeze(1);
      }
      // argmax over colours c >= 1; ties go to the smallest c.
      auto best = (score.narrow(1, 1, c - 1).argmax(1) + 1).to(at::kCPU);
      colour.assign(best.data_ptr<int64_t>(), best.data_ptr<int64_t>() + px.count);
    }
    int64_t* t = out + i * h * w;
    for (int64_t p = 0; p < h * w; ++p) {
      const int64_t o = px.pixel_object[p];
      if (o == -1) t[p] = 0;
      else if (o >= 0) t[p] = colour[o];
    }
  }
  return target.to(logits.device());
}

at::Tensor halo_loss(const at::Tensor& logits, const at::Tensor& instances,
                     const HaloLossOptions& options) {
  auto target = halo_coloring(logits, instances, options);
  auto valid = target.ne(options.ignore_index());
  auto safe = target.masked_fill(~valid, 0);
  auto nll = -at::log_softmax(logits, 1).gather(1, safe.unsqueeze(1)).squeeze(1);  // [N,H,W]
  auto validf = valid.to(nll.scalar_type());
  auto per_image = (nll * validf).sum({1, 2}) / validf.sum({1, 2}).clamp_min(1.0);
  return per_image.mean();
}

}  // namespace functional

HaloLossImpl::HaloLossImpl(HaloLossOptions options_) : options(options_) { reset(); }

void HaloLossImpl::reset() { functional::check_options(options); }

at::Tensor HaloLossImpl::forward(const at::Tensor& logits, const at::Tensor& instances) {
  return functional::halo_loss(logits, instances, options);
}

void HaloLossImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::HaloLoss(margin=" << options.margin() << ", mu=" << options.mu()
         << ", ignore_index=" << options.ignore_index() << ")";
}

at::Tensor HaloLossImpl::compute(const LossInputs& in) {
  return forward(need(in.logits, "halo", "logits"), need(in.target, "halo", "target"));
}

}  // namespace ostrov::losses
