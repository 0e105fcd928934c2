#include "ostrov/losses/style.h"

#include <algorithm>
#include <string>

#include <ATen/ATen.h>

namespace ostrov::losses {

namespace functional {

at::Tensor gram_matrix(const at::Tensor& features) {
  TORCH_CHECK(features.dim() == 4, "gram_matrix: features should be [N,C,H,W], got ",
              features.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()),
              "gram_matrix: features should be floating point, got ", features.scalar_type());
  const int64_t n = features.size(0), c = features.size(1);
  const int64_t hw = features.size(2) * features.size(3);
  TORCH_CHECK(c * hw > 0, "gram_matrix: empty features ", features.sizes());
  auto f = features.reshape({n, c, hw});
  return at::bmm(f, f.transpose(1, 2)) / static_cast<double>(c * hw);
}

at::Tensor style_loss(const std::vector<at::Tensor>& features,
                      const std::vector<at::Tensor>& target_grams,
                      const std::vector<double>& layer_weights) {
  TORCH_CHECK(!features.empty(), "style_loss: no feature layers");
  TORCH_CHECK(features.size() == target_grams.size(), "style_loss: ", features.size(),
              " feature layers but ", target_grams.size(), " target Gram matrices");
  TORCH_CHECK(layer_weights.empty() || layer_weights.size() == features.size(), "style_loss: ",
              layer_weights.size(), " layer weights for ", features.size(), " layers");
  at::Tensor total;
  for (size_t l = 0; l < features.size(); ++l) {
    auto g = gram_matrix(features[l]);  // [N,C,C]
    const auto& t = target_grams[l];
    const int64_t c = g.size(1);
    TORCH_CHECK((t.dim() == 2 && t.size(0) == c && t.size(1) == c) ||
                    (t.dim() == 3 && (t.size(0) == 1 || t.size(0) == g.size(0)) && t.size(1) == c &&
                     t.size(2) == c),
                "style_loss: layer ", l, ": target Gram ", t.sizes(), " does not fit features ",
                features[l].sizes(), " (expected [", c, ",", c, "] or [N,", c, ",", c, "])");
    auto term = (g - t.to(g.scalar_type())).pow(2).sum({1, 2}).mean();
    if (!layer_weights.empty()) term = term * layer_weights[l];
    total = total.defined() ? total + term : term;
  }
  return total;
}

at::Tensor content_loss(const at::Tensor& features, const at::Tensor& target) {
  TORCH_CHECK(features.dim() == 4, "content_loss: features should be [N,C,H,W], got ",
              features.sizes());
  auto t = target.dim() == 3 ? target.unsqueeze(0) : target;
  TORCH_CHECK(t.dim() == 4 && (t.size(0) == 1 || t.size(0) == features.size(0)) &&
                  t.sizes().slice(1) == features.sizes().slice(1),
              "content_loss: target ", target.sizes(), " does not match features ",
              features.sizes());
  return (features - t.to(features.scalar_type())).pow(2).sum({1, 2, 3}).mean();
}

at::Tensor total_variation(const at::Tensor& images, int64_t power) {
  TORCH_CHECK(images.dim() == 4, "total_variation: images should be [N,C,H,W], got ",
              images.sizes());
  TORCH_CHECK(power == 1 || power == 2, "total_variation: power must be 1 or 2, got ", power);
  const int64_t h = images.size(2), w = images.size(3);
  auto dy = images.narrow(2, 1, std::max<int64_t>(h - 1, 0)) - images.narrow(2, 0, std::max<int64_t>(h - 1, 0));
  auto dx = images.narrow(3, 1, std::max<int64_t>(w - 1, 0)) - images.narrow(3, 0, std::max<int64_t>(w - 1, 0));
  auto f = [power](const at::Tensor& d) { return power == 2 ? d.pow(2) : d.abs(); };
  return f(dy).sum({1, 2, 3}).mean() + f(dx).sum({1, 2, 3}).mean();
}

}  // namespace functional

StyleLossImpl::StyleLossImpl(std::vector<at::Tensor> target_grams_,
                             std::vector<double> layer_weights_)
    : target_grams(std::move(target_grams_)), layer_weights(std::move(layer_weights_)) {
  reset();
}

void StyleLossImpl::reset() {
  TORCH_CHECK(!target_grams.empty(), "StyleLoss: no target Gram matrices");
  TORCH_CHECK(layer_weights.empty() || layer_weights.size() == target_grams.size(), "StyleLoss: ",
              layer_weights.size(), " layer weights for ", target_grams.size(), " layers");
  for (size_t l = 0; l < target_grams.size(); ++l) {
    TORCH_CHECK(target_grams[l].defined(), "StyleLoss: target Gram ", l, " is undefined");
    target_grams[l] =
        register_buffer("gram_" + std::to_string(l), target_grams[l].detach().clone());
  }
}

at::Tensor StyleLossImpl::forward(const std::vector<at::Tensor>& features) {
  return functional::style_loss(features, target_grams, layer_weights);
}

void StyleLossImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::StyleLoss(layers=" << target_grams.size() << ")";
}

ContentLossImpl::ContentLossImpl(at::Tensor target_) : target(std::move(target_)) { reset(); }

void ContentLossImpl::reset() {
  TORCH_CHECK(target.defined(), "ContentLoss: the target features are undefined");
  target = register_buffer("target", target.detach().clone());
}

at::Tensor ContentLossImpl::forward(const at::Tensor& features) {
  return functional::content_loss(features, target);
}

void ContentLossImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::ContentLoss(target=" << target.sizes() << ")";
}

TotalVariationImpl::TotalVariationImpl(TotalVariationOptions options_) : options(options_) {
  reset();
}

void TotalVariationImpl::reset() {
  TORCH_CHECK(options.power() == 1 || options.power() == 2,
              "TotalVariation: power must be 1 or 2, got ", options.power());
}

at::Tensor TotalVariationImpl::forward(const at::Tensor& images) {
  return functional::total_variation(images, options.power());
}

void TotalVariationImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::TotalVariation(power=" << options.power() << ")";
}

}  // namespace ostrov::losses
