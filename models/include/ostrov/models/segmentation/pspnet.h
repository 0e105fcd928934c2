#pragma once
// PSPNet: a dilated ResNet (output stride 8), a pyramid pooling module that pools the last
// feature map into 1x1, 2x2, 3x3 and 6x6 bins, reduces each with a 1x1 conv-BN-ReLU,
// up-samples them back and concatenates them with the features, then a 3x3 conv-BN-ReLU,
// dropout and a 1x1 classifier; an auxiliary classifier on layer3 adds deep supervision
// (loss weight 0.4) during training.
//
// Paper: Zhao, Shi, Qi, Wang & Jia, "Pyramid Scene Parsing Network", CVPR 2017,
// arXiv:1612.01105 (section 3.2, 3.3; table 1's ablation: B1 vs B1236, MAX vs AVE, DR
// (dimension reduction); table 2: auxiliary loss weight 0.4).

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/models/segmentation/network.h"
#include "ostrov/models/segmentation/padding.h"
#include "ostrov/nn/conv_bn_act.h"

namespace ostrov::models {

/// Pooling of the pyramid bins ("AVE" / "MAX" in the paper's table 1).
enum class PyramidPooling {
  kAvg,
  kMax,
};

/// Parses "avg" (alias "ave", "average") or "max". Throws c10::Error for anything else.
PyramidPooling pyramid_pooling_from_string(const std::string& name);
/// "avg" or "max".
std::string to_string(PyramidPooling pooling);

/// Options of `PSPNet`.
///
/// ```
/// ostrov::models::PSPNet net(ostrov::models::PSPNetOptions(21).backbone_depth(50));
/// net->load_backbone_weights("resnet50.pth");   // torch.save(resnet50(...).state_dict(), ...)
/// ```
struct PSPNetOptions {
  /// `num_classes` outputs; the other options at their defaults (ResNet-18, stride 8).
  explicit PSPNetOptions(int64_t num_classes) : num_classes_(num_classes) {}

  /// K, output channels (classes including background).
  TORCH_ARG(int64_t, num_classes);
  /// ResNet depth of the backbone: 18 or 34 (BasicBlock; 18 is the default, affordable on a
  /// CPU) or 50, 101, 152 (Bottleneck; the paper uses 50 and 101).
  TORCH_ARG(int64_t, backbone_depth) = 18;
  /// The ResNet's stem and layer1 width (64 = torchvision's, what pretrained weights need).
  TORCH_ARG(int64_t, backbone_channels) = 64;
  /// 8 (the paper's: layer3 and layer4 dilated) or 16 (layer4 only; a quarter of the
  /// multiply-adds of the head and of layer4).
  TORCH_ARG(int64_t, output_stride) = 8;
  /// Output sides of the pyramid's adaptive poolings ({1} is the paper's "B1", the default
  /// {1, 2, 3, 6} its "B1236").
  TORCH_ARG(std::vector<int64_t>, bins) = std::vector<int64_t>{1, 2, 3, 6};
  /// Average or max pooling of the bins.
  TORCH_ARG(PyramidPooling, pooling) = PyramidPooling::kAvg;
  /// Each bin's 1x1 conv reduces the C channels of layer4 to C / bins.size() (the paper's
  /// "DR"); false keeps C channels per bin.
  TORCH_ARG(bool, reduce_dimension) = true;
  /// Channels of the 3x3 conv after the concatenation (512 in the paper).
  TORCH_ARG(int64_t, head_channels) = 512;
  /// Dropout2d probability before both classifiers (0.1 in the paper's code).
  TORCH_ARG(double, dropout) = 0.1;
  /// Adds the auxiliary head on layer3 (3x3 conv-BN-ReLU to aux_channels, dropout, 1x1).
  TORCH_ARG(bool, aux) = true;
  /// Channels of the auxiliary head's 3x3 conv (256 in the paper's code).
  TORCH_ARG(int64_t, aux_channels) = 256;
  /// Weight of the auxiliary loss (0.4 in the paper), reported by forward_with_aux.
  TORCH_ARG(double, aux_weight) = 0.4;
  /// How the input is extended to the "8k + 1" size (see PSPNetImpl).
  TORCH_ARG(InputPadding, input_padding) = InputPadding::kReflect;

