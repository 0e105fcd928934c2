#pragma once
// Input padding for segmentation networks that accept any H x W: each model extends its input
// to the size its architecture needs (a multiple of its total stride, U-Net's overlap tile, the
// FCN's margin around the image), runs, and crops the logits back to H x W. This replaces the
// "input must be divisible by 32" failures of other libraries.

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace ostrov::models {

/// How the added border is filled.
enum class InputPadding {
  /// Mirror the image at its edges (edge pixel not repeated, as torch's "reflect"); margins
  /// larger than the image mirror repeatedly, and a 1-pixel side is replicated. The default of
  /// every model: no artificial dark border (U-Net's overlap-tile strategy).
  kReflect,
  /// Zeros (the value of a normalised image's mean).
  kZero,
};

/// Parses "reflect" (alias "mirror") or "zero" (alias "zeros", "constant").
/// Throws c10::Error naming the string for anything else.
InputPadding input_padding_from_string(const std::string& name);
/// "reflect" or "zero".
std::string to_string(InputPadding mode);

/// A padded input and where the original image lies in it.
struct PaddedInput {
  /// `[N, C, top + height + bottom, left + width + right]`.
  at::Tensor tensor;
  /// Rows added above the image: its first row in `tensor`.
  int64_t top = 0;
  /// Columns added left of the image: its first column in `tensor`.
  int64_t left = 0;
  /// Size of the original image.
  int64_t height = 0;
  /// Width of the original image (x's W).
  int64_t width = 0;
};

/// Pads x `[N, C, H, W]` (floating point, H, W >= 1) by the given non-negative margins.
PaddedInput pad_input(const at::Tensor& x, int64_t top, int64_t bottom, int64_t left,
                      int64_t right, InputPadding mode);

/// Pads x `[N, C, H, W]` to the smallest size S >= max(side, min_size) with
/// `S % multiple == remainder` in each spatial dimension, the image centred (the odd pixel of
/// the margin goes to the bottom/right). E.g. multiple 32 for a network with five poolings;
/// multiple 8, remainder 1 for DeepLab/PSPNet's "8k+1" sizes.
PaddedInput pad_to_multiple(const at::Tensor& x, int64_t multiple, InputPadding mode,
                            int64_t remainder = 0, int64_t min_size = 1);

/// The image's window of y `[N, K, H_p, W_p]`, where H_p x W_p is `padded.tensor`'s size:
/// `y[:, :, top:top+height, left:left+width]` (a view).
at::Tensor crop_to_input(const at::Tensor& y, const PaddedInput& padded);

}  // namespace ostrov::models
