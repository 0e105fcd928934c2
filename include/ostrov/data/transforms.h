#pragma once
// Joint transforms: each maps a Sample to a Sample, changing the image, the class mask, the
// instance masks and the boxes together so they stay aligned.
//
// Conventions (see sample.h): image [3,H,W] float32 RGB in [0,1] (until Normalize), mask [H,W]
// int64 (255 = ignore), instances [K,H,W] uint8, boxes [K,4] float32 x1,y1,x2,y2 in pixel-edge
// coordinates (a box around pixel columns a..b-1 is x1 = a, x2 = b), labels [K] int64,
// iscrowd [K] uint8. Any field except the image may be undefined and is then left undefined.
//
// Geometry:
//  - Masks are resampled by centre-aligned nearest neighbour (PyTorch's "nearest-exact":
//    output pixel j takes source pixel floor((j + 0.5) * in / out); core::resize_mask uses
//    OpenCV's floor(j * in / out) instead), on the same grid as the bilinear image
//    (align_corners = false), so a resized mask pixel belongs to an object when its centre lies
//    inside the scaled object: boxes and masks stay within half a pixel of each other.
//  - After every geometric step the boxes are clipped to the image and boxes narrower or lower
//    than kMinBoxSize pixels are dropped together with their labels, instance masks and
//    iscrowd flags (see sanitize_boxes). Class-mask pixels are never erased.
//  - Padding fills the image with a per-channel value, the class mask with `mask_fill`
//    (default 255 = ignore) and instance masks with 0.
//
// Randomness comes only from the engine passed to operator(), so a transform applied to the
// same sample with an engine in the same state gives the same result on any thread. Random
// numbers are drawn with ostrov's own portable formulas from the engine's raw 64-bit output
// (not std::uniform_*_distribution, whose results differ between standard libraries).
//
// Typical SSD training pipeline (as ssd.pytorch's SSDAugmentation / torchvision's references):
// ```
//   auto t = std::make_shared<ostrov::data::Compose>(std::vector<std::shared_ptr<const Transform>>{
//       std::make_shared<PhotometricDistort>(), std::make_shared<Expand>(),
//       std::make_shared<SSDRandomCrop>(), std::make_shared<HorizontalFlip>(0.5),
//       std::make_shared<Resize>(300, 300), std::make_shared<Normalize>()});
// ```
// or from JSON with build_transforms (names and keys listed there).

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ostrov/data/sample.h"

namespace ostrov::data {

/// Boxes with width or height below this many pixels are dropped after a geometric step.
constexpr double kMinBoxSize = 1.0;

/// A joint transform. Implementations are immutable after construction, so one object may be
/// used from several loader threads at once.
class Transform {
 public:
  virtual ~Transform() = default;
  /// Returns the transformed sample. Draws random numbers only from `rng`.
  /// Throws c10::Error (TORCH_CHECK) naming the field and its sizes when the sample's fields
  /// do not fit together (e.g. a mask of another size than the image).
  virtual Sample operator()(Sample sample, std::mt19937_64& rng) const = 0;
  /// Short name as used in JSON configs ("resize", "horizontal_flip", ...).
  virtual std::string name() const = 0;
};

/// Applies transforms in order (an empty list is the identity).
class Compose : public Transform {
 public:
  /// c10::Error when one of `transforms` is null.
  explicit Compose(std::vector<std::shared_ptr<const Transform>> transforms);
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "compose"; }
  /// The transforms, in the order they are applied.
  const std::vector<std::shared_ptr<const Transform>>& transforms() const { return transforms_; }

 private:
  std::vector<std::shared_ptr<const Transform>> transforms_;
};

/// Resizes to height x width: image bilinear (align_corners = false, no antialiasing, as
/// torchvision's tensor Resize), masks centre-aligned nearest, boxes scaled per axis.
class Resize : public Transform {
 public:
  /// Output size in pixels; c10::Error unless both are positive.
  Resize(int64_t height, int64_t width);
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "resize"; }

 private:
  int64_t height_, width_;
};

