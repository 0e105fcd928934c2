#pragma once
// YOLO, v1 style (Redmon, Divvala, Girshick, Farhadi, "You Only Look Once: Unified, Real-Time
// Object Detection", CVPR 2016): the input is divided into an S x S grid; every cell predicts
// B boxes, each (x, y, sqrt w, sqrt h, confidence), and one distribution over the C-1 object
// classes (C counts the background). An object is the responsibility of the cell holding its
// centre (yolo_targets) and, in training, of that cell's predictor whose box overlaps it most
// (losses::functional::yolo_loss); at inference each box's class scores are confidence x
// p(class), followed by a per-class NMS (yolo_postprocess).
//
// Differences from the paper, kept small and named: the backbone is one of ostrov's (ResNet,
// MobileNet) instead of the 24-layer Darknet; the two fully connected detection layers are a
// convolutional head (1x1 reduction, 3x3 conv, both BN + LeakyReLU 0.1, average-pooled to
// S x S when the backbone's map is larger, then a 1x1 conv to B*5 + C-1), so the model stays
// small enough to train on a CPU; x, y, sqrt w, sqrt h and the confidence pass through a
// sigmoid (the paper's last layer is linear), which keeps them in their ranges [0,1].
//
// ```
// ostrov::models::YOLO net(ostrov::models::YOLOOptions(11).image_size(256).grid(8));
// auto out = net->forward(images);                       // out.boxes [N,8,8,2,4], ...
// auto t = ostrov::models::yolo_targets(boxes, labels, 8, 256);
// auto loss = ostrov::losses::functional::yolo_loss(out.boxes, out.confidence,
//                                                   out.class_logits, t.has_object, t.boxes,
//                                                   t.classes).total;
// auto detections = net->postprocess(out);               // boxes in input pixels
// ```

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/backbone.h"
#include "ostrov/models/detection/ssd.h"
#include "ostrov/ops/priors.h"

namespace ostrov::models {

/// Options of YOLO.
struct YOLOOptions {
  /// `num_classes` counts the background, as everywhere in ostrov (labels 1..C-1); the network
  /// predicts num_classes - 1 class probabilities.
  explicit YOLOOptions(int64_t num_classes) : num_classes_(num_classes) {}
  /// Classes including the background (>= 2).
  TORCH_ARG(int64_t, num_classes);
  /// The feature extractor (its last stage feeds the head): resnet18..152, mobilenet_v2,
  /// mobilenet_v3_large, mobilenet_v3_small.
  TORCH_ARG(BackboneOptions, backbone) = BackboneOptions("resnet18");
  /// Side of the square network input in pixels.
  TORCH_ARG(int64_t, image_size) = 256;
  /// S: the grid is S x S cells; the backbone's last map (image_size / stride) must be at
  /// least S (it is average-pooled to S x S when larger).
  TORCH_ARG(int64_t, grid) = 8;
  /// B: boxes predicted per cell.
  TORCH_ARG(int64_t, boxes_per_cell) = 2;
  /// Channels of the head's hidden convolutions.
  TORCH_ARG(int64_t, head_channels) = 256;
  /// Per-channel normalisation of the input (ImageNet's, as the backbones were trained).
  TORCH_ARG(std::vector<double>, image_mean) = {0.485, 0.456, 0.406};
  /// See image_mean.
  TORCH_ARG(std::vector<double>, image_std) = {0.229, 0.224, 0.225};
  /// score_threshold (on confidence x class probability), nms_threshold, topk_candidates
  /// (per class), detections_per_image: as SSD's.
  TORCH_ARG(SSDPostprocessOptions, postprocess) = {};
};

/// The head's outputs, activations applied except the class softmax.
struct YOLOOutput {
  /// [N,S,S,B,4]: x, y = the box centre's offset inside its cell as a fraction of the cell
  /// (column, row), sqrt(w), sqrt(h) = square roots of the box size as a fraction of the
  /// input side; all in (0,1).
  at::Tensor boxes;
  /// [N,S,S,B] in (0,1): the predicted Pr(object) x IoU of each box.
  at::Tensor confidence;
  /// [N,S,S,C-1]: class logits of each cell (softmax gives Pr(class | object)).
  at::Tensor class_logits;
};

/// The network. Children: `backbone` (make_backbone's module under torchvision's names, e.g.
/// "backbone.layer1.0.conv1.weight"), `head` (Sequential: "head.0" 1x1 ConvBnAct, "head.1" 3x3
/// ConvBnAct, "head.2" the 1x1 Conv2d to B*5 + C-1 channels, with bias).
class YOLOImpl : public torch::nn::Cloneable<YOLOImpl> {
 public:
  /// c10::Error when num_classes < 2, grid, boxes_per_cell or head_channels < 1, the backbone's
  /// last map at image_size is smaller than the grid, or the backbone is unknown.
  explicit YOLOImpl(YOLOOptions options);
  void reset() override;
  /// x [N,3,image_size,image_size] (normalised) -> the head's outputs. Other input sizes
  /// work when the last map is still >= S.
  YOLOOutput forward(const at::Tensor& x);
  /// yolo_postprocess with this model's options: detections per image in input pixels, or,
  /// with `sizes`, scaled to each original image size {H, W}.
  std::vector<Detections> postprocess(const YOLOOutput& output,
                                      const std::vector<ops::GridSize>& sizes = {}) const;
  /// A torchvision classification state_dict into `backbone` (Backbone::load_torchvision).
  void load_backbone_weights(const io::StateDict& state, const std::string& source);

