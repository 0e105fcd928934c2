#include "ostrov/models/instance/deep_watershed.h"

#include <queue>
#include <tuple>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/modules/conv.h>

#include "ostrov/nn/conv_bn_act.h"
#include "ostrov/ops/instance.h"
#include "scored_components.h"

namespace ostrov::models {

namespace {

torch::nn::Sequential make_head(int64_t in, int64_t mid, int64_t out, bool batch_norm) {
  torch::nn::Sequential head;
  head->push_back(nn::ConvBnAct(nn::ConvBnActOptions(in, mid, 3).batch_norm(batch_norm)));
  head->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(mid, out, 1)));
  return head;
}

}  // namespace

DeepWatershedImpl::DeepWatershedImpl(DeepWatershedOptions options) : options(std::move(options)) {
  reset();
}

void DeepWatershedImpl::reset() {
  TORCH_CHECK(options.num_levels() >= 2, "DeepWatershed: num_levels must be >= 2, got ",
              options.num_levels());
  TORCH_CHECK(options.level_step() > 0, "DeepWatershed: level_step must be > 0, got ",
              options.level_step());
  TORCH_CHECK(options.extract().cut_level() >= 1 &&
                  options.extract().cut_level() < options.num_levels(),
              "DeepWatershed: cut_level must lie in [1, num_levels), got ",
              options.extract().cut_level());
  TORCH_CHECK(options.extract().min_size() >= 1, "DeepWatershed: min_size must be >= 1, got ",
              options.extract().min_size());
  auto trunk = options.unet();
  const int64_t features = trunk.base_width();
  trunk.num_classes(features);
  unet = register_module("unet", UNet(trunk));
  const bool bn = trunk.batch_norm();
  direction_head = register_module("direction_head", make_head(features, features, 2, bn));
  const int64_t energy_in = features + (options.direction_to_energy() ? 2 : 0);
  energy_head =
      register_module("energy_head", make_head(energy_in, features, options.num_levels(), bn));
}

WatershedOutput DeepWatershedImpl::forward(const at::Tensor& x) {
  const auto features = at::relu(unet->forward(x));
  WatershedOutput out;
  out.direction = direction_head->forward(features);
  if (options.direction_to_energy()) {
    // The unit field, as the paper's watershed network reads it (its length carries no meaning).
    const auto unit = out.direction / out.direction.norm(2, 1, true).clamp_min(1e-6);
    out.energy = energy_head->forward(at::cat({features, unit}, 1));
  } else {
    out.energy = energy_head->forward(features);
  }
  return out;
}

std::vector<InstancePrediction> DeepWatershedImpl::predict(const at::Tensor& x) {
  const auto energy = forward(x).energy;
  std::vector<InstancePrediction> out;
  for (int64_t i = 0; i < energy.size(0); ++i) {
    out.push_back(watershed_instances(energy[i], options.extract()));
  }
  return out;
}

InstancePrediction watershed_instances(const at::Tensor& energy_logits,
                                       const WatershedExtractOptions& options) {
  TORCH_CHECK(energy_logits.dim() == 3 && energy_logits.size(0) >= 2,
              "watershed_instances: energy logits should be [K,H,W] with K >= 2, got ",
              energy_logits.sizes());
  const int64_t levels = energy_logits.size(0), h = energy_logits.size(1),
                w = energy_logits.size(2);
  TORCH_CHECK(options.cut_level() >= 1 && options.cut_level() < levels,
              "watershed_instances: cut_level must lie in [1, ", levels, "), got ",
              options.cut_level());
  TORCH_CHECK(options.min_size() >= 1, "watershed_instances: min_size must be >= 1, got ",
              options.min_size());
  const auto probs = energy_logits.detach().to(at::kCPU, at::kFloat).softmax(0);
  const auto level = probs.argmax(0);
  const auto ramp = at::arange(levels, probs.options()).view({levels, 1, 1});
  const auto expected = (probs * ramp).sum(0).contiguous();
  const auto foreground_prob = (1 - probs[0]).contiguous();

  int64_t seeds = 0;
  auto labels = ops::connected_components(level >= options.cut_level(), &seeds)
                    .to(at::kLong)
                    .contiguous();
  const auto fg = (level >= 1).to(at::kByte).contiguous();
  int64_t* lab = labels.data_ptr<int64_t>();
  const uint8_t* is_fg = fg.data_ptr<uint8_t>();
  const float* e = expected.data_ptr<float>();

  // Priority flood from every seed pixel on the edge of its seed, highest energy first; the
  // insertion counter makes ties first-in first-out, so the result does not depend on the
  // queue's internals.
  using Item = std::tuple<float, int64_t, int64_t>;  // energy, -order, pixel
  std::priority_queue<Item> queue;
  int64_t order = 0;
  const int64_t n = h * w;
  for (int64_t p = 0; p < n; ++p) {
    if (lab[p] > 0) queue.emplace(e[p], -(order++), p);
  }
  constexpr int kDy[8] = {-1, 1, 0, 0, -1, -1, 1, 1};
  constexpr int kDx[8] = {0, 0, -1, 1, -1, 1, -1, 1};
  while (!queue.empty()) {
    const int64_t p = std::get<2>(queue.top());
    queue.pop();
    const int64_t y = p / w, x = p % w;
    for (int d = 0; d < 8; ++d) {
      const int64_t yy = y + kDy[d], xx = x + kDx[d];
      if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
      const int64_t q = yy * w + xx;
      if (!is_fg[q] || lab[q] != 0) continue;
      lab[q] = lab[p];
      queue.emplace(e[q], -(order++), q);
    }
  }
  // Foreground that no seed reached: objects whose energy never reaches the cut.
  int64_t rest = 0;
  const auto unreached = ops::connected_components(fg.to(at::kBool) & labels.eq(0), &rest)
                             .to(at::kLong);
  labels = at::where(unreached > 0, unreached + seeds, labels);

  detail::ScoredComponents instances(h, w, options.min_size());
  instances.add(labels, seeds + rest, foreground_prob);
  return std::move(instances).finish();
}

}  // namespace ostrov::models
