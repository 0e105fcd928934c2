#include "ostrov/models/instance/deep_coloring.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "ostrov/ops/instance.h"
#include "scored_components.h"

namespace ostrov::models {

DeepColoringImpl::DeepColoringImpl(DeepColoringOptions options) : options(std::move(options)) {
  reset();
}

void DeepColoringImpl::reset() {
  TORCH_CHECK(options.num_colors() >= 1, "DeepColoring: num_colors must be >= 1, got ",
              options.num_colors());
  TORCH_CHECK(options.min_size() >= 1, "DeepColoring: min_size must be >= 1, got ",
              options.min_size());
  auto unet_options = options.unet();
  unet_options.num_classes(1 + options.num_colors());
  unet = register_module("unet", UNet(unet_options));
}

at::Tensor DeepColoringImpl::forward(const at::Tensor& x) { return unet->forward(x); }

std::vector<InstancePrediction> DeepColoringImpl::predict(const at::Tensor& x) {
  const auto logits = forward(x);
  std::vector<InstancePrediction> out;
  for (int64_t i = 0; i < logits.size(0); ++i) {
    out.push_back(deep_coloring_instances(logits[i], options.min_size()));
  }
  return out;
}

InstancePrediction deep_coloring_instances(const at::Tensor& logits, int64_t min_size) {
  TORCH_CHECK(logits.dim() == 3 && logits.size(0) >= 2,
              "deep_coloring_instances: logits should be [1+K,H,W] with K >= 1, got ",
              logits.sizes());
  TORCH_CHECK(min_size >= 1, "deep_coloring_instances: min_size must be >= 1, got ", min_size);
  const auto probs = logits.detach().to(at::kCPU, at::kFloat).softmax(0);
  const auto [best, colour] = probs.max(0);
  const int64_t h = logits.size(1), w = logits.size(2);
  detail::ScoredComponents instances(h, w, min_size);
  for (int64_t c = 1; c < logits.size(0); ++c) {
    const auto region = colour == c;
    if (!region.any().item<bool>()) continue;
    int64_t count = 0;
    const auto components = ops::connected_components(region, &count).to(at::kLong);
    instances.add(components, count, probs[c]);
  }
  return std::move(instances).finish();
}

at::Tensor masks_to_label_image(const at::Tensor& masks, int64_t height, int64_t width) {
  TORCH_CHECK(masks.dim() == 3 && masks.size(1) == height && masks.size(2) == width,
              "masks_to_label_image: masks should be [K,", height, ",", width, "], got ",
              masks.sizes());
  auto labels = at::zeros({height, width}, at::kLong);
  for (int64_t k = 0; k < masks.size(0); ++k) {
    labels.masked_fill_(masks[k].to(at::kCPU).ne(0), k + 1);
  }
  return labels;
}

}  // namespace ostrov::models
