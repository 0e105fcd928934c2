#pragma once
// What torchvision's two-stage detectors (Faster R-CNN, Mask R-CNN) do around the network:
// GeneralizedRCNNTransform (normalise, resize keeping the aspect ratio, batch to a size
// divisible by 32, map detections back) and the per-image types the parts exchange.

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

namespace ostrov::models {

/// One image's ground truth for training a two-stage detector (torchvision's target dict).
struct RCNNTarget {
  at::Tensor boxes;   ///< [G,4] float x1,y1,x2,y2 in the image's pixels; G may be 0
  at::Tensor labels;  ///< [G] int64 classes in [1, num_classes)
  at::Tensor masks;   ///< [G,H,W] uint8 (0/1) at the image's size; needed by the mask branch
};

/// One image's detections (torchvision's result dict), in the coordinates of the image given.
struct RCNNDetection {
  at::Tensor boxes;   ///< [K,4] float x1,y1,x2,y2
  at::Tensor scores;  ///< [K] float, decreasing
  at::Tensor labels;  ///< [K] int64 classes in [1, num_classes)
  at::Tensor masks;   ///< [K,1,H,W] float mask probabilities (undefined without a mask branch)
};

/// (height, width) of an image.
using ImageSize = std::array<int64_t, 2>;

/// A batch of resized images padded to one size (torchvision's ImageList).
struct ImageBatch {
  at::Tensor tensors;                   ///< [N,3,H',W'], H' and W' divisible by size_divisible
  std::vector<ImageSize> image_sizes;  ///< each image's size after resizing, before padding
};

/// Options of GeneralizedRCNNTransform (torchvision's defaults).
struct GeneralizedRCNNTransformOptions {
  /// Shorter side after resizing; training draws one of them per image (torchvision's
  /// torch_choice), evaluation takes the last.
  TORCH_ARG(std::vector<int64_t>, min_size) = std::vector<int64_t>{800};
  /// Cap on the longer side after resizing.
  TORCH_ARG(int64_t, max_size) = 1333;
  /// Per-channel mean subtracted from [0,1] RGB images (ImageNet's).
  TORCH_ARG(std::vector<double>, image_mean) = std::vector<double>{0.485, 0.456, 0.406};
  /// Per-channel standard deviation images are divided by (ImageNet's).
  TORCH_ARG(std::vector<double>, image_std) = std::vector<double>{0.229, 0.224, 0.225};
  /// The padded batch's height and width are multiples of this.
  TORCH_ARG(int64_t, size_divisible) = 32;
  /// false: the images come normalised already (ostrov's data pipeline does it), only resize.
  TORCH_ARG(bool, normalize) = true;
  /// How the resize scale is computed: true in float32, as torchvision 0.14; false in double,
  /// as later torchvision (0.21). The sizes can differ by a pixel: 300x200 to min_size 256
  /// gives 383x255 in float32 and 384x256 in double.
  TORCH_ARG(bool, float32_scale) = true;
};

/// torchvision.models.detection.transform.GeneralizedRCNNTransform (0.14), without fixed_size:
/// - normalise: (image - mean) / std per channel;
/// - resize: scale = min(min_size / shorter side, max_size / longer side), computed in float32
///   as torchvision 0.14 (or in double, see float32_scale); the output side is
///   floor(side * scale); bilinear (align_corners=false);
///   target boxes scale by new/old per axis (float32 ratios), masks resize by nearest;
/// - batch: zero-pad at the bottom and right to the largest size, rounded up to
///   size_divisible.
class GeneralizedRCNNTransform {
 public:
  /// c10::Error for an empty min_size, a non-positive size, or a mean/std without 3 entries.
  explicit GeneralizedRCNNTransform(GeneralizedRCNNTransformOptions options = {});

  /// images: [3,H,W] floating (RGB in [0,1] when normalize, else normalised already), sizes may
  /// differ. In training, min_size is drawn for each image (consuming one number of LibTorch's
  /// default generator even with a single choice, as torchvision). `targets`, when given, are
  /// resized in place (boxes, masks). c10::Error for another image shape or dtype.
  ImageBatch operator()(const std::vector<at::Tensor>& images, bool training,
                        std::vector<RCNNTarget>* targets = nullptr) const;

  /// The resized size of an image of `size` when the shorter side goes to `min_size`.
  ImageSize resized_size(ImageSize size, int64_t min_size) const;

  /// Maps detections from the resized sizes back to the original ones (torchvision's
  /// postprocess): boxes scale by original/resized; masks ([K,1,28,28] probabilities) are
  /// pasted into the original image (ops::paste_masks) and become [K,1,H,W].
  void postprocess(std::vector<RCNNDetection>& detections, const std::vector<ImageSize>& resized,
                   const std::vector<ImageSize>& original) const;

  /// The options it was built with.
  const GeneralizedRCNNTransformOptions& options() const { return options_; }

 private:
  GeneralizedRCNNTransformOptions options_;
};

/// torchvision's resize_boxes: boxes [K,4] x1,y1,x2,y2 of an image of size `from` -> the same
/// boxes in an image of size `to` (x by to.w/from.w, y by to.h/from.h; float32 ratios).
at::Tensor resize_boxes(const at::Tensor& boxes, ImageSize from, ImageSize to);

}  // namespace ostrov::models