 public:
  /// Sets the pooling from its name, see pyramid_pooling_from_string().
  PSPNetOptions& pooling(const std::string& name) {
    pooling_ = pyramid_pooling_from_string(name);
    return *this;
  }
  /// Sets the input padding from its name: "reflect" or "zero".
  PSPNetOptions& input_padding(const std::string& name) {
    input_padding_ = input_padding_from_string(name);
    return *this;
  }
};

/// PSPNet. Children and their state_dict keys:
///   backbone        ostrov::models::ResNet with torchvision's names ("backbone.conv1.weight",
///                   "backbone.layer1.0.conv1.weight", ...; its unused `fc` is removed).
///                   layer3 and layer4 keep stride 1 with dilation 2 and 4: for depth >= 50
///                   through ResNetOptions::replace_stride_with_dilation({false, true, true})
///                   (torchvision's exact network); for 18/34, whose BasicBlock torchvision
///                   does not dilate, by the same rewrite applied to the built convolutions
///                   (stride 2 -> 1, the first 3x3 conv of the layer dilated by half the
///                   layer's dilation, the others by all of it, as DeepLab / the CSAIL code).
///   pyramid.b       ConvBnAct 1x1, C -> C / bins (or C), after the pooling of bin b
///   bottleneck      ConvBnAct 3x3, C + sum of the bins' channels -> head_channels
///   dropout         Dropout2d
///   classifier      Conv2d 1x1, head_channels -> K
///   aux_conv        (aux) ConvBnAct 3x3, layer3's channels -> aux_channels
///   aux_classifier  (aux) Conv2d 1x1, aux_channels -> K
/// C is layer4's channels: 512 for depth 18/34, 2048 for 50+.
///
/// Any H x W: the input is padded (InputPadding, image centred) to the next size 8k + 1 (at
/// least 9), for which the stride-8 feature map has k + 1 units whose centres fall exactly on
/// input pixels 0, 8, ..., 8k; bilinear up-sampling with align_corners = true to 8k + 1 then
/// maps every unit back onto its pixel (DeepLab's convention), and the logits are cropped.
class PSPNetImpl : public torch::nn::Cloneable<PSPNetImpl>, public SegmentationNetwork {
 public:
  /// Builds the network. c10::Error for num_classes, head_channels or aux_channels < 1, empty
  /// or < 1 bins, dropout outside [0, 1), a negative aux_weight, an output stride other than
  /// 8 or 16, more bins than layer4 has channels (reduce_dimension), or an unsupported depth.
  explicit PSPNetImpl(PSPNetOptions options);

  void reset() override;

  /// x: `[N, 3, H, W]` float (ImageNet-normalised RGB for torchvision weights), any H, W >= 1
  /// -> main logits `[N, num_classes, H, W]`. In training mode the pyramid's 1x1 bin needs a
  /// batch of N >= 2 for its batch norm.
  at::Tensor forward(const at::Tensor& x) override;

  /// Main and auxiliary logits, both `[N, num_classes, H, W]`, and `aux_weight`; aux is
  /// undefined (weight 0) when the options disable it.
  SegmentationOutput forward_with_aux(const at::Tensor& x) override;

  /// Loads a torchvision ResNet state_dict file of the same depth
  /// (`torch.save(resnet50(weights=...).state_dict(), path)`) into `backbone`; its `fc.*`
  /// entries are ignored. Throws ostrov::IoError naming the path and every missing, unexpected
  /// or wrong-shape key.
  void load_backbone_weights(const std::string& path);
  /// As above from a state dict in memory; `source` names it in errors.
  void load_backbone_weights(const io::StateDict& state, const std::string& source = "state dict");

  int64_t num_classes() const override { return options.num_classes(); }
  int64_t in_channels() const override { return 3; }

  void pretty_print(std::ostream& stream) const override;

  /// A deep copy (rebuilt from the options, then every parameter and buffer copied, moved to
  /// `device` if given), so that the backbone's removed `fc` and the dilation of ResNet-18/34
  /// survive cloning (data-parallel replicas).
  std::shared_ptr<torch::nn::Module> clone(
      const c10::optional<torch::Device>& device = c10::nullopt) const override;

  /// The options it was built with; reset() rebuilds from them.
  PSPNetOptions options;
  /// The dilated ResNet without `fc` (keys "backbone.*").
  ResNet backbone{nullptr};
  /// One 1x1 ConvBnAct per bin, applied after that bin's pooling (keys "pyramid.b.*").
  torch::nn::ModuleList pyramid{nullptr};
  /// 3x3 ConvBnAct on layer4 concatenated with the up-sampled bins -> head_channels.
  nn::ConvBnAct bottleneck{nullptr};
  /// Dropout2d (options.dropout) before `classifier` and `aux_classifier`.
  torch::nn::Dropout2d dropout{nullptr};
  /// 1x1 conv, head_channels -> K: the main logits at the output stride.
  torch::nn::Conv2d classifier{nullptr};
  /// (aux) 3x3 ConvBnAct on layer3 -> aux_channels; null without aux.
  nn::ConvBnAct aux_conv{nullptr};
  /// (aux) 1x1 conv, aux_channels -> K: the auxiliary logits; null without aux.
  torch::nn::Conv2d aux_classifier{nullptr};

 private:
  SegmentationOutput run(const at::Tensor& x, bool with_aux);
};

/// `ostrov::models::PSPNet(PSPNetOptions(num_classes).backbone_depth(50))`.
TORCH_MODULE(PSPNet);

}  // namespace ostrov::models
