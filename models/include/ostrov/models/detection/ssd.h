#pragma once
// SSD: Single Shot MultiBox Detector (W. Liu et al., ECCV 2016, arXiv:1512.02325).
//
// Three configurations built from the same parts:
//  - SSD300-VGG16 exactly as torchvision 0.14's `ssd300_vgg16` (models/detection/ssd.py): the
//    same layers, initialisation, parameter names (its state_dict loads with
//    ostrov::io::load_weights), head layout, default boxes and post-processing;
//  - SSDLite320-MobileNetV3-Large exactly as torchvision's `ssdlite320_mobilenet_v3_large`
//    (models/detection/ssdlite.py; Sandler et al. 2018 section 6.2, Howard et al. 2019 section
//    6.3): depthwise-separable heads and extra stages, 6 default boxes per cell;
//  - a light variant for CPU training (SSDOptions::light): ResNet-18 (torchvision layout) tapped
//    at layer3 and layer4, three extra Conv-BN-ReLU stages, 256x256 input, 1524 default boxes.
//
// Unlike torchvision's SSD module, the input transform (ssd_preprocess), the network (SSD) and
// the post-processing (ssd_postprocess) are separate steps, and training targets come from
// ssd_targets (ssd_targets.h) + ostrov::losses::functional::multibox_loss:
// ```
// ostrov::models::SSD net(ostrov::models::SSDOptions::ssd300_vgg16(91));
// ostrov::io::load_weights(*net, "ssd300_vgg16_coco.pth");   // torch.save(model.state_dict())
// net->eval();
// auto x = net->preprocess(image);                 // [3,H,W] float in [0,1] -> [1,3,300,300]
// auto out = net->forward(x);                      // SSDOutput
// auto dets = net->postprocess(out, {{H, W}});     // boxes in the original image's pixels
// ```

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "ostrov/nn/receptive_field.h"
#include "ostrov/ops/priors.h"

namespace ostrov::models {

/// Options of ssd_postprocess, with the defaults of torchvision's SSD.
struct SSDPostprocessOptions {
  /// Candidates need softmax score > score_threshold (strictly).
  TORCH_ARG(double, score_threshold) = 0.01;
  /// IoU threshold of the per-class NMS (ops::batched_nms).
  TORCH_ARG(double, nms_threshold) = 0.45;
  /// Best-scoring candidates kept per class before NMS.
  TORCH_ARG(int64_t, topk_candidates) = 400;
  /// Detections kept per image after NMS.
  TORCH_ARG(int64_t, detections_per_image) = 200;
};

/// Options of `SSD`. `SSDOptions(91)` (= `SSDOptions::ssd300_vgg16(91)`) is torchvision's
/// `ssd300_vgg16(weights=None, weights_backbone=None)`.
struct SSDOptions {
  /// torchvision's SSD300-VGG16 defaults with `num_classes` classes.
  explicit SSDOptions(int64_t num_classes) : num_classes_(num_classes) {}

