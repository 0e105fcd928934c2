#include "ostrov/models/instance/unet_border.h"

#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "ostrov/ops/instance.h"
#include "scored_components.h"

namespace ostrov::models {

namespace {

constexpr int64_t kCell = 1, kBorder = 2;

// One growing step: every untaken border pixel next to a labelled pixel (of `from`) takes the
// label of its first such neighbour (above, left, right, below); writes `to`.
void grow_once(const int64_t* cls, const int64_t* from, int64_t* to, int64_t h, int64_t w) {
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t p = y * w + x;
      to[p] = from[p];
      if (from[p] != 0 || cls[p] != kBorder) continue;
      if (y > 0 && from[p - w] != 0) {
        to[p] = from[p - w];
      } else if (x > 0 && from[p - 1] != 0) {
        to[p] = from[p - 1];
      } else if (x + 1 < w && from[p + 1] != 0) {
        to[p] = from[p + 1];
      } else if (y + 1 < h && from[p + w] != 0) {
        to[p] = from[p + w];
      }
    }
  }
}

}  // namespace

UNetBorderImpl::UNetBorderImpl(UNetBorderOptions options) : options(std::move(options)) {
  reset();
}

int64_t UNetBorderImpl::num_outputs() const {
  return options.target() == UNetBorderTarget::kThreeClass ? 3 : 2;
}

void UNetBorderImpl::reset() {
  TORCH_CHECK(options.border_width() >= 1, "UNetBorder: border_width must be >= 1, got ",
              options.border_width());
  TORCH_CHECK(options.min_size() >= 1, "UNetBorder: min_size must be >= 1, got ",
              options.min_size());
  auto unet_options = options.unet();
  unet_options.num_classes(num_outputs());
  unet = register_module("unet", UNet(unet_options));
}

at::Tensor UNetBorderImpl::forward(const at::Tensor& x) { return unet->forward(x); }

std::vector<InstancePrediction> UNetBorderImpl::predict(const at::Tensor& x) {
  const auto logits = forward(x);
  std::vector<InstancePrediction> out;
  for (int64_t i = 0; i < logits.size(0); ++i) {
    out.push_back(unet_border_instances(logits[i], options));
  }
  return out;
}

InstancePrediction unet_border_instances(const at::Tensor& logits,
                                         const UNetBorderOptions& options) {
  const int64_t classes = options.target() == UNetBorderTarget::kThreeClass ? 3 : 2;
  TORCH_CHECK(logits.dim() == 3 && logits.size(0) == classes, "unet_border_instances: logits ",
              "should be [", classes, ",H,W] for target ",
              classes == 3 ? "three_class" : "foreground", ", got ", logits.sizes());
  TORCH_CHECK(options.border_width() >= 1 && options.min_size() >= 1,
              "unet_border_instances: border_width and min_size must be >= 1, got ",
              options.border_width(), " and ", options.min_size());
  const auto probs = logits.detach().to(at::kCPU, at::kFloat).softmax(0);
  const auto cls = probs.argmax(0).contiguous();
  const int64_t h = logits.size(1), w = logits.size(2);
  int64_t count = 0;
  auto labels = ops::connected_components(cls == kCell, &count, /*connectivity=*/4)
                    .to(at::kLong)
                    .contiguous();
  if (classes == 3 && count > 0) {
    auto other = at::empty_like(labels);
    for (int64_t step = 0; step < options.border_width(); ++step) {
      grow_once(cls.data_ptr<int64_t>(), labels.data_ptr<int64_t>(), other.data_ptr<int64_t>(),
                h, w);
      std::swap(labels, other);
    }
  }
  detail::ScoredComponents instances(h, w, options.min_size());
  instances.add(labels, count, 1.0 - probs[0]);
  return std::move(instances).finish();
}

}  // namespace ostrov::models
