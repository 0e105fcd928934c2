#pragma once
// Fully convolutional networks (FCN-32s, FCN-16s, FCN-8s) over torchvision's AlexNet.
//
// Paper: Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation",
// CVPR 2015, arXiv:1411.4038 (section 3.1 "convolutionalization", 4.2 skip architecture; the
// paper's AlexNet FCN-32s row of table 1).
//
// Convolutionalisation: AlexNet's fc6 (9216 -> 4096, over pool5's 256 x 6 x 6) becomes a 6x6
// convolution 256 -> 4096 and fc7 a 1x1 convolution 4096 -> 4096, with the same weights
// reshaped (see alexnet_to_fcn_state_dict), so on a 224x224 image the FCN's fc7 map is 1x1 and
// equals the classifier's activations; on larger images it slides the classifier over the
// image with stride 32.

#include <cstdint>
#include <ostream>
#include <string>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/segmentation/network.h"
#include "ostrov/models/segmentation/padding.h"
#include "ostrov/nn/upsample.h"

namespace ostrov::models {

/// Output stride of the coarsest prediction fused into the FCN's output.
enum class FCNVariant {
  /// The fc7 scores up-sampled 32x at once.
  k32s,
  /// fc7 scores up-sampled 2x, summed with the scores of a stride-16 stage, up-sampled 16x.
  k16s,
  /// As 16s, up-sampled 2x again, summed with the scores of a stride-8 stage, up-sampled 8x.
  k8s,
};

/// Parses "32s", "16s" or "8s" (also "fcn32s", ...). Throws c10::Error for anything else.
FCNVariant fcn_variant_from_string(const std::string& name);
/// "32s", "16s" or "8s".
std::string to_string(FCNVariant variant);

/// Options of `FCN`.
///
/// ```
/// ostrov::models::FCN net(ostrov::models::FCNOptions(21).variant("8s"));
/// net->load_torchvision_alexnet("alexnet.pth");   // torch.save(alexnet().state_dict(), ...)
/// ```
struct FCNOptions {
  /// `num_classes` outputs; the other options at their defaults (8s, fc_channels 4096).
  explicit FCNOptions(int64_t num_classes) : num_classes_(num_classes) {}

  /// K, output channels (classes including background).
  TORCH_ARG(int64_t, num_classes);
  /// Skip architecture.
  TORCH_ARG(FCNVariant, variant) = FCNVariant::k8s;
  /// Channels of fc6 and fc7. 4096 as AlexNet (needed to load its classifier weights); smaller
  /// values give a light FCN trained from the backbone alone.
  TORCH_ARG(int64_t, fc_channels) = 4096;
  /// Drop probability after fc6 and after fc7 (element-wise, as AlexNet's classifier).
  TORCH_ARG(double, dropout) = 0.5;
  /// AlexNet stage (see AlexNetImpl) whose class scores 16s and 8s add at stride 16. The
  /// default "pool2" is the analogue of VGG-FCN's pool4: the pooling that brings the stride to
  /// 16, followed by further convolutions (conv3..conv5) before pool5. "relu3", "relu4" and
  /// "relu5" also have stride 16.
  TORCH_ARG(std::string, skip16_stage) = "pool2";
  /// AlexNet stage whose class scores 8s adds at stride 8. The default "pool1" is the analogue
  /// of VGG-FCN's pool3 (the pooling that brings the stride to 8, followed by conv2); "relu2"
  /// also has stride 8.
  TORCH_ARG(std::string, skip8_stage) = "pool1";
  /// How the margin around the image is filled (see FCNImpl).
  TORCH_ARG(InputPadding, input_padding) = InputPadding::kReflect;

