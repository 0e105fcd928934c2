#pragma once
// Neural style transfer losses (Gatys, Ecker, Bethge, "Image Style Transfer Using
// Convolutional Neural Networks", CVPR 2016): Gram matrices of feature maps, the style and
// content losses, and total variation (Mahendran & Vedaldi 2015) as a smoothness prior.
//
//   auto grams = ... gram_matrix(vgg_features_of_style[l]) ...;      // once
//   ostrov::losses::StyleLoss style(grams, {1, 1, 1, 1, 1});
//   ostrov::losses::ContentLoss content(vgg_features_of_content[3]);
//   auto loss = content(features[3]) + 1e6 * style(features) + 1e-4 * total_variation(x);

#include <cstdint>
#include <ostream>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace ostrov::losses {

namespace functional {

/// Gram matrix G = F F^T / (C*H*W) of features [N,C,H,W] (F viewed as [N,C,H*W]) -> [N,C,C].
at::Tensor gram_matrix(const at::Tensor& features);

/// Style loss sum_l w_l * ||G(x_l) - G_l||^2 (squared Frobenius norm, averaged over the batch):
///   features: per layer [N,C_l,H_l,W_l]; target_grams: per layer [C_l,C_l] (broadcast over
///   the batch) or [N,C_l,C_l]; layer_weights: empty (all 1) or one per layer.
at::Tensor style_loss(const std::vector<at::Tensor>& features,
                      const std::vector<at::Tensor>& target_grams,
                      const std::vector<double>& layer_weights = {});

/// Content loss ||Phi(x) - Phi(c)||^2: sum of squares over C,H,W, averaged over the batch.
/// features [N,C,H,W]; target [N,C,H,W] or [1,C,H,W] / [C,H,W] broadcast over the batch.
at::Tensor content_loss(const at::Tensor& features, const at::Tensor& target);

/// Total variation of images [N,C,H,W], averaged over the batch:
///   power 2: sum (x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2   (smooth, the default)
///   power 1: sum |x[i+1,j]-x[i,j]| + |x[i,j+1]-x[i,j]|       (anisotropic L1)
at::Tensor total_variation(const at::Tensor& images, int64_t power = 2);

}  // namespace functional

/// Holds the style image's Gram matrices (buffers "gram_0", "gram_1", ... so .to(device) moves
/// them) and layer weights: forward(features per layer) -> scalar style loss.
class StyleLossImpl : public torch::nn::Cloneable<StyleLossImpl> {
 public:
  /// target_grams: per layer [C_l,C_l] (e.g. gram_matrix(style_features)[0]) or [1,C_l,C_l].
  explicit StyleLossImpl(std::vector<at::Tensor> target_grams,
                         std::vector<double> layer_weights = {});
  void reset() override;
  /// features: per layer [N,C_l,H_l,W_l], one per Gram matrix -> functional::style_loss.
  at::Tensor forward(const std::vector<at::Tensor>& features);
  void pretty_print(std::ostream& stream) const override;

  /// Detached copies of the constructor's matrices, the buffers "gram_0", "gram_1", ...
  std::vector<at::Tensor> target_grams;
  /// Empty (all 1) or one weight per layer; c10::Error from the constructor otherwise.
  std::vector<double> layer_weights;
};
TORCH_MODULE(StyleLoss);

/// Holds the content image's features (buffer "target"): forward(features) -> scalar.
class ContentLossImpl : public torch::nn::Cloneable<ContentLossImpl> {
 public:
  /// target: the content features [N,C,H,W], [1,C,H,W] or [C,H,W]; c10::Error if undefined.
  explicit ContentLossImpl(at::Tensor target);
  void reset() override;
  /// features [N,C,H,W] -> functional::content_loss(features, target).
  at::Tensor forward(const at::Tensor& features);
  void pretty_print(std::ostream& stream) const override;

  /// A detached copy of the constructor's target, the buffer "target".
  at::Tensor target;
};
TORCH_MODULE(ContentLoss);

/// Options of TotalVariation.
struct TotalVariationOptions {
  /// 2 (squared differences) or 1 (absolute differences).
  TORCH_ARG(int64_t, power) = 2;
};

/// forward(images [N,C,H,W]) -> scalar total variation.
class TotalVariationImpl : public torch::nn::Cloneable<TotalVariationImpl> {
 public:
  /// c10::Error for a power other than 1 or 2.
  explicit TotalVariationImpl(TotalVariationOptions options = {});
  void reset() override;
  /// images [N,C,H,W] -> functional::total_variation(images, options.power()).
  at::Tensor forward(const at::Tensor& images);
  void pretty_print(std::ostream& stream) const override;

  TotalVariationOptions options;  ///< checked by reset() and again on every forward
};
TORCH_MODULE(TotalVariation);

}  // namespace ostrov::losses