  /// C, classes including background (class 0). torchvision's COCO model: 91.
  TORCH_ARG(int64_t, num_classes);
  /// "vgg16" (SSD300: torchvision's SSDFeatureExtractorVGG, 6 feature maps, needs a 300x300
  /// input), "mobilenet_v3_large" (SSDLite: torchvision's SSDLiteFeatureExtractorMobileNet, 6
  /// feature maps) or "resnet18" (light: layer3, layer4 and `num_extra` extra stages).
  TORCH_ARG(std::string, backbone) = "vgg16";
  /// "ssd" (torchvision's SSDHead: one 3x3 conv per feature map) or "ssdlite" (SSDLiteHead:
  /// depthwise 3x3 conv-BN-ReLU6, then a 1x1 conv).
  TORCH_ARG(std::string, head) = "ssd";
  /// mobilenet_v3_large only: torchvision's `reduced_tail` (the last stage at half width), which
  /// its ssdlite320 builder sets when no ImageNet backbone weights are used; ImageNet
  /// MobileNetV3 weights need false.
  TORCH_ARG(bool, reduced_tail) = true;
  /// Side of the square network input, pixels (ssd_preprocess resizes to it).
  TORCH_ARG(int64_t, image_size) = 300;
  /// Default boxes; its aspect_ratios must have one entry per feature map of the backbone.
  TORCH_ARG(ops::DefaultBoxOptions, box_options) = ops::DefaultBoxOptions::ssd300();
  /// resnet18 only: extra stride-2 stages after layer4 (feature maps = 2 + num_extra).
  TORCH_ARG(int64_t, num_extra) = 3;
  /// resnet18 only: channels of its stem and layer1 (ResNetOptions::base_channels; layer2..4
  /// double them, the extras follow). 64 is torchvision's ResNet-18 (its weights load); 32 is
  /// a half-width network with about a quarter of the multiply-adds, trained from scratch.
  TORCH_ARG(int64_t, backbone_channels) = 64;
  /// Per-channel mean subtracted by ssd_preprocess (image in [0,1]); torchvision's SSD300:
  /// [0.48235, 0.45882, 0.40784].
  TORCH_ARG(std::vector<double>, image_mean) = std::vector<double>{0.48235, 0.45882, 0.40784};
  /// Per-channel divisor after the mean; SSD300: 1/255 (undoes ToTensor's scaling, as the
  /// caffe VGG weights expect 0..255 input).
  TORCH_ARG(std::vector<double>, image_std) = std::vector<double>{1.0 / 255.0, 1.0 / 255.0,
                                                                  1.0 / 255.0};
  /// Post-processing of `SSDImpl::postprocess`.
  TORCH_ARG(SSDPostprocessOptions, postprocess) = {};

 public:
  /// torchvision's ssd300_vgg16 with `num_classes` classes.
  static SSDOptions ssd300_vgg16(int64_t num_classes = 91);
  /// torchvision's ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None) with
  /// `num_classes` classes: 320x320 input, mean and std 0.5, aspect ratios [2, 3] on all 6
  /// maps with linear scales 0.2..0.95 (3234 default boxes), score threshold 0.001, NMS 0.55,
  /// 300 candidates and 300 detections; reduced_tail(false) for ImageNet backbone weights.
  static SSDOptions ssdlite320_mobilenet_v3_large(int64_t num_classes = 91);
  /// The light CPU variant: resnet18, `image_size` input (default 256), ImageNet mean/std,
  /// 5 feature maps (strides 16, 32, 64, 128, 256: 16, 8, 4, 2, 1 cells at 256) with aspect
  /// ratios [[2],[2,3],[2,3],[2],[2]] and linear scales 0.1..0.9 (DefaultBoxOptions
  /// min_ratio/max_ratio, no steps): 1524 default boxes at 256x256. The last maps are 1x1,
  /// so training (BatchNorm in train mode) needs batches of at least 2 images.
  static SSDOptions light(int64_t num_classes, int64_t image_size = 256);
};

/// What `SSD::forward` returns for a batch of N images; P = number of default boxes.
struct SSDOutput {
  at::Tensor locations;  ///< [N,P,4] float: box offsets (BoxCoder(10,10,5,5) codes)
  at::Tensor scores;     ///< [N,P,C] float: class logits (no softmax), class 0 = background
  at::Tensor priors;     ///< [P,4] float: default boxes x1,y1,x2,y2 in input pixels
  ops::GridSize image_size{{0, 0}};  ///< {H, W} of the network input
};

/// Detections of one image (K boxes, best first).
struct Detections {
  at::Tensor boxes;   ///< [K,4] float x1,y1,x2,y2 in the (original) image's pixels
  at::Tensor scores;  ///< [K] float softmax probabilities
  at::Tensor labels;  ///< [K] int64 classes in 1..C-1
};

/// The common interface of SSD backbones: the feature maps the heads read, and how an ImageNet
/// classifier's weights map onto the backbone.
class SSDBackbone {
 public:
  virtual ~SSDBackbone() = default;
  /// x: [N,3,H,W] -> feature maps, finest first.
  virtual std::vector<at::Tensor> forward_maps(const at::Tensor& x) = 0;
  /// Channels of each feature map.
  virtual std::vector<int64_t> out_channels() const = 0;
  /// {H, W} of each feature map for a square input of side `image_size`.
  virtual std::vector<ops::GridSize> grid_sizes(int64_t image_size) const = 0;
  /// The torchvision ImageNet classifier whose weights the backbone takes ("vgg16", ...).
  virtual std::string classifier_name() const = 0;
  /// The backbone key of the classifier's key `key`, or "" when the backbone has no such layer
  /// (the classifier's own head).
  virtual std::string key_from_classifier(const std::string& key) const = 0;
  /// Whether the backbone key `key` belongs to a layer the classifier does not have (extra
  /// stages, SSD300's L2Norm scale and fc6/fc7).
  virtual bool ssd_only(const std::string& key) const = 0;
};

/// torchvision's SSDFeatureExtractorVGG (highres = false) over VGG-16. Children and keys:
///   scale_weight  [512] L2Norm scale of conv4_3, initialised to 20
///   features      VGG-16 features[0:23] (to relu4_3), maxpool3 (index 16) with ceil_mode
///   extra.0       VGG-16 features[23:30] (pool4, conv5_x) + `7` = Sequential(0 MaxPool 3/1/1,
///                 1 fc6 Conv 3x3 dilation 6 512->1024, 2 ReLU, 3 fc7 Conv 1x1 1024->1024, 4 ReLU)
///   extra.1..4    Sequential(0 Conv 1x1, 1 ReLU, 2 Conv 3x3, 3 ReLU): conv8_2 .. conv11_2
/// Feature maps at 300x300: 512x38x38 (L2-normalised x scale), 1024x19x19, 512x10x10,
/// 256x5x5, 256x3x3, 256x1x1. VGG layers keep VGG's init, the rest xavier_uniform / zero bias.
class SSDVGGBackboneImpl : public torch::nn::Cloneable<SSDVGGBackboneImpl>, public SSDBackbone {
 public:
  SSDVGGBackboneImpl();
  void reset() override;
  std::vector<at::Tensor> forward_maps(const at::Tensor& x) override;
  std::vector<int64_t> out_channels() const override;
  std::vector<ops::GridSize> grid_sizes(int64_t image_size) const override;
  std::string classifier_name() const override { return "vgg16"; }
  std::string key_from_classifier(const std::string& key) const override;
  bool ssd_only(const std::string& key) const override;