 public:
  /// Sets the variant from its name, see fcn_variant_from_string().
  FCNOptions& variant(const std::string& name) {
    variant_ = fcn_variant_from_string(name);
    return *this;
  }
  /// Sets the input padding from its name: "reflect" or "zero".
  FCNOptions& input_padding(const std::string& name) {
    input_padding_ = input_padding_from_string(name);
    return *this;
  }
};

/// FCN over AlexNet. Children and their state_dict keys:
///   features        AlexNet's `features` Sequential, layer for layer as ostrov::models::AlexNet
///                   (see AlexNetImpl), so the keys are torchvision's:
///                   features.{0,3,6,8,10}.{weight,bias}
///   fc6             Conv2d 6x6, 256 -> fc_channels (valid), then ReLU and `drop6`
///   fc7             Conv2d 1x1, fc_channels -> fc_channels, then ReLU and `drop7`
///   score_fr        Conv2d 1x1, fc_channels -> K (PyTorch's default initialisation)
///   score_skip16    16s/8s: Conv2d 1x1 on skip16_stage -> K, zero-initialised (so an untrained
///                   16s starts as the 32s, as in the paper)
///   score_skip8     8s: Conv2d 1x1 on skip8_stage -> K, zero-initialised
///   upscore2        16s/8s: TransposedUpsample x2 (kernel 3) of the stride-32 scores
///   upscore_skip16  8s: TransposedUpsample x2 (kernel 3) of the fused stride-16 scores
///   upscore         TransposedUpsample xF to the image (F = 32, 16 or 8; kernel 2F-1)
/// Every up-sampling is a learnable transposed convolution initialised to bilinear
/// interpolation (ostrov::nn::bilinear_kernel). Odd kernels (2f-1) make coarse unit i land
/// exactly on fine pixel f*i + f/2 - 1, so all fusions and the final crop are at integer
/// offsets (the even kernels 2f would leave a half-unit shift, 8 pixels at stride 16).
///
/// Any H x W (the paper pads conv1 by 100 so that small images still give fc6 a 6x6 support
/// and crops the output; here the input is padded instead, with the arithmetic explicit):
/// score unit i (the output of fc6) is centred on padded-input pixel 111 + 32 i (receptive
/// field 355, ostrov::nn::receptive_fields). The image is therefore padded by 111 pixels on the
/// top and left (`input_margin()`) so its first pixel is the centre of the first score unit,
/// and on the bottom/right until the score map's last unit centre reaches past the last
/// pixel; the output is cropped to H x W at integer offsets. The skip stages' maps are cropped
/// at the offsets that align their unit centres with the up-sampled scores before the sum.
class FCNImpl : public torch::nn::Cloneable<FCNImpl>, public SegmentationNetwork {
 public:
  /// Builds the network. c10::Error for num_classes or fc_channels < 1, dropout outside
  /// [0, 1), or a skip stage that AlexNet lacks or that has the wrong stride.
  explicit FCNImpl(FCNOptions options);

  void reset() override;

  /// x: `[N, 3, H, W]` float (ImageNet-normalised RGB for AlexNet weights), any H, W >= 1
  /// -> logits `[N, num_classes, H, W]`.
  at::Tensor forward(const at::Tensor& x) override;

  /// The convolutionalised classifier on x as given (no padding, no scores):
  /// drop7(relu(fc7(drop6(relu(fc6(features(x))))))) -> `[N, fc_channels, h, w]`, one unit
  /// per 32 pixels (1 x 1 for a 224 x 224 image, where it equals torchvision AlexNet's
  /// `classifier[:6]` output in eval mode). Needs H, W >= 223 (a pool5 map of at least 6 x 6).
  at::Tensor forward_fc7(const at::Tensor& x);

  /// Loads a torchvision AlexNet state_dict file (`torch.save(alexnet.state_dict(), path)`):
  /// features.* unchanged, classifier.1 -> fc6 and classifier.4 -> fc7 reshaped
  /// (alexnet_to_fcn_state_dict); classifier.6 (the ImageNet scores) is not used. Needs
  /// fc_channels == 4096. Throws ostrov::IoError naming the path and every missing or
  /// wrong-shape key.
  void load_torchvision_alexnet(const std::string& path);
  /// As above from a state dict in memory; `source` names it in errors.
  void load_torchvision_alexnet(const io::StateDict& state,
                                const std::string& source = "state dict");

