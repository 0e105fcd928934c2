#pragma once
// torchvision's dense-prediction segmentation models, with its state_dict keys:
//   DeepLabV3  a dilated backbone (ResNet at output stride 8 or 16, MobileNetV3 at 16), an
//              ASPP head (1x1, three 3x3 convs with atrous rates 12/24/36, image pooling,
//              projection with dropout 0.5), a 3x3 conv and a 1x1 classifier; with head kFCN
//              the same network with torchvision's FCNHead instead (`fcn_resnet50`). An
//              FCNHead on a shallower stage adds deep supervision (`aux`).
//   LRASPP     MobileNetV3 (dilated) with the Lite R-ASPP head: a 1x1 conv-BN-ReLU on the
//              last stage gated by a globally pooled sigmoid branch, up-sampled to the
//              stride-8 stage and added to a 1x1 classifier of that stage.
//   DeepLabV3Plus  DeepLabV3+ (not in torchvision): ASPP at output stride 16, up-sampled 4x and
//              concatenated with a 1x1-reduced stride-4 stage, two 3x3 conv-BN-ReLU, a 1x1
//              classifier.
// All up-sample the logits bilinearly (align_corners false) to the input's size, as
// torchvision; any H, W >= 1.
//
// Papers: Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable
// Convolution for Semantic Image Segmentation", ECCV 2018, arXiv:1802.02611 (section 3.1, the
// decoder; 4.1: 48 low-level channels, two 3x3 convs of 256, rates 6/12/18 at stride 16);
// Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic Image
// Segmentation", arXiv:1706.05587 (section 3.3: ASPP with image-level features); Long,
// Shelhamer & Darrell, "Fully Convolutional Networks", CVPR 2015 (the FCN head); Howard et
// al., "Searching for MobileNetV3", arXiv:1905.02244 (section 6.1.2: LR-ASPP).

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/backbone.h"
#include "ostrov/models/segmentation/network.h"

namespace ostrov::models {

/// The classifier on the backbone's last stage.
enum class DenseHead {
  kASPP,  ///< torchvision's DeepLabHead (DeepLabV3)
  kFCN,   ///< torchvision's FCNHead (its `fcn_resnet50` / `fcn_resnet101`)
};

/// Options of `DeepLabV3`.
///
/// ```
/// ostrov::models::DeepLabV3 net(ostrov::models::DeepLabV3Options(21).backbone(
///     ostrov::models::BackboneOptions("mobilenet_v3_large").output_stride(16)));
/// ostrov::io::load_weights(*net, "deeplabv3_mobilenet_v3_large.pth");  // torchvision's keys
/// ```
struct DeepLabV3Options {
  /// `num_classes` outputs; the other options at their defaults (ResNet-50, stride 8, ASPP).
  explicit DeepLabV3Options(int64_t num_classes) : num_classes_(num_classes) {}

  /// K, output channels (classes including background).
  TORCH_ARG(int64_t, num_classes);
  /// "resnet18" ... "resnet152" (output stride 8, torchvision's, or 16) or
  /// "mobilenet_v3_large" / "mobilenet_v3_small" (output stride 16, the dilated form).
  TORCH_ARG(BackboneOptions, backbone) = BackboneOptions("resnet50").output_stride(8);
  /// ASPP (DeepLabV3) or the FCN head.
  TORCH_ARG(DenseHead, head) = DenseHead::kASPP;
  /// Dilation rates of ASPP's three 3x3 branches (torchvision: 12, 24, 36).
  TORCH_ARG(std::vector<int64_t>, atrous_rates) = std::vector<int64_t>{12, 24, 36};
  /// Adds the FCNHead on layer3 (ResNet) or the first stride-8 stage (MobileNetV3).
  TORCH_ARG(bool, aux) = true;
  /// Weight of the auxiliary loss (0.5 in torchvision's reference training).
  TORCH_ARG(double, aux_weight) = 0.5;
};

/// DeepLabV3 (or FCN). Children and their state_dict keys, torchvision's:
///   backbone        the backbone without its classifier: ResNet ("backbone.conv1.weight",
///                   "backbone.layer4.2.bn3.running_var", ...) or MobileNetV3Features
///                   ("backbone.0.0.weight" ... "backbone.16.1.bias")
///   classifier      kASPP: Sequential("0" ASPP: "convs.0" (1x1 conv-BN-ReLU), "convs.1..3"
///                   (3x3 dilated conv-BN-ReLU), "convs.4" (pool, "1" 1x1 conv, "2" BN),
///                   "project" (1x1 conv-BN-ReLU, dropout 0.5); "1" 3x3 conv 256 -> 256,
///                   "2" BN, "4" 1x1 conv -> K)
///                   kFCN: Sequential("0" 3x3 conv C -> C/4, "1" BN, "3" dropout 0.1,
///                   "4" 1x1 conv -> K)
///   aux_classifier  (aux) the FCN head on the auxiliary stage
class DeepLabV3Impl : public torch::nn::Cloneable<DeepLabV3Impl>, public SegmentationNetwork {
 public:
  /// Builds the network. c10::Error for num_classes < 1, empty or < 1 atrous_rates, a negative
  /// aux_weight, or a backbone or output stride the model does not take.
  explicit DeepLabV3Impl(DeepLabV3Options options);

