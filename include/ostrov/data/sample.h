#pragma once
// One training/evaluation sample and a batch of them. Every dataset returns Samples and every
// transform maps Sample -> Sample, so image, class mask, instance masks and boxes stay aligned.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ostrov::data {

/// Fields are undefined tensors when a dataset does not provide them.
struct Sample {
  at::Tensor image;     ///< [3,H,W] float32 RGB in [0,1] (normalised after Normalize)
  at::Tensor mask;      ///< [H,W] int64 class index per pixel, 255 = ignore
  at::Tensor instances; ///< [K,H,W] uint8, one binary mask per object
  at::Tensor boxes;     ///< [K,4] float32 x1,y1,x2,y2 in pixels of `image`
  at::Tensor labels;    ///< [K] int64 contiguous labels, 1..num_classes-1 (0 = background)
  at::Tensor iscrowd;   ///< [K] uint8 (COCO crowd regions), optional
  int64_t image_id = -1;           ///< COCO image id or dataset index
  std::string source;              ///< file the image came from ("" for generated scenes)
  int64_t original_height = 0;     ///< size before transforms, for writing predictions back
  int64_t original_width = 0;      ///< width before transforms (see original_height)
};

/// A collated batch: images stacked, per-image targets kept as lists (variable box counts).
struct Batch {
  at::Tensor images;                  ///< [N,3,H,W]
  at::Tensor masks;                   ///< [N,H,W] int64 or undefined
  std::vector<at::Tensor> instances;  ///< N x [K_i,H,W]
  std::vector<at::Tensor> boxes;      ///< N x [K_i,4]
  std::vector<at::Tensor> labels;     ///< N x [K_i]
  std::vector<int64_t> image_ids;    ///< N x Sample::image_id
  std::vector<std::string> sources;  ///< N x Sample::source
  /// Number of images N (0 when `images` is undefined).
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

}  // namespace ostrov::data