  /// [512] L2Norm scale of the conv4_3 map (parameter "scale_weight"), initialised to 20.
  at::Tensor scale_weight;
  /// VGG-16 features[0:23], to relu4_3: the first feature map (before its L2Norm).
  torch::nn::Sequential features{nullptr};
  /// extra.0 (pool4, conv5_x, pool5, fc6, fc7) and extra.1..4 (conv8_2 .. conv11_2): the
  /// other five feature maps.
  torch::nn::ModuleList extra{nullptr};
};
TORCH_MODULE(SSDVGGBackbone);

/// Light backbone: torchvision ResNet-18's conv1, bn1, layer1..layer4 (same names, so
/// `load_state_dict_into(backbone, resnet18 state, strict=false)` takes ImageNet weights),
/// feature maps layer3 (256 ch, stride 16), layer4 (512, stride 32), then `extra.i` =
/// Sequential(Conv 1x1 ->128, BN, ReLU, Conv 3x3/2 pad 1 ->256, BN, ReLU) each halving the map.
class SSDResNetBackboneImpl : public torch::nn::Cloneable<SSDResNetBackboneImpl>,
                              public SSDBackbone {
 public:
  /// `base_channels` B: ResNet-18 with ResNetOptions::base_channels(B); each extra stage is
  /// 1x1 conv to 2B then 3x3/2 conv to 4B channels (128 and 256 for B = 64).
  explicit SSDResNetBackboneImpl(int64_t num_extra = 3, int64_t base_channels = 64);
  /// Every stage: layer1 (B ch, stride 4), layer2 (2B, stride 8), then the feature maps of
  /// forward_maps (layer3 4B, layer4 8B, the extras 4B). Mask heads read the fine stages.
  std::vector<at::Tensor> forward_stages(const at::Tensor& x);
  void reset() override;
  std::vector<at::Tensor> forward_maps(const at::Tensor& x) override;
  std::vector<int64_t> out_channels() const override;
  std::vector<ops::GridSize> grid_sizes(int64_t image_size) const override;
  std::string classifier_name() const override { return "resnet18"; }
  std::string key_from_classifier(const std::string& key) const override;
  bool ssd_only(const std::string& key) const override;

  /// Extra stages after layer4 (>= 0, else c10::Error); feature maps = 2 + num_extra.
  int64_t num_extra;
  /// B, the width of ResNet-18's stem and layer1 (64 = torchvision's).
  int64_t base_channels;
  /// Stem: 7x7 stride-2 conv 3 -> B (then bn1, ReLU and a 3x3 stride-2 max-pool).
  torch::nn::Conv2d conv1{nullptr};
  /// The stem's batch norm.
  torch::nn::BatchNorm2d bn1{nullptr};
  /// B channels, stride 4 (a stage of forward_stages, not a feature map).
  torch::nn::Sequential layer1{nullptr};
  /// 2B channels, stride 8 (a stage of forward_stages, not a feature map).
  torch::nn::Sequential layer2{nullptr};
  /// 4B channels, stride 16: the first feature map.
  torch::nn::Sequential layer3{nullptr};
  /// 8B channels, stride 32: the second feature map.
  torch::nn::Sequential layer4{nullptr};
  /// `num_extra` stages of 4B channels, each halving the map: the remaining feature maps.
  torch::nn::ModuleList extra{nullptr};
};
TORCH_MODULE(SSDResNetBackbone);

/// torchvision's SSDLiteFeatureExtractorMobileNet over MobileNetV3-Large
/// (split_mobilenet_v3_at_c4, mobilenet_v3.h). Children and keys:
///   features.0   MobileNetV3 features[0..12], then features[13].block[0] as "13"
///   features.1   "0": features[13].block[1:] ("0.1", "0.2", "0.3"), "1".."3": features[14..16]
///   extra.0..3   Sequential("0" 1x1 conv-BN-ReLU6 to out/2, "1" 3x3 stride-2 depthwise
///                conv-BN-ReLU6, "2" 1x1 conv-BN-ReLU6 to out), out = 512, 256, 256, 128
/// (each conv-BN-ReLU6 is Sequential "0" conv without bias, "1" BatchNorm2d). BatchNorm eps
/// 0.001, momentum 0.03; every conv weight normal(0, 0.03), biases zero (torchvision's
/// _normal_init without backbone weights). Feature maps at 320x320: 672x20x20, 480x10x10
/// (960 without reduced_tail), 512x5x5, 256x3x3, 256x2x2, 128x1x1.
class SSDLiteMobileNetBackboneImpl : public torch::nn::Cloneable<SSDLiteMobileNetBackboneImpl>,
                                     public SSDBackbone {
 public:
  /// `reduced_tail` as SSDOptions::reduced_tail (false for ImageNet MobileNetV3 weights).
  explicit SSDLiteMobileNetBackboneImpl(bool reduced_tail = true);
  void reset() override;
  std::vector<at::Tensor> forward_maps(const at::Tensor& x) override;
  std::vector<int64_t> out_channels() const override;
  std::vector<ops::GridSize> grid_sizes(int64_t image_size) const override;
  std::string classifier_name() const override { return "mobilenet_v3_large"; }
  std::string key_from_classifier(const std::string& key) const override;
  bool ssd_only(const std::string& key) const override;

  /// MobileNetV3-Large's last stage at half width (the second map: 480, not 960 channels).
  bool reduced_tail;
  /// features.0 (to C4, stride 16) and features.1 (the rest of the trunk, stride 32): the
  /// first two feature maps.
  torch::nn::ModuleList features{nullptr};
  /// Four stride-2 stages (512, 256, 256, 128 channels): the last four feature maps.
  torch::nn::ModuleList extra{nullptr};

 private:
  int64_t c4_position_ = 0;
  std::vector<int64_t> channels_;
};
TORCH_MODULE(SSDLiteMobileNetBackbone);

/// torchvision's SSDScoringHead: one 3x3 conv (padding 1) per feature map, in_channels[i] ->
/// num_anchors[i] * num_columns, outputs reshaped (N, A*K, H, W) -> view (N, A, K, H, W) ->
/// permute (N, H, W, A, K) -> (N, HWA, K) and concatenated over the maps. Key:
/// `module_list.i.{weight,bias}`; xavier_uniform weights, zero biases.
/// `separable` is SSDLite's form (torchvision's SSDLiteClassificationHead/RegressionHead):
/// `module_list.i` = Sequential("0" Sequential(3x3 depthwise conv "0" without bias,
/// BatchNorm2d "1" eps 0.001 momentum 0.03, ReLU6), "1" 1x1 conv with bias), every conv weight
/// normal(0, 0.03), biases zero.
class SSDScoringHeadImpl : public torch::nn::Cloneable<SSDScoringHeadImpl> {
 public:
  /// One layer per feature map; c10::Error when in_channels and num_anchors differ in length
  /// or num_columns <= 0.
  SSDScoringHeadImpl(std::vector<int64_t> in_channels, std::vector<int64_t> num_anchors,
                     int64_t num_columns, bool separable = false);
  void reset() override;
  /// maps[i]: [N, in_channels[i], H_i, W_i] -> [N, sum_i H_i W_i A_i, num_columns].
  at::Tensor forward(const std::vector<at::Tensor>& maps);

