#include "ostrov/models/instance/deep_coloring.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "ostrov/ops/instance.h"

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
  std::vector<at::Tensor> masks;
  std::vector<float> scores;
  for (int64_t c = 1; c < logits.size(0); ++c) {
    const auto region = colour == c;
    if (!region.any().item<bool>()) continue;
    int64_t count = 0;
    const auto components = ops::connected_components(region, &count).to(at::kLong);
    if (count == 0) continue;
    // Pixels and probability sums of every component in one pass.
    const auto flat = components.flatten();
    const auto areas = at::bincount(flat, {}, count + 1);
    const auto sums = at::bincount(flat, probs[c].flatten().to(at::kDouble), count + 1);
    const auto* area = areas.data_ptr<int64_t>();
    const auto* sum = sums.data_ptr<double>();
    for (int64_t k = 1; k <= count; ++k) {
      if (area[k] < min_size) continue;
      masks.push_back((components == k).to(at::kByte));
      scores.push_back(static_cast<float>(sum[k] / static_cast<double>(area[k])));
    }
  }
  InstancePrediction out;
  out.masks = masks.empty() ? at::zeros({0, h, w}, at::kByte) : at::stack(masks);
  out.scores = at::tensor(scores, at::kFloat);
  return out;
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
