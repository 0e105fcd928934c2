#pragma once
// U-Net for touching objects (Ronneberger, Fischer, Brox, MICCAI 2015): a U-Net segments each
// pixel as background, cell or border (the border = the object pixels next to another label,
// losses::unet_three_class_target) under the weighted cross-entropy whose weight map
// w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / 2 sigma^2) makes the thin gaps between touching
// objects expensive (losses::WeightedCrossEntropy). Objects are the connected components of the
// cell class, each grown back over the border pixels next to it. With target "foreground" the
// same network learns background / object only, the plain baseline whose touching objects
// merge.
//
// ```
// ostrov::models::UNetBorder net(ostrov::models::UNetBorderOptions().border_width(2));
// auto logits = net->forward(images);                        // [N, 3, H, W]
// auto target = ostrov::losses::unet_three_class_target(instance_maps, 2);
// auto objects = ostrov::models::unet_border_instances(logits[0], net->options);
// ```

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/models/instance/network.h"
#include "ostrov/models/segmentation/unet.h"

namespace ostrov::models {

/// What UNetBorder learns per pixel.
enum class UNetBorderTarget {
  kThreeClass,  ///< background 0, cell interior 1, border 2 (config "three_class")
  kForeground,  ///< background 0, object 1 (config "foreground")
};

/// Options of UNetBorder.
struct UNetBorderOptions {
  /// The classes learned; three_class separates touching objects by their border class.
  TORCH_ARG(UNetBorderTarget, target) = UNetBorderTarget::kThreeClass;
  /// Border width b in pixels: the target's border is the object pixels with another label
  /// within b pixels; at inference each object grows back over border pixels up to b steps.
  TORCH_ARG(int64_t, border_width) = 2;
  /// Objects with fewer pixels (after growing) are dropped.
  TORCH_ARG(int64_t, min_size) = 20;
  /// The U-Net (its num_classes is replaced by 3 or 2).
  TORCH_ARG(UNetOptions, unet) = UNetOptions(3).depth(4).base_width(16);
};

/// The network: a U-Net with 3 (three_class) or 2 (foreground) outputs. Children: `unet`
/// (UNet's own names).
class UNetBorderImpl : public torch::nn::Cloneable<UNetBorderImpl>, public InstanceNetwork {
 public:
  /// Builds the U-Net; c10::Error when border_width or min_size is < 1.
  explicit UNetBorderImpl(UNetBorderOptions options = {});
  void reset() override;
  /// x [N,C,H,W] -> logits [N, 3 or 2, H, W] (no softmax), any H, W.
  at::Tensor forward(const at::Tensor& x);
  /// unet_border_instances of every image of forward(x).
  std::vector<InstancePrediction> predict(const at::Tensor& x) override;
  /// The number of classes the U-Net predicts: 3 (three_class) or 2 (foreground).
  int64_t num_outputs() const;

  /// The options it was built with; reset() rebuilds from them.
  UNetBorderOptions options;
  /// The U-Net (keys "unet.*").
  UNet unet{nullptr};
};
TORCH_MODULE(UNetBorder);

/// The objects of one image's logits [3,H,W] (three_class) or [2,H,W] (foreground):
/// per-pixel argmax; the 4-connected components of class 1 (cell or object) are the seeds (4,
/// so that a one-pixel diagonal border separates); with three classes, each seed then grows
/// options.border_width() times into 4-adjacent pixels of class 2 not yet taken (in one step a
/// pixel joins the first of its neighbours above, left, right, below that holds a seed's
/// label). Objects with fewer than min_size pixels are dropped; each is scored by its mean
/// probability of not being background. Order: the seeds' row-major order.
InstancePrediction unet_border_instances(const at::Tensor& logits,
                                         const UNetBorderOptions& options = {});

}  // namespace ostrov::models