/// Segmentation-style scale augmentation (PSPNet, DeepLab): resizes by a factor drawn
/// uniformly from [min_scale, max_scale] (same factor for both axes, sizes rounded), pads
/// bottom/right when the result is smaller than the crop, then takes a crop of
/// crop_height x crop_width at a uniformly drawn position.
class RandomScaleCrop : public Transform {
 public:
  /// `fill`: 1 value (all channels) or 3 (RGB) for padded image pixels.
  RandomScaleCrop(double min_scale, double max_scale, int64_t crop_height, int64_t crop_width,
                  std::vector<double> fill = {0.0}, int64_t mask_fill = 255);
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "random_scale_crop"; }

 private:
  double min_scale_, max_scale_;
  int64_t crop_height_, crop_width_;
  std::vector<double> fill_;
  int64_t mask_fill_;
};

/// SSD's IoU-constrained random crop (W. Liu et al., SSD, ECCV 2016, §3 "Data augmentation"),
/// with the semantics of torchvision's references/detection RandomIoUCrop (equivalent to
/// ssd.pytorch's RandomSampleCrop without its min/max-IoU bug):
/// repeatedly draw a minimum IoU from `min_ious`; a value >= 1 means "keep the whole image"
/// (ssd.pytorch's `None` option), 0 means "any crop". Then up to `trials` times draw a crop
/// whose width and height are independently U[min_scale, max_scale] of the image's
/// (truncated to whole pixels) with width/height in [min_aspect, max_aspect] and a uniform
/// position; keep the boxes whose centres lie strictly inside the crop; accept the crop when
/// at least one box is kept and the largest IoU between a kept box and the crop is >= the
/// drawn minimum. Kept boxes are shifted and clipped; the others are dropped with their
/// labels and instances. A sample without boxes accepts the first crop of valid shape.
/// After 100 draws of a minimum IoU without success the sample is returned unchanged.
class SSDRandomCrop : public Transform {
 public:
  /// c10::Error for an empty `min_ious`, scales outside 0 < min <= max <= 1, aspects outside
  /// 0 < min <= max, or trials < 1.
  explicit SSDRandomCrop(std::vector<double> min_ious = {0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0},
                         double min_scale = 0.3, double max_scale = 1.0,
                         double min_aspect = 0.5, double max_aspect = 2.0, int64_t trials = 40);
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "ssd_random_crop"; }

 private:
  std::vector<double> min_ious_;
  double min_scale_, max_scale_, min_aspect_, max_aspect_;
  int64_t trials_;
};

/// Mirrors left-right with probability p: x -> W - x for boxes.
class HorizontalFlip : public Transform {
 public:
  /// `p`: probability of flipping, in [0,1] (c10::Error otherwise).
  explicit HorizontalFlip(double p = 0.5);
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "horizontal_flip"; }

 private:
  double p_;
};

/// SSD's photometric distortion (ssd.pytorch PhotometricDistort) on [0,1] RGB images, each
/// step with probability p: brightness (add U[-brightness, brightness]), then either
/// contrast-before or contrast-after (chosen with probability 1/2) the HSV steps saturation
/// (S *= U[saturation]) and hue (H += U[-hue, hue] degrees, wrapped), then a random channel
/// permutation (one of the 6). Values are clamped to [0,1] after each step (as torchvision's
/// adjust_* functions); HSV is OpenCV's float conversion. Apply before Normalize. Geometry and
/// targets are untouched.
class PhotometricDistort : public Transform {
 public:
  /// Defaults are ssd.pytorch's: delta 32/255, contrast and saturation [0.5,1.5], hue 18°.
  explicit PhotometricDistort(double p = 0.5, double brightness = 32.0 / 255.0,
                              std::pair<double, double> contrast = {0.5, 1.5},
                              std::pair<double, double> saturation = {0.5, 1.5},
                              double hue = 18.0);
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "photometric_distort"; }

 private:
  double p_, brightness_;
  std::pair<double, double> contrast_, saturation_;
  double hue_;
};

