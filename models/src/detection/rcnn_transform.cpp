#include "ostrov/models/detection/rcnn_transform.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/functional/upsampling.h>

#include "ostrov/ops/instance.h"

namespace ostrov::models {

namespace F = torch::nn::functional;

GeneralizedRCNNTransform::GeneralizedRCNNTransform(GeneralizedRCNNTransformOptions options)
    : options_(std::move(options)) {
  TORCH_CHECK(!options_.min_size().empty(), "GeneralizedRCNNTransform: min_size is empty");
  for (const int64_t s : options_.min_size()) {
    TORCH_CHECK(s >= 1, "GeneralizedRCNNTransform: min_size holds ", s);
  }
  TORCH_CHECK(options_.max_size() >= 1, "GeneralizedRCNNTransform: max_size must be >= 1, got ",
              options_.max_size());
  TORCH_CHECK(options_.size_divisible() >= 1,
              "GeneralizedRCNNTransform: size_divisible must be >= 1, got ",
              options_.size_divisible());
  TORCH_CHECK(options_.image_mean().size() == 3 && options_.image_std().size() == 3,
              "GeneralizedRCNNTransform: image_mean and image_std need 3 entries each");
}

ImageSize GeneralizedRCNNTransform::resized_size(ImageSize size, int64_t min_size) const {
  // torchvision 0.14 computes the scale on float32 tensors, later versions in Python floats;
  // both then take floor(side * scale) in Python floats (interpolate with
  // recompute_scale_factor=True).
  const auto shorter = static_cast<double>(std::min(size[0], size[1]));
  const auto longer = static_cast<double>(std::max(size[0], size[1]));
  double s = std::min(static_cast<double>(min_size) / shorter,
                      static_cast<double>(options_.max_size()) / longer);
  if (options_.float32_scale()) {
    s = static_cast<double>(std::min(static_cast<float>(min_size) / static_cast<float>(shorter),
                                     static_cast<float>(options_.max_size()) /
                                         static_cast<float>(longer)));
  }
  return {static_cast<int64_t>(std::floor(static_cast<double>(size[0]) * s)),
          static_cast<int64_t>(std::floor(static_cast<double>(size[1]) * s))};
}

at::Tensor resize_boxes(const at::Tensor& boxes, ImageSize from, ImageSize to) {
  const auto ratio = [](int64_t a, int64_t b) {
    return static_cast<double>(static_cast<float>(a) / static_cast<float>(b));
  };
  const double rh = ratio(to[0], from[0]);
  const double rw = ratio(to[1], from[1]);
  const auto b = boxes.unbind(1);
  return at::stack({b[0] * rw, b[1] * rh, b[2] * rw, b[3] * rh}, 1);
}

ImageBatch GeneralizedRCNNTransform::operator()(const std::vector<at::Tensor>& images,
                                                bool training,
                                                std::vector<RCNNTarget>* targets) const {
  TORCH_CHECK(!images.empty(), "GeneralizedRCNNTransform: no images");
  TORCH_CHECK(targets == nullptr || targets->size() == images.size(),
              "GeneralizedRCNNTransform: ", images.size(), " images but ",
              targets ? targets->size() : 0, " targets");
  ImageBatch batch;
  std::vector<at::Tensor> resized;
  for (size_t i = 0; i < images.size(); ++i) {
    const auto& image = images[i];
    TORCH_CHECK(image.dim() == 3 && image.size(0) == 3 && at::isFloatingType(image.scalar_type()),
                "GeneralizedRCNNTransform: image ", i, " should be a floating [3,H,W] tensor, got ",
                image.scalar_type(), " ", image.sizes());
    at::Tensor x = image;
    if (options_.normalize()) {
      const auto mean = at::tensor(options_.image_mean(), image.options()).view({3, 1, 1});
      const auto std = at::tensor(options_.image_std(), image.options()).view({3, 1, 1});
      x = (x - mean) / std;
    }
    int64_t min_size = options_.min_size().back();
    if (training) {
      // torchvision's torch_choice, per image: one draw of the default generator, even for
      // one choice.
      const auto n = static_cast<double>(options_.min_size().size());
      const auto index = static_cast<size_t>(at::empty({1}).uniform_(0.0, n).item<float>());
      min_size = options_.min_size()[std::min(index, options_.min_size().size() - 1)];
    }
    const ImageSize from{image.size(1), image.size(2)};
    const ImageSize to = resized_size(from, min_size);
    x = F::interpolate(x.unsqueeze(0), F::InterpolateFuncOptions()
                                           .size(std::vector<int64_t>{to[0], to[1]})
                                           .mode(torch::kBilinear)
                                           .align_corners(false))
            .squeeze(0);
    if (targets != nullptr) {
      auto& t = (*targets)[i];
      if (t.boxes.defined()) t.boxes = resize_boxes(t.boxes, from, to);
      if (t.masks.defined() && t.masks.size(0) > 0) {
        t.masks = F::interpolate(t.masks.unsqueeze(1).to(at::kFloat),
                                 F::InterpolateFuncOptions()
                                     .size(std::vector<int64_t>{to[0], to[1]})
                                     .mode(torch::kNearest))
                      .squeeze(1)
                      .to(at::kByte);
      } else if (t.masks.defined()) {
        t.masks = at::zeros({0, to[0], to[1]}, t.masks.options());
      }
    }
    batch.image_sizes.push_back(to);
    resized.push_back(x);
  }
  int64_t height = 0, width = 0;
  for (const auto& x : resized) {
    height = std::max(height, x.size(1));
    width = std::max(width, x.size(2));
  }
  const auto stride = static_cast<double>(options_.size_divisible());
  height = static_cast<int64_t>(std::ceil(static_cast<double>(height) / stride) * stride);
  width = static_cast<int64_t>(std::ceil(static_cast<double>(width) / stride) * stride);
  batch.tensors = at::zeros({static_cast<int64_t>(resized.size()), 3, height, width},
                            resized[0].options());
  for (size_t i = 0; i < resized.size(); ++i) {
    batch.tensors[static_cast<int64_t>(i)]
        .narrow(1, 0, resized[i].size(1))
        .narrow(2, 0, resized[i].size(2))
        .copy_(resized[i]);
  }
  return batch;
}

void GeneralizedRCNNTransform::postprocess(std::vector<RCNNDetection>& detections,
                                           const std::vector<ImageSize>& resized,
                                           const std::vector<ImageSize>& original) const {
  TORCH_CHECK(detections.size() == resized.size() && resized.size() == original.size(),
              "GeneralizedRCNNTransform::postprocess: ", detections.size(), " detections, ",
              resized.size(), " resized and ", original.size(), " original sizes");
  for (size_t i = 0; i < detections.size(); ++i) {
    auto& d = detections[i];
    d.boxes = resize_boxes(d.boxes, resized[i], original[i]);
    if (d.masks.defined()) {
      d.masks = ops::paste_masks(d.masks, d.boxes, original[i][0], original[i][1]).unsqueeze(1);
    }
  }
}

}  // namespace ostrov::models
