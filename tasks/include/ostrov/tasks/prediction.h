#pragma once
// What a task predicts for one image, at that image's own size: one struct for every task,
// the fields a task does not produce stay empty.

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <opencv2/core/mat.hpp>

namespace ostrov::tasks {

/// One class of a classification, best first in Prediction::top.
struct TopClass {
  int64_t index = 0;        ///< contiguous class index
  std::string name;         ///< data.class_names[index] ("class <index>" without names)
  double probability = 0.0;  ///< softmax probability of the class
};

/// A task's prediction for one image (Task::predict, Predictor::predict).
struct Prediction {
  /// Segmentation: class index per pixel, CV_8U (CV_16U above 255 classes), input size.
  cv::Mat mask;
  /// Segmentation, on request: [C,H,W] float softmax probabilities at the input size.
  at::Tensor probabilities;
  /// Detection and instances: [K,4] float x1,y1,x2,y2 in input pixels, best first.
  at::Tensor boxes;
  /// [K] float scores in (0,1].
  at::Tensor scores;
  /// [K] int64: the dataset's category ids (data.category_ids); 0 for the class-agnostic
  /// instance methods (DeepColoring, Deep Watershed), where every object is "an object".
  at::Tensor labels;
  /// [K] the class names of `labels` ("object" for the class-agnostic methods).
  std::vector<std::string> names;
  /// Instances: one CV_8U 0/1 mask per object at the input size, in the order of `boxes`.
  std::vector<cv::Mat> instance_masks;
  /// Classification: the best classes (at most 5), best first.
  std::vector<TopClass> top;
};

}  // namespace ostrov::tasks
