#pragma once
// SSD prior ("default") boxes, W. Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016,
// section 2.2 "Choosing scales and aspect ratios for default boxes".
//
// Two generators that reproduce the two reference implementations box for box and in the same
// order (for each feature map k, for each cell in row-major order (y, then x), the boxes of
// that cell: scale s_k, then sqrt(s_k s_{k+1}), then for each aspect ratio a the pair
// (s_k sqrt(a), s_k / sqrt(a)) and (s_k / sqrt(a), s_k sqrt(a))):
//  - DefaultBoxGenerator: torchvision.models.detection.anchor_utils.DefaultBoxGenerator
//    (the one ssd300_vgg16 uses), as shipped in torchvision 0.14 (Debian 12).
//  - prior_boxes(PriorBoxOptions): ssd.pytorch's `layers/functions/prior_box.py` PriorBox.
// For SSD300 both give 8732 boxes = 38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4.

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <torch/arg.h>

namespace ostrov::ops {

/// Options of DefaultBoxGenerator, with the arguments and defaults of torchvision's
/// `DefaultBoxGenerator(aspect_ratios, min_ratio=0.15, max_ratio=0.9, scales=None, steps=None,
/// clip=True)`.
///
/// Example (what torchvision's ssd300_vgg16 builds, also `DefaultBoxOptions::ssd300()`):
/// ```
/// auto options = ostrov::ops::DefaultBoxOptions({{2}, {2, 3}, {2, 3}, {2, 3}, {2}, {2}})
///                    .scales({0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05})
///                    .steps({8, 16, 32, 64, 100, 300});
/// ```
struct DefaultBoxOptions {
  /// (With a single feature map write `std::vector<std::vector<double>>{{2}}`: a bare `{{2}}` is
  /// ambiguous with the copy constructor.)
  explicit DefaultBoxOptions(std::vector<std::vector<double>> aspect_ratios)
      : aspect_ratios_(std::move(aspect_ratios)) {}

  /// Extra aspect ratios (> 0) per feature map; each adds 2 boxes per cell (a and 1/a) to the
  /// two square ones. The number of lists is the number of feature maps K.
  TORCH_ARG(std::vector<std::vector<double>>, aspect_ratios);
  /// s_min of the paper's linear scale rule, used only when `scales` is empty:
  /// s_k = min_ratio + (max_ratio - min_ratio) k / (K - 1), k = 0..K-1, then s_K = 1.
  TORCH_ARG(double, min_ratio) = 0.15;
  /// s_max of the linear scale rule (only when `scales` is empty).
  TORCH_ARG(double, max_ratio) = 0.9;
  /// Explicit scales, K + 1 values (box side relative to the image); empty = linear rule.
  TORCH_ARG(std::vector<double>, scales) = {};
  /// Pixel step of each feature map's grid (K values); cell centres are at
  /// (i + 0.5) * step / image_side. Empty = 1 / grid size (centres spread over the image).
  TORCH_ARG(std::vector<int64_t>, steps) = {};
  /// Clamp widths and heights to [0, 1] (centres are never clipped, as in torchvision).
  TORCH_ARG(bool, clip) = true;

 public:
  /// torchvision's ssd300_vgg16 configuration: aspect ratios [[2],[2,3],[2,3],[2,3],[2],[2]],
  /// scales [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05] (torchvision's explicit list: 0.07 then
  /// 0.15..1.05 in steps of 0.18, not a plain linspace), steps [8,16,32,64,100,300], clip.
  static DefaultBoxOptions ssd300();
};

/// Grid size {height, width} of a feature map.
using GridSize = std::array<int64_t, 2>;

/// The feature-map sizes of SSD300 on a 300x300 input: 38, 19, 10, 5, 3, 1 (square).
std::vector<GridSize> ssd300_grid_sizes();

/// torchvision's DefaultBoxGenerator (torchvision 0.14), computed with the same tensor
/// operations in the same precision so the output matches it bit for bit.
///
/// Note on steps: torchvision PR #6551 fixed x and y being swapped for non-square images
/// (the x grid must use image width / step). The 0.14 code Debian ships already has the
/// fix: `x_f_k = image_size[1] / steps[k]`, `y_f_k = image_size[0] / steps[k]`; so does this.
class DefaultBoxGenerator {
 public:
  /// Computes the scales and (w, h) pairs. Throws c10::Error for no feature map, an aspect
  /// ratio that is not finite and > 0, steps that are not one per feature map or not > 0, or
  /// scales that are not K + 1 finite values > 0.
  explicit DefaultBoxGenerator(DefaultBoxOptions options);

