#pragma once
// MobileNetV3-Large and -Small exactly as torchvision 0.14 builds them
// (`torchvision.models.mobilenet_v3_large/small`): inverted residual blocks (1x1 expansion,
// depthwise k x k, squeeze-excitation with a hard sigmoid, 1x1 projection), hardswish in the
// deeper half, batch norm with eps 0.001 and momentum 0.01. Parameter and buffer names equal
// torchvision's state_dict keys, so ImageNet weights load unchanged. `dilated` is the form
// torchvision's segmentation models use (the last stage dilated instead of strided: output
// stride 16).
//
// Paper: Howard et al., "Searching for MobileNetV3", ICCV 2019, arXiv:1905.02244 (tables 1
// and 2: the two architectures; section 5.4 / 6.1.2: the dilated segmentation form).

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

/// One row of the paper's tables 1/2, as torchvision's InvertedResidualConfig after the width
/// multiplier (channels rounded to multiples of 8).
struct InvertedResidualConfig {
  int64_t input_channels;     ///< width of the block's input
  int64_t kernel;             ///< kernel size of the depthwise conv (3 or 5)
  int64_t expanded_channels;  ///< width after the 1x1 expansion (none when = input_channels)
  int64_t out_channels;       ///< width after the 1x1 projection
  bool use_se;                ///< squeeze-excitation (to expanded/4, rounded to 8) after depthwise
  bool use_hardswish;  ///< "HS" (else "RE", ReLU)
  int64_t stride;      ///< the table's stride; a dilated block runs with stride 1
  int64_t dilation;  ///< of the depthwise conv: 2 in the last stage when `dilated`, else 1
};

/// Options of `MobileNetV3` and `MobileNetV3Features`. `MobileNetV3Options("large")` is
/// torchvision's mobilenet_v3_large.
struct MobileNetV3Options {
  /// `arch`: "large" or "small" (checked when the network is built).
  // NOLINTNEXTLINE(google-explicit-constructor): MobileNetV3("small") reads like torchvision
  /* implicit */ MobileNetV3Options(std::string arch = "large") : arch_(std::move(arch)) {}
  /// As above, from a string literal.
  // NOLINTNEXTLINE(google-explicit-constructor)
  /* implicit */ MobileNetV3Options(const char* arch) : arch_(arch) {}

  /// "large" or "small" (also accepted: "mobilenet_v3_large", "mobilenet_v3_small").
  TORCH_ARG(std::string, arch);
  /// Outputs of the classifier; 0 builds `features` only (a backbone).
  TORCH_ARG(int64_t, num_classes) = 1000;
  /// Multiplies every width (rounded to a multiple of 8); torchvision's weights need 1.0.
  TORCH_ARG(double, width_mult) = 1.0;
  /// Halves the channels of the last stage (torchvision's `reduced_tail`).
  TORCH_ARG(bool, reduced_tail) = false;
  /// The last stage dilated (2) instead of strided: output stride 16 instead of 32.
  TORCH_ARG(bool, dilated) = false;
  /// Dropout before the last Linear of the classifier.
  TORCH_ARG(double, dropout) = 0.2;
  /// Momentum of every BatchNorm2d (torchvision's default 0.01; its SSDLite uses 0.03).
  TORCH_ARG(double, bn_momentum) = 0.01;

 public:
  /// "large" or "small" (throws c10::Error for anything else).
  std::string canonical_arch() const;
  /// The inverted residual blocks in network order (features "1" ... "N-2").
  std::vector<InvertedResidualConfig> blocks() const;
  /// Channels of the classifier's hidden layer (1280 large, 1024 small, halved with
  /// reduced_tail, times width_mult).
  int64_t last_channel() const;
};

/// The feature extractor of MobileNetV3 (torchvision's `model.features`), a Backbone whose
/// stages are its children, named as torchvision names them:
///   "0"          Conv2dNormActivation 3x3 s2, 3 -> 16, hardswish: "0.0.weight" (conv, no
///                bias), "0.1.*" (BatchNorm2d)
///   "1" ... "N-2" InvertedResidual: "i.block.j...", j over [1x1 expand ("0.0", "0.1") when the
///                expansion differs from the input], depthwise conv-BN-act, SqueezeExcitation
///                ("fc1.weight/bias", "fc2.weight/bias") when used, 1x1 project conv-BN
///   "N-1"        Conv2dNormActivation 1x1, -> 6 x the last block's channels, hardswish
/// (N = 17 for large, 13 for small). Stage names are these indices ("0" ... "16"), the names
/// torchvision's segmentation models return from IntermediateLayerGetter.
class MobileNetV3FeaturesImpl : public torch::nn::Cloneable<MobileNetV3FeaturesImpl>,
                                public Backbone {
 public:
  /// Builds and initialises the layers as torchvision does (num_classes and dropout are not
  /// read); c10::Error for an unknown arch or width_mult <= 0.
  explicit MobileNetV3FeaturesImpl(MobileNetV3Options options = {});

  void reset() override;

  /// x: [N,3,H,W] -> the last stage's features [N, C, H/s, W/s] (s = 32, or 16 dilated).
  torch::Tensor forward(const torch::Tensor& x);

  std::vector<std::string> stage_names() const override;
  int64_t stage_channels(const std::string& name) const override;
  int64_t stage_stride(const std::string& name) const override;
  /// x: [N,3,H,W] -> the stages "0" ... "N-1" in `names` (network order), running only as far
  /// as the deepest; c10::Error for an unknown name or another input shape.
  torch::OrderedDict<std::string, torch::Tensor> forward_features(
      const torch::Tensor& x, const std::vector<std::string>& names) override;

  /// A torchvision MobileNetV3 classification state_dict of the same arch and width: its
  /// `features.*` entries, without the prefix, must match every key of this module by name
  /// and shape (IoError naming `source` and listing them otherwise); `classifier.*` is ignored.
  /// A file of this module's own keys ("0.0.weight" ...) is accepted as well.
  void load_torchvision(const io::StateDict& state, const std::string& source) override;

  /// The first stage whose output has stride `stride` (e.g. 8: "4" in large, "2" in small,
  /// torchvision's "C2" position for the segmentation heads); c10::Error when none has it.
  std::string first_stage_with_stride(int64_t stride) const;

  void pretty_print(std::ostream& stream) const override;

  MobileNetV3Options options;  ///< what reset() builds from
  /// The children "0" ... "N-1" in order.
  std::vector<std::shared_ptr<torch::nn::Module>> layers;

 private:
  size_t stage_position(const std::string& name) const;
  torch::Tensor run_layer(size_t position, const torch::Tensor& x);
  std::vector<int64_t> channels_;
  std::vector<int64_t> strides_;
};