/// SSD's zoom-out (ssd.pytorch Expand): with probability p places the image at a random
/// position on a canvas ratio x larger, ratio ~ U[1, max_ratio] (canvas size truncated to
/// whole pixels), filled with `fill` (default the ImageNet mean, so it becomes 0 after
/// Normalize); class mask padded with mask_fill, instances with 0, boxes shifted.
class Expand : public Transform {
 public:
  /// `max_ratio` >= 1, `p` in [0,1]; `fill`: 1 value (all channels) or 3 (RGB); c10::Error
  /// otherwise.
  explicit Expand(double max_ratio = 4.0, double p = 0.5,
                  std::vector<double> fill = {0.485, 0.456, 0.406}, int64_t mask_fill = 255);
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "expand"; }

 private:
  double max_ratio_, p_;
  std::vector<double> fill_;
  int64_t mask_fill_;
};

/// Pads bottom and right so height and width are multiples of n (U-Net, FC-DenseNet need
/// sizes divisible by their total stride). Boxes are unchanged.
class PadToMultiple : public Transform {
 public:
  /// `multiple` > 0; `fill`: 1 value (all channels) or 3 (RGB) for padded image pixels;
  /// `mask_fill` for padded class-mask pixels (instances are padded with 0).
  explicit PadToMultiple(int64_t multiple, std::vector<double> fill = {0.0},
                         int64_t mask_fill = 255);
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "pad_to_multiple"; }

 private:
  int64_t multiple_;
  std::vector<double> fill_;
  int64_t mask_fill_;
};

/// (image - mean) / std per RGB channel (core::normalize); targets untouched.
class Normalize : public Transform {
 public:
  /// `mean` and `std`: 3 values each (RGB), std > 0 (c10::Error otherwise); defaults ImageNet's.
  explicit Normalize(std::vector<double> mean = {0.485, 0.456, 0.406},
                     std::vector<double> std = {0.229, 0.224, 0.225});
  Sample operator()(Sample sample, std::mt19937_64& rng) const override;
  std::string name() const override { return "normalize"; }

 private:
  std::vector<double> mean_, std_;
};

/// Clips boxes to the image ([0,W] x [0,H]) and drops boxes with width or height below
/// `min_size` pixels together with their labels, instance masks and iscrowd flags. Every
/// geometric transform ends with this; call it yourself after custom geometry.
Sample sanitize_boxes(Sample sample, double min_size = kMinBoxSize);

/// Checks that a sample's fields fit together (image [3,H,W] float; mask [H,W]; instances
/// [K,H,W]; boxes [K,4]; labels, iscrowd [K]); TORCH_CHECK naming `who`, the field and sizes.
void check_sample(const Sample& sample, const std::string& who);

/// Builds a Compose from a JSON list such as
/// ```
///   [{"name": "photometric_distort"}, {"name": "expand", "max_ratio": 4},
///    {"name": "ssd_random_crop"}, {"name": "horizontal_flip", "p": 0.5},
///    {"name": "resize", "size": [300, 300]}, {"name": "normalize"}]
/// ```
/// Names and keys (all optional unless marked, defaults as the constructors above):
///   resize: size [H,W] (required)
///   random_scale_crop: size [H,W] (required), scale [min,max] = [0.5,2.0], fill, mask_fill
///   ssd_random_crop: min_ious (list; null entries mean "keep the image" = 1.0), min_scale,
///                    max_scale, min_aspect, max_aspect, trials
///   horizontal_flip: p
///   photometric_distort: p, brightness, contrast [lo,hi], saturation [lo,hi], hue (degrees)
///   expand: max_ratio, p, fill, mask_fill
///   pad_to_multiple: multiple (required), fill, mask_fill
///   normalize: mean [3], std [3]
/// `fill` is a number or [r,g,b] in image units ([0,1] before Normalize).
/// A null list gives the identity. Errors are ostrov::ConfigError naming `where` (the config
/// file) and the key path, e.g. "run.json: unknown key data.transforms[2].sizee (known here:
/// name, size)" or "run.json: data.transforms[0].name: unknown transform 'rezise' (known: ...)".
std::shared_ptr<Transform> build_transforms(const nlohmann::json& list, const std::string& where,
                                            const std::string& prefix = "transforms");

}  // namespace ostrov::data