  /// Channels of each feature map.
  std::vector<int64_t> in_channels;
  /// A_i, default boxes per cell of each feature map.
  std::vector<int64_t> num_anchors;
  /// K, values per default box (class logits or 4 box offsets).
  int64_t num_columns;
  /// SSDLite's depthwise-separable layers in place of the 3x3 convs.
  bool separable;
  /// One layer per feature map (see above).
  torch::nn::ModuleList module_list{nullptr};
};
TORCH_MODULE(SSDScoringHead);

/// torchvision's SSDHead (or SSDLiteHead when `separable`): `classification_head`
/// (K = num_classes) and `regression_head` (K = 4).
class SSDHeadImpl : public torch::nn::Cloneable<SSDHeadImpl> {
 public:
  /// Both heads over feature maps of `in_channels` with `num_anchors` default boxes per cell.
  SSDHeadImpl(std::vector<int64_t> in_channels, std::vector<int64_t> num_anchors,
              int64_t num_classes, bool separable = false);
  void reset() override;

  /// Channels of each feature map.
  std::vector<int64_t> in_channels;
  /// Default boxes per cell of each feature map.
  std::vector<int64_t> num_anchors;
  /// C, classes including background.
  int64_t num_classes;
  /// SSDLite's depthwise-separable heads.
  bool separable;
  /// Class logits [N, P, num_classes] (SSDOutput::scores).
  SSDScoringHead classification_head{nullptr};
  /// Box offsets [N, P, 4] (SSDOutput::locations).
  SSDScoringHead regression_head{nullptr};
};
TORCH_MODULE(SSDHead);

/// The SSD network. Children: `backbone` (SSDVGGBackbone, SSDLiteMobileNetBackbone or
/// SSDResNetBackbone) and `head` (SSDHead), so for "vgg16" and "mobilenet_v3_large" the
/// state_dict keys are torchvision's ssd300_vgg16 / ssdlite320_mobilenet_v3_large keys
/// (backbone.features.*, backbone.extra.*, head.*, and SSD300's backbone.scale_weight).
class SSDImpl : public torch::nn::Cloneable<SSDImpl> {
 public:
  /// Builds backbone and head. c10::Error for num_classes < 2, image_size < 32, mean or std
  /// without 3 values, an unknown head or backbone, vgg16 without image_size 300,
  /// backbone_channels != 64 on another backbone than resnet18, or box_options whose aspect
  /// ratios are not one per feature map.
  explicit SSDImpl(SSDOptions options);
  void reset() override;