  void reset() override;

  /// x: `[N, 3, H, W]` float (ImageNet-normalised RGB for torchvision weights) -> logits
  /// `[N, K, H, W]`. In training mode ASPP's pooled branch needs a batch of N >= 2.
  at::Tensor forward(const at::Tensor& x) override;
  /// Main and auxiliary logits and aux_weight (aux undefined when the options disable it).
  SegmentationOutput forward_with_aux(const at::Tensor& x) override;

  /// Loads a torchvision classification state_dict of the backbone (resnet50, or
  /// mobilenet_v3_large ...) into `backbone`, ignoring its classifier; IoError naming `source`
  /// and listing the keys that do not match.
  void load_backbone_weights(const io::StateDict& state, const std::string& source);

  int64_t num_classes() const override { return options.num_classes(); }
  int64_t in_channels() const override { return 3; }

  /// The backbone stages the heads read: {main, aux}.
  std::string main_stage() const { return main_stage_; }
  /// The auxiliary head's stage: layer3 (ResNet) or the first stride-8 stage (MobileNetV3).
  std::string aux_stage() const { return aux_stage_; }

  void pretty_print(std::ostream& stream) const override;
  /// A deep copy (rebuilt from the options, then every parameter and buffer copied, moved to
  /// `device` if given), so that the copy reads its own backbone.
  std::shared_ptr<torch::nn::Module> clone(
      const c10::optional<torch::Device>& device = c10::nullopt) const override;

  /// The options it was built with; reset() rebuilds from them.
  DeepLabV3Options options;
  /// ResNet or MobileNetV3Features without classifier, as options.backbone says (see above).
  std::shared_ptr<torch::nn::Module> backbone;
  /// DeepLabHead (kASPP) or FCNHead (kFCN) on the last stage: main logits at the stage's size.
  torch::nn::Sequential classifier{nullptr};
  /// FCNHead on aux_stage(); null when options.aux is false.
  torch::nn::Sequential aux_classifier{nullptr};

 private:
  SegmentationOutput run(const at::Tensor& x, bool with_aux);
  std::shared_ptr<Backbone> features_;
  std::string main_stage_;
  std::string aux_stage_;
};

/// `ostrov::models::DeepLabV3(DeepLabV3Options(21))`.
TORCH_MODULE(DeepLabV3);

/// Options of `DeepLabV3Plus`.
struct DeepLabV3PlusOptions {
  /// `num_classes` outputs; the other options at their defaults (MobileNetV3-Large).
  explicit DeepLabV3PlusOptions(int64_t num_classes) : num_classes_(num_classes) {}

