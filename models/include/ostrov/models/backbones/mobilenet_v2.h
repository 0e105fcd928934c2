#pragma once
// MobileNetV2 exactly as torchvision 0.14 builds it (`torchvision.models.mobilenet_v2`):
// inverted residual blocks with linear bottlenecks (1x1 expansion by t, 3x3 depthwise, 1x1
// linear projection), ReLU6, batch norm with PyTorch's defaults (eps 1e-5, momentum 0.1).
// Parameter and buffer names equal torchvision's state_dict keys, so ImageNet weights load
// unchanged.
//
// Paper: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018,
// arXiv:1801.04381 (table 2: the architecture).

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/backbone.h"

namespace ostrov::models {

/// Options of `MobileNetV2` and `MobileNetV2Features`; the defaults are torchvision's
/// mobilenet_v2.
struct MobileNetV2Options {
  /// Outputs of the classifier; 0 builds `features` only (a backbone).
  TORCH_ARG(int64_t, num_classes) = 1000;
  /// Multiplies every width (rounded to a multiple of 8); torchvision's weights need 1.0.
  TORCH_ARG(double, width_mult) = 1.0;
  /// Dropout before the classifier's Linear.
  TORCH_ARG(double, dropout) = 0.2;

 public:
  /// Channels of the last 1x1 conv: 1280, or 1280 x width_mult when width_mult > 1.
  int64_t last_channel() const;
};

/// The feature extractor of MobileNetV2 (torchvision's `model.features`), a Backbone whose
/// stages are its children, named as torchvision names them:
///   "0"        Conv2dNormActivation 3x3 s2, 3 -> 32, ReLU6: "0.0.weight" (conv, no bias),
///              "0.1.*" (BatchNorm2d)
///   "1" - "17" InvertedResidual: "i.conv.j...": with expansion t = 1 the depthwise
///              conv-BN-ReLU6 ("0.0", "0.1"), the 1x1 projection conv ("1") and its BN ("2");
///              otherwise the 1x1 expansion conv-BN-ReLU6 ("0.0", "0.1"), the depthwise one
///              ("1.0", "1.1"), the projection conv ("2") and its BN ("3")
///   "18"       Conv2dNormActivation 1x1, 320 -> last_channel, ReLU6
/// Strides: "0"-"1" 2, "2"-"3" 4, "4"-"6" 8, "7"-"13" 16, "14"-"18" 32 (the last stage of each
/// stride, "1", "3", "6", "13", "18", is where a U-Net or FPN taps it).
class MobileNetV2FeaturesImpl : public torch::nn::Cloneable<MobileNetV2FeaturesImpl>,
                                public Backbone {
 public:
  /// Builds and initialises the layers as torchvision does (num_classes and dropout are not
  /// read); c10::Error for width_mult <= 0.
  explicit MobileNetV2FeaturesImpl(MobileNetV2Options options = {});

  void reset() override;

  /// x: [N,3,H,W] -> the last stage's features [N, last_channel, H/32, W/32].
  torch::Tensor forward(const torch::Tensor& x);

  std::vector<std::string> stage_names() const override;
  int64_t stage_channels(const std::string& name) const override;
  int64_t stage_stride(const std::string& name) const override;
  /// x: [N,3,H,W] -> the stages "0" ... "18" in `names` (network order), running only as far
  /// as the deepest; c10::Error for an unknown name or another input shape.
  torch::OrderedDict<std::string, torch::Tensor> forward_features(
      const torch::Tensor& x, const std::vector<std::string>& names) override;

  /// A torchvision MobileNetV2 classification state_dict of the same width: its `features.*`
  /// entries, without the prefix, must match every key by name and shape (IoError naming
  /// `source` and listing them otherwise); `classifier.*` is ignored. A file of this module's
  /// own keys ("0.0.weight" ...) is accepted as well.
  void load_torchvision(const io::StateDict& state, const std::string& source) override;

  void pretty_print(std::ostream& stream) const override;

  MobileNetV2Options options;  ///< what reset() builds from (width_mult)
  /// The children "0" ... "18" in order.
  std::vector<std::shared_ptr<torch::nn::Module>> layers;

 private:
  torch::Tensor run_layer(size_t position, const torch::Tensor& x);
  std::vector<int64_t> channels_;
  std::vector<int64_t> strides_;
};

/// `ostrov::models::MobileNetV2Features()`.
TORCH_MODULE(MobileNetV2Features);

/// MobileNetV2 as torchvision's classification network. Children and state_dict keys:
///   features    MobileNetV2Features ("features.0.0.weight", "features.5.conv.1.0.weight", ...)
///   classifier  Sequential("0" Dropout, "1" Linear(last_channel, num_classes)); absent when
///               num_classes is 0
/// Initialisation as torchvision: convs kaiming_normal_(fan_out), conv biases 0, BatchNorm 1/0,
/// Linear normal(0, 0.01) with bias 0.
class MobileNetV2Impl : public torch::nn::Cloneable<MobileNetV2Impl>, public Backbone {
 public:
  /// Builds `features` and, when num_classes > 0, `classifier`; c10::Error for
  /// num_classes < 0, dropout outside [0,1) or width_mult <= 0.
  explicit MobileNetV2Impl(MobileNetV2Options options = {});

  void reset() override;

  /// x: [N,3,H,W] float (ImageNet-normalised RGB for torchvision weights) -> logits
  /// [N, num_classes] (no softmax). c10::Error when built without a classifier.
  torch::Tensor forward(const torch::Tensor& x);

  std::vector<std::string> stage_names() const override { return features->stage_names(); }
  int64_t stage_channels(const std::string& name) const override {
    return features->stage_channels(name);
  }
  int64_t stage_stride(const std::string& name) const override {
    return features->stage_stride(name);
  }
  /// features->forward_features: the stages "0" ... "18" in `names`.
  torch::OrderedDict<std::string, torch::Tensor> forward_features(
      const torch::Tensor& x, const std::vector<std::string>& names) override {
    return features->forward_features(x, names);
  }
  /// A torchvision MobileNetV2 state_dict: everything but `classifier.*` must match; this
  /// network's own classifier keeps its values.
  void load_torchvision(const io::StateDict& state, const std::string& source) override;

  void pretty_print(std::ostream& stream) const override;

  MobileNetV2Options options;  ///< what reset() builds from
  MobileNetV2Features features{nullptr};  ///< the backbone: [N,3,H,W] -> [N,last_channel,h,w]
  torch::nn::Sequential classifier{nullptr};  ///< Dropout, Linear; null when num_classes is 0
};

/// `ostrov::models::MobileNetV2()` is torchvision's `mobilenet_v2(weights=None)`.
TORCH_MODULE(MobileNetV2);

}  // namespace ostrov::models
