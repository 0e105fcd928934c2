#pragma once
// U-Net's training targets from instance masks (Ronneberger, Fischer, Brox, "U-Net:
// Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015):
//  - the weight map w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)), which makes the
//    thin background gaps between touching cells expensive to get wrong;
//  - the 3-class cell / border / background target, an alternative that turns separating
//    touching cells into a class of its own (weight the border class up in CrossEntropy).
// Both feed functional::cross_entropy (pixel_weights and target).

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

namespace ostrov::losses {

/// Options of unet_weight_map.
struct UNetWeightMapOptions {
  /// Amplitude w0 of the border term (paper: 10).
  TORCH_ARG(double, w0) = 10.0;
  /// Width sigma of the border term in pixels (paper: ~5).
  TORCH_ARG(double, sigma) = 5.0;
  /// w_c: true gives each of background and foreground the weight
  /// (number of pixels) / (2 * pixels of that class) (inverse frequency, mean 1 over the
  /// image; a class absent from the image gets no pixels, the other weight 1); false: w_c = 1.
  TORCH_ARG(bool, balance_classes) = true;
  /// Fixed w_c as {background, foreground}; overrides balance_classes when not empty.
  TORCH_ARG(std::vector<double>, class_weights) = {};
};

/// Weight map of instance masks: instances [H,W] or [N,H,W] integer (0 = background, each
/// other value one object) -> float [H,W] or [N,H,W] on the CPU.
/// d1(x), d2(x): Euclidean distances (OpenCV distanceTransform, exact) from x to the nearest
/// pixel of the nearest and of the second-nearest object. The border term is added on
/// background pixels only (inside a cell d1 = 0 and the term would only blur the cell) and
/// only where at least two objects exist.
at::Tensor unet_weight_map(const at::Tensor& instances, const UNetWeightMapOptions& options = {});

/// Class ids of unet_three_class_target.
enum UNetClass : int64_t { kUNetBackground = 0, kUNetCell = 1, kUNetBorder = 2 };

/// 3-class target of instance masks: instances [H,W] or [N,H,W] integer -> int64 of the same
/// shape on the CPU with 0 = background, 1 = cell interior, 2 = border: the object pixels that
/// have, within `border_width` pixels (a (2b+1)x(2b+1) square), a pixel of another label
/// (background or another object). The image edge is not a border.
at::Tensor unet_three_class_target(const at::Tensor& instances, int64_t border_width = 1);

/// Inverse-frequency class weights per pixel: target [..] int64 class map -> float map with
/// #counted pixels / (#classes present * #pixels of that class) on each pixel, 0 on
/// ignore_index. Use it as w_c for a multi-class target (e.g. the 3-class one).
at::Tensor class_balance_map(const at::Tensor& target, int64_t ignore_index = 255);

}  // namespace ostrov::losses