  /// K, output channels (classes including background).
  TORCH_ARG(int64_t, num_classes);
  /// As DeepLabV3's: ResNets at output stride 16 (or 8), MobileNetV3 at 16.
  TORCH_ARG(BackboneOptions, backbone) = BackboneOptions("mobilenet_v3_large").output_stride(16);
  /// ASPP's rates (the paper's 6, 12, 18 at output stride 16).
  TORCH_ARG(std::vector<int64_t>, atrous_rates) = std::vector<int64_t>{6, 12, 18};
  /// Channels the stride-4 features are reduced to before the concatenation (48).
  TORCH_ARG(int64_t, low_level_channels) = 48;
  /// Channels of ASPP and of the decoder's 3x3 convs (256).
  TORCH_ARG(int64_t, decoder_channels) = 256;
};

/// DeepLabV3+. Children and their state_dict keys (ostrov's; torchvision has no DeepLabV3+):
///   backbone    as DeepLabV3's ("backbone.layer1.0.conv1.weight" / "backbone.0.0.weight")
///   aspp        ASPP as in DeepLabV3 ("aspp.convs.0.0.weight", ..., "aspp.project.1.bias")
///   low_level   Sequential("0" 1x1 conv C_4 -> low_level_channels, "1" BN)
///   decoder     Sequential("0" 3x3 conv, "1" BN, "3" 3x3 conv, "4" BN), decoder_channels
///   classifier  1x1 conv decoder_channels -> K (with bias)
/// The stride-4 stage is ResNet's layer1 or MobileNetV3's first stride-4 stage.
class DeepLabV3PlusImpl : public torch::nn::Cloneable<DeepLabV3PlusImpl>,
                          public SegmentationNetwork {
 public:
  /// Builds the network. c10::Error for num_classes, low_level_channels or decoder_channels
  /// < 1, empty or < 1 atrous_rates, or a backbone or output stride the model does not take.
  explicit DeepLabV3PlusImpl(DeepLabV3PlusOptions options);

  void reset() override;

  /// x: `[N, 3, H, W]` float -> logits `[N, K, H, W]`; training needs N >= 2 (ASPP pooling).
  at::Tensor forward(const at::Tensor& x) override;

  /// A torchvision classification state_dict into `backbone` (see DeepLabV3Impl).
  void load_backbone_weights(const io::StateDict& state, const std::string& source);

  int64_t num_classes() const override { return options.num_classes(); }
  int64_t in_channels() const override { return 3; }

  void pretty_print(std::ostream& stream) const override;
  /// A deep copy (rebuilt from the options, then every parameter and buffer copied, moved to
  /// `device` if given), so that the copy reads its own backbone.
  std::shared_ptr<torch::nn::Module> clone(
      const c10::optional<torch::Device>& device = c10::nullopt) const override;

  /// The options it was built with; reset() rebuilds from them.
  DeepLabV3PlusOptions options;
  /// ResNet or MobileNetV3Features without classifier, as options.backbone says.
  std::shared_ptr<torch::nn::Module> backbone;
  /// ASPP on the last stage, to decoder_channels; up-sampled to the stride-4 stage's size.
  std::shared_ptr<torch::nn::Module> aspp;
  /// 1x1 conv-BN-ReLU reducing the stride-4 stage to low_level_channels.
  torch::nn::Sequential low_level{nullptr};
  /// Two 3x3 conv-BN-ReLU on [ASPP, low_level] concatenated, to decoder_channels.
  torch::nn::Sequential decoder{nullptr};
  /// 1x1 conv to K logits at stride 4, then up-sampled to the input's size.
  torch::nn::Conv2d classifier{nullptr};

 private:
  std::shared_ptr<Backbone> features_;
  std::string low_stage_;
  std::string high_stage_;
};

/// `ostrov::models::DeepLabV3Plus(DeepLabV3PlusOptions(21))`.
TORCH_MODULE(DeepLabV3Plus);

/// Options of `LRASPP`.
struct LRASPPOptions {
  /// `num_classes` outputs; the other options at their defaults (MobileNetV3-Large).
  explicit LRASPPOptions(int64_t num_classes) : num_classes_(num_classes) {}

  /// K, output channels (classes including background).
  TORCH_ARG(int64_t, num_classes);
  /// "mobilenet_v3_large" (torchvision's) or "mobilenet_v3_small", output stride 16.
  TORCH_ARG(BackboneOptions, backbone) = BackboneOptions("mobilenet_v3_large").output_stride(16);
  /// Channels of the head's two 1x1 branches (128 in torchvision and the paper).
  TORCH_ARG(int64_t, inter_channels) = 128;
};

/// Lite R-ASPP. Children and their state_dict keys, torchvision's:
///   backbone    MobileNetV3Features, dilated ("backbone.0.0.weight" ...)
///   classifier  "cbr.0" 1x1 conv (no bias) C_high -> inter, "cbr.1" BN; "scale.1" 1x1 conv
///               (no bias) C_high -> inter after global pooling, then sigmoid;
///               "low_classifier" 1x1 conv C_low -> K, "high_classifier" 1x1 conv inter -> K
class LRASPPImpl : public torch::nn::Cloneable<LRASPPImpl>, public SegmentationNetwork {
 public:
  /// Builds the network. c10::Error for num_classes or inter_channels < 1, a backbone other
  /// than mobilenet_v3_large / mobilenet_v3_small, or an output stride other than 16.
  explicit LRASPPImpl(LRASPPOptions options);

  void reset() override;

  /// x: `[N, 3, H, W]` float -> logits `[N, K, H, W]`.
  at::Tensor forward(const at::Tensor& x) override;

  /// A torchvision MobileNetV3 classification state_dict into `backbone` (see DeepLabV3Impl).
  void load_backbone_weights(const io::StateDict& state, const std::string& source);

  int64_t num_classes() const override { return options.num_classes(); }
  int64_t in_channels() const override { return 3; }

  void pretty_print(std::ostream& stream) const override;
  /// A deep copy (rebuilt from the options, then every parameter and buffer copied, moved to
  /// `device` if given), so that the copy reads its own backbone.
  std::shared_ptr<torch::nn::Module> clone(
      const c10::optional<torch::Device>& device = c10::nullopt) const override;

  /// The options it was built with; reset() rebuilds from them.
  LRASPPOptions options;
  /// MobileNetV3Features, last stage dilated (output stride 16).
  std::shared_ptr<torch::nn::Module> backbone;
  /// The Lite R-ASPP head on the stride-8 and the last stage: logits at stride 8.
  std::shared_ptr<torch::nn::Module> classifier;

 private:
  std::shared_ptr<Backbone> features_;
  std::string low_stage_;
  std::string high_stage_;
};

/// `ostrov::models::LRASPP(LRASPPOptions(21))`.
TORCH_MODULE(LRASPP);

}  // namespace ostrov::models