  /// x: [N,3,H,W] float, already preprocessed (see preprocess) -> locations, class logits and
  /// the default boxes for the feature-map sizes this input gives (cached per size).
  SSDOutput forward(const at::Tensor& x);

  /// The heads on feature maps the backbone computed (forward = forward_heads(forward_maps(x),
  /// {H, W} of x)); for models that also read the backbone's stages.
  SSDOutput forward_heads(const std::vector<at::Tensor>& maps, ops::GridSize image_size);

  /// ssd_preprocess with this model's image size, mean and std.
  at::Tensor preprocess(const at::Tensor& images) const;

  /// ssd_postprocess with this model's postprocess options.
  std::vector<Detections> postprocess(const SSDOutput& output,
                                      const std::vector<ops::GridSize>& original_sizes = {}) const;

  /// The feature maps of the backbone (what the head reads), finest first.
  std::vector<at::Tensor> forward_maps(const at::Tensor& x);

  /// The backbone through its common interface.
  SSDBackbone& maps_backbone() const { return *backbone_maps_; }

  /// The default boxes [P,4] (x1,y1,x2,y2 pixels) of a square input of options.image_size().
  at::Tensor priors();

  /// Boxes per cell of each feature map.
  std::vector<int64_t> num_anchors_per_location() const;

