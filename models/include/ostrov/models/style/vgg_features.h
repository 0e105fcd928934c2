#pragma once
// VGG feature extractor for neural style transfer: torchvision's `vgg19().features` (or vgg16,
// 11, 13) under torchvision's own parameter names (`features.N.weight`, `features.N.bias`), so
// the file Python's `torch.save(torchvision.models.vgg19(weights="DEFAULT").state_dict(), p)`
// writes loads unchanged (the classifier's keys are skipped), returning chosen layers by their
// conventional names in one pass.
//
// Papers: Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
// Recognition", ICLR 2015; Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional
// Neural Networks", CVPR 2016 (average pooling, layer names).

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>
#include <torch/ordered_dict.h>

namespace ostrov::models {

/// Options of `VGGFeatures`.
struct VGGFeaturesOptions {
  VGGFeaturesOptions() = default;
  // NOLINTNEXTLINE(google-explicit-constructor): VGGFeatures(16) reads like VGG(16)
  /// The defaults with VGG depth `depth`.
  /* implicit */ VGGFeaturesOptions(int64_t depth) : depth_(depth) {}

  /// VGG depth: 11, 13, 16 or 19 (torchvision's configs A, B, D, E, without batch norm).
  TORCH_ARG(int64_t, depth) = 19;
  /// "max" (torchvision's MaxPool2d(2,2)) or "avg" (AvgPool2d(2,2) in its place, as Gatys et
  /// al. 2016 recommend for better gradient flow; the weights are the same).
  TORCH_ARG(std::string, pooling) = "max";
  /// Apply ImageNet normalisation ((x - mean) / std, torchvision's statistics) inside forward,
  /// so inputs are plain RGB in [0,1].
  TORCH_ARG(bool, normalize) = true;
  /// Keep the conv weights and run the layers in channels_last memory format (1.8x faster
  /// forward+backward on CPU here for VGG19 at 256 px); outputs have the same values.
  TORCH_ARG(bool, channels_last) = true;
};

/// Frozen VGG convolutional trunk. Child `features` is a Sequential indexed exactly as
/// torchvision's (vgg19: 0 conv1_1, 1 relu1_1, 2 conv1_2, 3 relu1_2, 4 pool1, 5 conv2_1, ...,
/// 34 conv5_4, 35 relu5_4, 36 pool5); its ReLUs are not in-place, so a conv layer's output is
/// the value before its ReLU. All parameters have requires_grad false (gradients flow to the
/// input only) and the module starts in eval mode.
///
/// Layer names (B = block 1..5 with 64, 128, 256, 512, 512 channels, I = conv in block):
///   convB_I  output of the I-th conv of block B (before ReLU), stride 2^(B-1)
///   reluB_I  the same after ReLU
///   poolB    output of block B's pooling, stride 2^B
class VGGFeaturesImpl : public torch::nn::Cloneable<VGGFeaturesImpl> {
 public:
  /// Builds the trunk with torchvision's random initialisation (see load_weights), frozen, in
  /// eval mode. Throws c10::Error for a depth other than 11/13/16/19 or an unknown pooling.
  explicit VGGFeaturesImpl(VGGFeaturesOptions options = {});

  void reset() override;

  /// x: [N,3,H,W] float RGB in [0,1] (already ImageNet-normalised when options.normalize is
  /// false), H,W >= 1 (pooling floors odd sizes as torchvision's) -> the layers in `names`,
  /// each [N,C,h,w], in network order. The network runs only up to the deepest requested
  /// layer. Throws c10::Error for an unknown name (the message lists the known ones).
  torch::OrderedDict<std::string, at::Tensor> forward(const at::Tensor& x,
                                                      const std::vector<std::string>& names);

  /// Every layer name, in network order (conv1_1, relu1_1, conv1_2, ..., pool5).
  std::vector<std::string> layer_names() const;
  /// Index in `features` whose output the layer is (vgg19: conv4_2 -> 21, pool5 -> 36).
  int64_t layer_index(const std::string& name) const;
  /// Channels of the layer's output.
  int64_t layer_channels(const std::string& name) const;

  /// Loads a torchvision VGG state_dict file (the whole classifier's, e.g. vgg19.pth, or one
  /// with only the `features.*` keys). Keys outside `features.` are ignored; every
  /// `features.*` parameter must be present with the right shape, otherwise ostrov::IoError
  /// names the path and lists every missing, unexpected and wrong-shape key (e.g. a vgg16 or
  /// resnet file given to vgg19).
  void load_weights(const std::string& path);

  void pretty_print(std::ostream& stream) const override;

  /// The options it was built with; reset() rebuilds from them.
  VGGFeaturesOptions options;
  /// The trunk: convs, ReLUs and poolings at torchvision's indices (keys `features.N.weight`).
  torch::nn::Sequential features{nullptr};

 private:
  struct Layer {
    std::string name;
    size_t index;
    int64_t channels;
  };
  const Layer& layer(const std::string& name) const;
  std::vector<Layer> layers_;
};

/// `ostrov::models::VGGFeatures(VGGFeaturesOptions(19).pooling("avg"))`.
TORCH_MODULE(VGGFeatures);

}  // namespace ostrov::models