  /// The options given to the constructor.
  const DefaultBoxOptions& options() const { return options_; }
  /// The K + 1 scales in use (given, or from the linear rule).
  const std::vector<double>& scales() const { return scales_; }
  /// Boxes per cell of each feature map: 2 + 2 * aspect_ratios[k].size().
  std::vector<int64_t> num_anchors_per_location() const;
  /// The (w, h) pairs of feature map k before clipping, float32 [2 + 2 A_k, 2].
  const at::Tensor& wh_pairs(int64_t k) const;

  /// torchvision's `_grid_default_boxes`: [sum_k H_k W_k (2 + 2 A_k), 4] boxes as
  /// (cx, cy, w, h) relative to the image (centres in (0, 1) when steps fit the image).
  /// `grid_sizes` {H_k, W_k} has one entry per feature map; `image_size` is {H, W} in pixels
  /// (only used with steps). Centres are computed in `dtype`, (w, h) in float32 (then promoted
  /// by the concatenation, as torchvision does).
  at::Tensor grid_default_boxes(const std::vector<GridSize>& grid_sizes, GridSize image_size,
                                at::ScalarType dtype = at::kFloat) const;

  /// torchvision's `forward` for one image: the same boxes as x1, y1, x2, y2 in pixels of an
  /// image of `image_size` {H, W}: (cx -+ w/2) * W, (cy -+ h/2) * H. [num_boxes, 4].
  at::Tensor forward(const std::vector<GridSize>& grid_sizes, GridSize image_size,
                     at::ScalarType dtype = at::kFloat) const;

 private:
  DefaultBoxOptions options_;
  std::vector<double> scales_;
  std::vector<at::Tensor> wh_pairs_;
};

/// Options of ssd.pytorch's PriorBox (its `voc`/`coco` config dictionaries). Feature maps are
/// square; sizes are in pixels of a square `min_dim` input.
struct PriorBoxOptions {
  /// All options but `clip`, which keeps its default (true).
  PriorBoxOptions(std::vector<int64_t> feature_maps, int64_t min_dim, std::vector<double> steps,
                  std::vector<double> min_sizes, std::vector<double> max_sizes,
                  std::vector<std::vector<double>> aspect_ratios)
      : feature_maps_(std::move(feature_maps)),
        min_dim_(min_dim),
        steps_(std::move(steps)),
        min_sizes_(std::move(min_sizes)),
        max_sizes_(std::move(max_sizes)),
        aspect_ratios_(std::move(aspect_ratios)) {}

  /// Side f_k of each square feature map.
  TORCH_ARG(std::vector<int64_t>, feature_maps);
  /// Input side in pixels (300 for SSD300).
  TORCH_ARG(int64_t, min_dim);
  /// Pixel step of each feature map: centres at (j + 0.5) / (min_dim / step).
  TORCH_ARG(std::vector<double>, steps);
  /// Side of the first square box, pixels (s_k = min_size / min_dim).
  TORCH_ARG(std::vector<double>, min_sizes);
  /// The second square box has side sqrt(s_k * max_size / min_dim).
  TORCH_ARG(std::vector<double>, max_sizes);
  /// Extra aspect ratios per feature map (each adds a and 1/a).
  TORCH_ARG(std::vector<std::vector<double>>, aspect_ratios);
  /// Clamp all four values (cx, cy, w, h) to [0, 1].
  TORCH_ARG(bool, clip) = true;

 public:
  /// ssd.pytorch's `voc` config (SSD300): feature maps 38,19,10,5,3,1, min_dim 300, steps
  /// 8,16,32,64,100,300, min sizes 30,60,111,162,213,264, max sizes 60,111,162,213,264,315,
  /// aspect ratios [[2],[2,3],[2,3],[2,3],[2],[2]], clip.
  static PriorBoxOptions voc();
};

/// ssd.pytorch's PriorBox.forward(): float32 [num_priors, 4] (cx, cy, w, h) relative to the
/// image, in [0, 1] with clip. For each feature map k and each cell (i row, j column, row-major),
/// with f = min_dim / steps[k], cx = (j + 0.5) / f, cy = (i + 0.5) / f, s = min_sizes[k] / min_dim:
/// (cx, cy, s, s), (cx, cy, s', s') with s' = sqrt(s * max_sizes[k] / min_dim), then for each
/// aspect ratio a: (cx, cy, s sqrt(a), s / sqrt(a)), (cx, cy, s / sqrt(a), s sqrt(a)).
/// Computed in float64 (as Python does) and rounded to float32 once, then clipped.
at::Tensor prior_boxes(const PriorBoxOptions& options);

}  // namespace ostrov::ops
