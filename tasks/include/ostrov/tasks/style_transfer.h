#pragma once
// Neural style transfer by optimising the image (Gatys, Ecker & Bethge, "Image Style Transfer
// Using Convolutional Neural Networks", CVPR 2016), with colour preservation by luminance-only
// transfer (Gatys, Bethge, Hertzmann & Shechtman, "Preserving Color in Neural Artistic Style
// Transfer", arXiv:1606.05897, 2016). It sits in ostrov::tasks because it joins a model (the
// VGG of ostrov::models) with losses (ostrov::losses' Gram matrix).
//
//   ostrov::models::VGGFeatures vgg(ostrov::models::VGGFeaturesOptions(19).pooling("avg"));
//   vgg->load_weights("vgg19.pth");                      // torchvision's state_dict file
//   auto result = ostrov::tasks::stylize(vgg, content, {{starry, 1.0}},
//                                        ostrov::tasks::StyleTransferOptions().size(512));
//   ostrov::core::write_image("out.png", ostrov::core::tensor_to_image(result.image));
//
// Loss terms (written out so their scale does not depend on the image size):
//   content = mean over C,H,W of (F(x) - F(c))^2 at the content layer
//   style   = sum_s w_s sum_l v_l * mean over C_l x C_l of (G_l(x) - G_l(s))^2,
//             G = F F^T / (C H W) (ostrov::losses::functional::gram_matrix), style-image weights
//             w_s normalised to sum 1, layer weights v_l
//   tv      = mean over pixels of squared neighbour differences (vertical + horizontal)
//   total   = content_weight * content + style_weight * style + tv_weight * tv

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include "ostrov/models/style/vgg_features.h"

namespace ostrov::tasks {

/// Largest output side `stylize` accepts (memory: VGG19 activations at 4096^2 need ~20 GB).
inline constexpr int64_t kMaxStyleTransferSize = 4096;

/// A style image [3,H,W] float RGB in [0,1] and its weight (weights are normalised to sum 1).
struct StyleImage {
  at::Tensor image;     ///< [3,H,W] float RGB in [0,1], any size (resized like the content)
  double weight = 1.0;  ///< >= 0 and finite; the weights of all style images must sum > 0
};

/// Unweighted loss terms (see the file comment) and the weighted total.
struct StyleLosses {
  double content = 0;  ///< content term
  double style = 0;    ///< style term (over every style image and layer)
  double tv = 0;       ///< total variation (0 when tv_weight is 0)
  double total = 0;    ///< the weighted sum that is minimised
};

/// What the callback receives every `callback_every` steps and after the last step.
struct StyleTransferProgress {
  int64_t step = 0;         ///< steps done, 1..steps
  int64_t evaluations = 0;  ///< forward+backward passes so far
  StyleLosses losses;       ///< at the latest evaluation
  at::Tensor image;    ///< current image [3,H,W] float RGB in [0,1] (a detached copy)
};

using StyleTransferCallback = std::function<void(const StyleTransferProgress&)>;

/// Options of `stylize`.
struct StyleTransferOptions {
  /// Style layers (VGGFeatures names) and their weights (empty: 1 each).
  TORCH_ARG(std::vector<std::string>, style_layers) = {"conv1_1", "conv2_1", "conv3_1",
                                                       "conv4_1", "conv5_1"};
  /// Weight v_l of each style layer, in style_layers' order: empty (1 each) or one per layer.
  TORCH_ARG(std::vector<double>, style_layer_weights) = {};
  /// Layer (VGGFeatures name) whose features the content term compares.
  TORCH_ARG(std::string, content_layer) = "conv4_2";
  /// Weight of the content term in the total (>= 0).
  TORCH_ARG(double, content_weight) = 1.0;
  /// Weight of the style term in the total (>= 0).
  TORCH_ARG(double, style_weight) = 1e6;
  /// Weight of total variation (0: off); ~1e-3..1e-1 smooths high-frequency noise.
  TORCH_ARG(double, tv_weight) = 0.0;
  /// Starting image: "content", "style" (the first style image resized to the output size)
  /// or "noise" (uniform in [0,1], from torch's default generator: seed it to repeat).
  TORCH_ARG(std::string, init) = "content";
  /// "lbfgs" (torch::optim::LBFGS with strong-Wolfe line search; a step is one L-BFGS
  /// iteration, about 1 to 2 forward+backward passes) or "adam" (a step is one pass).
  TORCH_ARG(std::string, optimizer) = "lbfgs";
  /// Learning rate; <= 0 picks the default: 1 for L-BFGS, 0.02 for Adam.
  TORCH_ARG(double, lr) = 0.0;
  /// Optimisation steps (L-BFGS iterations or Adam updates), >= 1.
  TORCH_ARG(int64_t, steps) = 300;
  /// Longer side of the output in pixels (1..kMaxStyleTransferSize); the content is resized
  /// to it keeping its aspect ratio, each style image likewise. 0 keeps the content's size.
  TORCH_ARG(int64_t, size) = 512;
  /// Luminance-only transfer: optimise the Y channel of YCrCb against luminance-only style
  /// images (their Y matched to the content's mean and std) and keep the content's Cr, Cb.
  TORCH_ARG(bool, preserve_color) = false;
  /// Call `callback` every this many steps and after the last (0: only after the last).
  /// L-BFGS runs the steps between two calls in one step() call, so small values cost up to
  /// one extra forward+backward per call.
  TORCH_ARG(int64_t, callback_every) = 0;
  /// Receives the progress (with the current image) as callback_every says (null: none).
  TORCH_ARG(StyleTransferCallback, callback) = nullptr;
};

/// Result of `stylize`.
struct StyleTransferResult {
  at::Tensor image;    ///< [3,H,W] float RGB in [0,1], H,W as the resized content
  StyleLosses losses;  ///< at the final image (evaluated once more after the last step)
  StyleLosses initial_losses;  ///< at the starting image
  int64_t steps = 0;        ///< optimisation steps run (options.steps())
  int64_t evaluations = 0;  ///< forward+backward passes (L-BFGS: more than steps)
};

/// Stylises `content` ([3,H,W] float RGB in [0,1]) with `styles` (at least one) using `vgg`'s
/// features, on the content's device. Gradients flow to the image only (the VGG is frozen);
/// do not call it under c10::InferenceMode. Throws c10::Error for wrong shapes, unknown layer
/// names or options out of range (with the values).
StyleTransferResult stylize(models::VGGFeatures& vgg, const at::Tensor& content,
                            const std::vector<StyleImage>& styles,
                            const StyleTransferOptions& options = {});

/// RGB [...,3,H,W] in [0,1] -> YCrCb [...,3,H,W] (OpenCV's float convention: Y = 0.299 R +
/// 0.587 G + 0.114 B, Cr = 0.713 (R - Y) + 0.5, Cb = 0.564 (B - Y) + 0.5).
at::Tensor rgb_to_ycrcb(const at::Tensor& rgb);
/// Exact inverse of rgb_to_ycrcb (no clamping).
at::Tensor ycrcb_to_rgb(const at::Tensor& ycrcb);

}  // namespace ostrov::tasks