  /// The options it was built with; reset() rebuilds from them.
  YOLOOptions options;
  /// make_backbone(options.backbone) (keys "backbone.*").
  std::shared_ptr<torch::nn::Module> backbone;
  /// The detection head (keys "head.*", see the class comment).
  torch::nn::Sequential head{nullptr};

 private:
  std::shared_ptr<Backbone> features_;  // backbone as a Backbone
};
TORCH_MODULE(YOLO);

/// Training targets of a batch on an S x S grid, on the CPU.
struct YOLOTargets {
  at::Tensor has_object;  ///< [N,S,S] bool: the cell holds an object's centre
  /// [N,S,S,4] float: the object's x, y (offset of its centre in the cell, fraction of the
  /// cell), sqrt(w), sqrt(h) (fraction of the input side); 0 where there is no object.
  at::Tensor boxes;
  at::Tensor classes;  ///< [N,S,S] int64: the object's class 0..C-2 (label - 1), -1 elsewhere
  /// Objects left out because a larger object's centre fell into the same cell (v1 gives a
  /// cell one object).
  int64_t dropped = 0;
};

/// Assigns each image's boxes [G_i,4] (x1,y1,x2,y2 in pixels of the square input of side
/// `image_size`) with labels [G_i] in 1..C-1 to the cell holding the box centre (a centre on
/// the last cell's far edge belongs to the last cell). When several centres fall into one
/// cell, the object with the largest area is kept. c10::Error for boxes that are not [G,4],
/// labels < 1, a box with zero (or negative) width or height, or one whose centre lies outside
/// the input (naming the image and the box).
YOLOTargets yolo_targets(const std::vector<at::Tensor>& boxes,
                         const std::vector<at::Tensor>& labels, int64_t grid,
                         int64_t image_size);

/// The boxes of `output` as x1,y1,x2,y2 in input pixels: [N,S,S,B,4].
at::Tensor yolo_decode_boxes(const at::Tensor& boxes, int64_t image_size);

/// Detections of each image: every box of every cell scores confidence x softmax(class
/// logits) per class; candidates scoring > score_threshold, the best topk_candidates per
/// class, boxes clipped to the input, a per-class NMS at nms_threshold (ops::batched_nms),
/// the best detections_per_image kept, ordered by score. Boxes in input pixels, or scaled to
/// `sizes[i]` = {H, W} when given (one per image). Labels in 1..C-1.
std::vector<Detections> yolo_postprocess(const YOLOOutput& output, int64_t image_size,
                                         const SSDPostprocessOptions& options,
                                         const std::vector<ops::GridSize>& sizes = {});

}  // namespace ostrov::models
