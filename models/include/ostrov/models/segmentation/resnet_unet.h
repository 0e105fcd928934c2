#pragma once
// U-Net with a torchvision ResNet as its encoder (what segmentation_models_pytorch calls
// `Unet(encoder_name="resnet18")`): the encoder's five resolutions (stride 2 after the stem's
// convolution, 4, 8, 16, 32) are the skips, and a decoder of five blocks — up-sample x2,
// concatenate the skip of that resolution, two 3x3 ConvBnAct — returns to the input size.
//
// The encoder keeps torchvision's names, so an ImageNet checkpoint — or a `classification`
// run of ostrov exported with `ostrov export` — initialises it (`load_encoder_weights`,
// config key `model.backbone_weights`). That is the reason to prefer it over the paper's
// U-Net when pretrained weights exist: the ResNet reaches stride 4 in its stem, so it is also
// cheaper per pixel than the plain U-Net of similar depth.

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <c10/util/Optional.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/resnet.h"
#include "ostrov/models/segmentation/network.h"
#include "ostrov/models/segmentation/padding.h"

namespace ostrov::models {

/// Options of `ResNetUNet`.
///
/// ```
/// ostrov::models::ResNetUNet net(ostrov::models::ResNetUNetOptions(11).encoder_depth(18));
/// net->load_encoder_weights("resnet18.pth");  // torch.save(resnet18(...).state_dict(), ...)
/// ```
struct ResNetUNetOptions {
  /// `num_classes` outputs; the other options at their defaults (ResNet-18 encoder).
  explicit ResNetUNetOptions(int64_t num_classes) : num_classes_(num_classes) {}

  /// K, output channels (classes including background).
  TORCH_ARG(int64_t, num_classes);
  /// ResNet depth of the encoder: 18, 34, 50, 101 or 152.
  TORCH_ARG(int64_t, encoder_depth) = 18;
  /// The encoder's `ResNetOptions::base_channels` (torchvision: 64; 32 for a half-width
  /// network trained on a CPU, e.g. from an ostrov classifier with that width).
  TORCH_ARG(int64_t, encoder_channels) = 64;
  /// Output channels of the five decoder blocks, deepest first. Empty: {4B, 2B, B, B/2, B/4}
  /// (each at least 1) for B = encoder_channels, i.e. segmentation_models_pytorch's
  /// {256, 128, 64, 32, 16} at torchvision's width.
  TORCH_ARG(std::vector<int64_t>, decoder_channels) = {};
  /// How the input is extended to a multiple of 32 (see ResNetUNetImpl).
  TORCH_ARG(InputPadding, input_padding) = InputPadding::kReflect;

 public:
  /// Sets the input padding from its name: "reflect" or "zero".
  ResNetUNetOptions& input_padding(const std::string& name) {
    input_padding_ = input_padding_from_string(name);
    return *this;
  }
  /// decoder_channels, or the default derived from encoder_channels when it is empty.
  std::vector<int64_t> effective_decoder_channels() const;
};

/// U-Net over a ResNet encoder. Children and their state_dict keys:
///   encoder      ostrov::models::ResNet with torchvision's names ("encoder.conv1.weight",
///                "encoder.layer1.0.conv1.weight", ...; its unused `fc` is removed)
///   decoder.i    Sequential of two ConvBnAct 3x3 (i = 0..4, deepest first): block i
///                up-samples its input x2 (nearest, as segmentation_models_pytorch),
///                concatenates the encoder map of that stride (layer3, layer2, layer1, the
///                stem's ReLU output; none for the last block) and maps it to
///                decoder_channels[i]
///   head         Conv2d 1x1, decoder_channels[4] -> num_classes
/// e.g. "decoder.0.0.conv.weight", "head.bias".
///
/// Any H x W: the input is padded (InputPadding, image centred) to a multiple of 32 and the
/// logits are cropped back.
class ResNetUNetImpl : public torch::nn::Cloneable<ResNetUNetImpl>, public SegmentationNetwork {
 public:
  /// Builds the network. c10::Error for num_classes or encoder_channels < 1, decoder channels
  /// that are not five values >= 1, or an unsupported encoder depth.
  explicit ResNetUNetImpl(ResNetUNetOptions options);

  void reset() override;

  /// x: `[N, 3, H, W]` float (normalised as the encoder's weights expect), any H, W >= 1
  /// -> logits `[N, num_classes, H, W]`.
  at::Tensor forward(const at::Tensor& x) override;

  /// Loads a torchvision ResNet state_dict file of the same depth and width
  /// (`torch.save(resnet18(weights=...).state_dict(), path)`, or `ostrov export` of a
  /// classification run) into `encoder`; its `fc.*` entries are ignored. Throws
  /// ostrov::IoError naming the path and every missing, unexpected or wrong-shape key.
  void load_encoder_weights(const std::string& path);
  /// As above from a state dict in memory; `source` names it in errors.
  void load_encoder_weights(const io::StateDict& state, const std::string& source = "state dict");

  int64_t num_classes() const override { return options.num_classes(); }
  int64_t in_channels() const override { return 3; }

  void pretty_print(std::ostream& stream) const override;

  /// A deep copy (rebuilt from the options, then every parameter and buffer copied, moved to
  /// `device` if given), so that the encoder's removed `fc` stays removed in data-parallel
  /// replicas.
  std::shared_ptr<torch::nn::Module> clone(
      const c10::optional<torch::Device>& device = c10::nullopt) const override;

  /// The options it was built with; reset() rebuilds from them.
  ResNetUNetOptions options;
  /// The ResNet without `fc`: stem (stride 2, 4 after its max-pool), layer1..layer4 (4 to 32).
  ResNet encoder{nullptr};
  /// The five decoder blocks, deepest first (see above).
  torch::nn::ModuleList decoder{nullptr};
  /// 1x1 conv, last decoder channels -> num_classes, at input resolution.
  torch::nn::Conv2d head{nullptr};
};

/// `ostrov::models::ResNetUNet(ResNetUNetOptions(num_classes))`.
TORCH_MODULE(ResNetUNet);

}  // namespace ostrov::models