  /// Padding added on the top and on the left of the image (111).
  int64_t input_margin() const { return margin_; }

  /// Side of the padded input `forward` builds for an image side (height or width): the
  /// smallest `input_margin() + side + b` whose score map has `1 + ceil((side - 1) / 32)`
  /// units, so that the last pixel lies within the score grid.
  int64_t padded_side(int64_t side) const;

  int64_t num_classes() const override { return options.num_classes(); }
  int64_t in_channels() const override { return 3; }

  void pretty_print(std::ostream& stream) const override;

  /// The options it was built with; reset() rebuilds from them.
  FCNOptions options;
  /// AlexNet's convolutional trunk, conv1 .. pool5 (stride 32, 256 channels).
  torch::nn::Sequential features{nullptr};
  /// 6x6 valid conv on pool5, 256 -> fc_channels (AlexNet's classifier.1 reshaped).
  torch::nn::Conv2d fc6{nullptr};
  /// Element-wise dropout (options.dropout) after fc6's ReLU.
  torch::nn::Dropout drop6{nullptr};
  /// 1x1 conv, fc_channels -> fc_channels (AlexNet's classifier.4 reshaped).
  torch::nn::Conv2d fc7{nullptr};
  /// Element-wise dropout (options.dropout) after fc7's ReLU.
  torch::nn::Dropout drop7{nullptr};
  /// 1x1 conv, fc_channels -> K: the stride-32 class scores.
  torch::nn::Conv2d score_fr{nullptr};
  /// 16s/8s: scores of skip16_stage (zero-initialised 1x1 conv); null for 32s.
  torch::nn::Conv2d score_skip16{nullptr};
  /// 8s: scores of skip8_stage (zero-initialised 1x1 conv); null otherwise.
  torch::nn::Conv2d score_skip8{nullptr};
  /// 16s/8s: x2 up-sampling of the stride-32 scores; null for 32s.
  nn::TransposedUpsample upscore2{nullptr};
  /// 8s: x2 up-sampling of the fused stride-16 scores; null otherwise.
  nn::TransposedUpsample upscore_skip16{nullptr};
  /// The final xF up-sampling (F = 32, 16 or 8) of the fused scores to input resolution.
  nn::TransposedUpsample upscore{nullptr};

 private:
  /// Where a tapped stage's units lie: unit i is centred on padded-input pixel
  /// start + jump * i.
  struct Tap {
    int64_t index = -1;  ///< output of features[index]
    int64_t start = 0;
    int64_t jump = 1;
  };
  at::Tensor run_features(const at::Tensor& x, at::Tensor* skip16, at::Tensor* skip8);
  int64_t margin_ = 0;
  int64_t score_start_ = 0;  ///< centre of score unit 0 in padded-input pixels (111)
  Tap skip16_;
  Tap skip8_;
};

/// `ostrov::models::FCN(FCNOptions(num_classes).variant("8s"))`.
TORCH_MODULE(FCN);

/// Converts a torchvision AlexNet state_dict to the FCN's names and shapes: `features.*`
/// unchanged; `classifier.1.weight` [4096, 9216] -> `fc6.weight` [4096, 256, 6, 6] (the
/// flatten order of torchvision's forward, c*36 + y*6 + x, is the conv weight's memory
/// order); `classifier.4.weight` [4096, 4096] -> `fc7.weight` [4096, 4096, 1, 1]; the biases
/// renamed; `classifier.6.*` dropped. Throws ostrov::IoError naming `source` and the key when
/// a classifier tensor is missing or has another shape.
io::StateDict alexnet_to_fcn_state_dict(const io::StateDict& alexnet,
                                        const std::string& source = "state dict");

}  // namespace ostrov::models
