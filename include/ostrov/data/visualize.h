#pragma once
// Drawing class masks, instance masks and boxes onto images with OpenCV, with a palette that
// gives a class the same colour in every image. Save the results with core::write_image.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <opencv2/core/mat.hpp>

#include "ostrov/data/sample.h"

namespace ostrov::data {

/// BGR colour of class `label`: 0 (background) black, 255 (ignore) light grey, 1..20 a fixed
/// table of distinct colours, others hues spaced by the golden ratio. Never changes.
cv::Vec3b class_color(int64_t label);
/// BGR colour of the `index`-th instance: saturated hues spaced by the golden ratio, so
/// neighbouring indices differ strongly.
cv::Vec3b instance_color(int64_t index);

/// [H,W] integer class mask (values 0..255) -> [H,W,3] uint8 BGR picture with class_color.
cv::Mat colorize_mask(const at::Tensor& mask);

/// Blends class colours over `image` ([H,W,3] uint8 BGR) where mask ([H,W], 0..255) is not 0:
/// out = (1 - alpha) * image + alpha * class_color. Background pixels are unchanged. Returns a
/// new image; the mask must have the image's size.
cv::Mat overlay_mask(const cv::Mat& image, const at::Tensor& mask, double alpha = 0.5);

/// Blends instance_color(k) over `image` inside each instances[k] ([K,H,W], non-zero = inside),
/// later instances on top, and outlines each instance in its full colour.
cv::Mat overlay_instances(const cv::Mat& image, const at::Tensor& instances, double alpha = 0.5);

/// Draws boxes ([K,4] x1,y1,x2,y2 in pixels) in their class colour (instance colour without
/// labels) with a caption "<name> <score>": the name is class_names[label] when given and in
/// range, else the label number; scores ([K], optional) are printed with 2 decimals. `labels`
/// and `scores` may be undefined tensors.
cv::Mat draw_boxes(const cv::Mat& image, const at::Tensor& boxes, const at::Tensor& labels = {},
                   const at::Tensor& scores = {},
                   const std::vector<std::string>& class_names = {}, int thickness = 1);

/// The picture of a Sample: its image (un-normalised, [0,1]; values outside are clamped) with
/// the instances (or, without instances, the class mask) overlaid and its boxes drawn with
/// class names.
cv::Mat visualize_sample(const Sample& sample, const std::vector<std::string>& class_names = {},
                         double alpha = 0.5);

}  // namespace ostrov::data