  void pretty_print(std::ostream& stream) const override;

  /// The options it was built with; reset() rebuilds from them.
  SSDOptions options;
  /// SSDVGGBackbone, SSDLiteMobileNetBackbone or SSDResNetBackbone as options.backbone says
  /// (keys "backbone.*"); maps_backbone() is its SSDBackbone interface.
  std::shared_ptr<torch::nn::Module> backbone;
  /// The heads over the backbone's maps (keys "head.classification_head.*",
  /// "head.regression_head.*").
  SSDHead head{nullptr};

 private:
  SSDBackbone* backbone_maps_ = nullptr;
  std::shared_ptr<ops::DefaultBoxGenerator> generator_;
  std::vector<ops::GridSize> cached_grids_;
  ops::GridSize cached_image_size_{{0, 0}};
  at::Tensor cached_priors_;
  at::Tensor priors_for(const std::vector<ops::GridSize>& grids, ops::GridSize image_size,
                        const at::Tensor& like);
};
TORCH_MODULE(SSD);

/// The layers with a spatial window from the input to the coarsest feature map of the SSD
/// `options` describes (backbone convolutions and pools, then the extra stages), for
/// nn::receptive_fields and `ostrov receptive-field`. c10::Error for an unknown backbone.
std::vector<nn::LayerSpec> ssd_receptive_field_layers(const SSDOptions& options);

/// torchvision's GeneralizedRCNNTransform for SSD (eval): images [3,H,W] or [N,3,H,W] float
/// in [0,1] -> (x - mean) / std per channel, then bilinear resize (align_corners = false) to
/// size x size -> [N,3,size,size] float. mean and std have 3 values.
at::Tensor ssd_preprocess(const at::Tensor& images, int64_t size, const std::vector<double>& mean,
                          const std::vector<double>& stddev);

/// torchvision's SSD.postprocess_detections + transform.postprocess: for each image, decode
/// locations [N,P,4] on priors [P,4] (BoxCoder(10,10,5,5)), clip to image_size {H,W}; softmax
/// of logits [N,P,C]; for each class 1..C-1 the candidates with score > score_threshold, the
/// topk_candidates best; batched NMS per class; the detections_per_image best. Boxes are then
/// rescaled from image_size to original_sizes[n] {H,W} (empty = no rescaling; otherwise one
/// entry per image) as torchvision's resize_boxes.
std::vector<Detections> ssd_postprocess(const at::Tensor& locations, const at::Tensor& logits,
                                        const at::Tensor& priors, ops::GridSize image_size,
                                        const std::vector<ops::GridSize>& original_sizes = {},
                                        const SSDPostprocessOptions& options = {});

}  // namespace ostrov::models
