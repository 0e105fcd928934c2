#pragma once
// Skip-connection fusion for encoder-decoder networks: FCN sums a skip's class scores into the
// up-sampled ones (Long et al. 2015, after cropping the skip), U-Net concatenates the cropped
// encoder features with the decoder's (Ronneberger et al. 2015, "valid" convolutions make the
// encoder maps larger), and odd input sizes leave maps one pixel apart. The skip is therefore
// centre-cropped or zero-padded to the decoder tensor's spatial size before fusing.
//
// Centring convention (shared by every function here): when the size difference is odd, the
// extra row/column is removed from or added at the bottom/right, i.e. the top/left offset is
// `floor(difference / 2)` (U-Net's `(H - h) // 2`).

#include <cstdint>

#include <torch/types.h>

namespace ostrov::nn {

/// The central h x w window of x: `[..., H, W]` -> `[..., h, w]` (a view), top/left offset
/// `(H-h)/2`, `(W-w)/2`. Requires `x.dim() >= 2`, `0 < h <= H` and `0 < w <= W`.
torch::Tensor center_crop(const torch::Tensor& x, int64_t h, int64_t w);

/// Zero-pads x to h x w, centred: `[..., H, W]` -> `[..., h, w]`, `(h-H)/2` rows above and the
/// rest below (same for columns). Requires `x.dim() >= 2`, `h >= H` and `w >= W`.
torch::Tensor pad_to(const torch::Tensor& x, int64_t h, int64_t w);

/// Crops or zero-pads each spatial dimension independently so that `[..., H, W]` becomes
/// `[..., h, w]` (center_crop where larger, pad_to where smaller). Returns x itself when the
/// size already matches.
torch::Tensor crop_or_pad(const torch::Tensor& x, int64_t h, int64_t w);

/// `a + crop_or_pad(b, H_a, W_a)`: a `[N, C, H_a, W_a]`, skip b `[N, C, H_b, W_b]` ->
/// `[N, C, H_a, W_a]`. Batch and channel counts must match; the error prints both sizes.
torch::Tensor fuse_sum(const torch::Tensor& a, const torch::Tensor& b);

/// `cat({a, crop_or_pad(b, H_a, W_a)}, 1)`: a `[N, C_a, H_a, W_a]`, skip b `[N, C_b, H_b, W_b]`
/// -> `[N, C_a + C_b, H_a, W_a]`, a's channels first. Batch counts must match.
torch::Tensor fuse_concat(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace ostrov::nn