/// `ostrov::models::MobileNetV3Features(MobileNetV3Options("large").dilated(true))`.
TORCH_MODULE(MobileNetV3Features);

/// MobileNetV3 as torchvision's classification network. Children and state_dict keys:
///   features    MobileNetV3Features ("features.0.0.weight", "features.4.block.2.fc1.bias", ...)
///   (no avgpool child: forward pools with at::adaptive_avg_pool2d to 1x1, which has no keys)
///   classifier  Sequential("0" Linear(6C, last_channel), "1" Hardswish, "2" Dropout,
///               "3" Linear(last_channel, num_classes)); absent when num_classes is 0
/// Initialisation as torchvision: convs kaiming_normal_(fan_out), conv biases 0, BatchNorm 1/0,
/// Linear normal(0, 0.01) with bias 0.
class MobileNetV3Impl : public torch::nn::Cloneable<MobileNetV3Impl>, public Backbone {
 public:
  /// Builds `features` and, when num_classes > 0, `classifier`; c10::Error for
  /// num_classes < 0, dropout outside [0,1), an unknown arch or width_mult <= 0.
  explicit MobileNetV3Impl(MobileNetV3Options options = {});

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
  /// features->forward_features: the stages "0" ... "N-1" in `names`.
  torch::OrderedDict<std::string, torch::Tensor> forward_features(
      const torch::Tensor& x, const std::vector<std::string>& names) override {
    return features->forward_features(x, names);
  }
  /// A torchvision MobileNetV3 state_dict of the same arch: everything but `classifier.*`
  /// must match; this network's own classifier keeps its values.
  void load_torchvision(const io::StateDict& state, const std::string& source) override;

  void pretty_print(std::ostream& stream) const override;

  MobileNetV3Options options;  ///< what reset() builds from
  MobileNetV3Features features{nullptr};  ///< the backbone: [N,3,H,W] -> [N,6C,h,w]
  /// Linear, Hardswish, Dropout, Linear; null when num_classes is 0.
  torch::nn::Sequential classifier{nullptr};
};

/// `ostrov::models::MobileNetV3("large")` is torchvision's `mobilenet_v3_large(weights=None)`.
TORCH_MODULE(MobileNetV3);

/// MobileNetV3's features cut where torchvision's SSDLite cuts them
/// (SSDLiteFeatureExtractorMobileNet; the paper's section 6.3): the detector's first feature map
/// is the C4 block's 1x1 expansion (stride 16), the second the end of the network (stride 32).
/// The modules are those of a `MobileNetV3Features(options)`, initialised as it is:
///   first   features[0 .. c4-1] as "0" ... "c4-1", then features[c4].block[0] (the expansion
///           conv-BN-activation) as "c4"
///   second  "0": features[c4].block[1:] (its children keep their names "1", "2", "3"), then
///           features[c4+1 ...] as "1", "2", ...
/// c4 is the last strided block (torchvision's stage_indices[-2]: 13 in large, 9 in small).
struct MobileNetV3C4Split {
  /// x [N,3,H,W] -> [N,first_channels,H/16,W/16].
  torch::nn::Sequential first{nullptr};
  /// first's output -> [N,second_channels,H/32,W/32] (H/16 when `dilated`).
  torch::nn::Sequential second{nullptr};
  int64_t c4_position = 0;      ///< c4, the index in torchvision's `features`
  int64_t first_channels = 0;   ///< width of the expansion (672 in large)
  int64_t second_channels = 0;  ///< width of the last conv (960 in large; 480 reduced_tail)
};

/// The split above for `options` (c10::Error when the C4 block has no expansion, which no
/// torchvision MobileNetV3 has).
MobileNetV3C4Split split_mobilenet_v3_at_c4(const MobileNetV3Options& options);

}  // namespace ostrov::models
