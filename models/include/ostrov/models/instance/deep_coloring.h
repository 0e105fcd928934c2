#pragma once
// DeepColoring (Kulikov, Yurchenko, Lempitsky, "Instance Segmentation by Deep Coloring",
// arXiv:1807.10007): a segmentation network predicts 1 + K maps, map 0 the background and
// maps 1..K "colours"; training (losses::HaloLoss) makes every object one colour and its
// neighbours within a halo other colours, so at inference each connected component of a
// colour's argmax region is one object.
//
// ```
// ostrov::models::DeepColoring net(ostrov::models::DeepColoringOptions().num_colors(8));
// auto logits = net->forward(images);                     // [N, 9, H, W]
// loss = ostrov::losses::functional::halo_loss(logits, instance_maps, halo_options);
// auto objects = ostrov::models::deep_coloring_instances(logits[0], 20);  // masks + scores
// ```

#include <cstdint>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/models/instance/network.h"
#include "ostrov/models/segmentation/unet.h"

namespace ostrov::models {

/// Options of DeepColoring: the colours and the U-Net under them.
struct DeepColoringOptions {
  /// K, the colour maps besides background (the paper uses 8 for CVPPP leaves).
  TORCH_ARG(int64_t, num_colors) = 8;
  /// The U-Net (its num_classes is replaced by 1 + num_colors).
  TORCH_ARG(UNetOptions, unet) = UNetOptions(9).depth(4).base_width(16);
  /// Components smaller than this many pixels are dropped at inference (fragments).
  TORCH_ARG(int64_t, min_size) = 20;
};

/// The network: a U-Net with 1 + num_colors outputs. Children: `unet` (UNet's own names).
class DeepColoringImpl : public torch::nn::Cloneable<DeepColoringImpl>, public InstanceNetwork {
 public:
  /// Builds the U-Net; c10::Error when num_colors or min_size is < 1.
  explicit DeepColoringImpl(DeepColoringOptions options = {});
  void reset() override;
  /// x [N,C,H,W] -> logits [N, 1 + num_colors, H, W] (no softmax), any H, W.
  at::Tensor forward(const at::Tensor& x);
  /// deep_coloring_instances of every image of forward(x), with options.min_size.
  std::vector<InstancePrediction> predict(const at::Tensor& x) override;

  /// The options it was built with; reset() rebuilds from them.
  DeepColoringOptions options;
  /// The U-Net with 1 + num_colors outputs (keys "unet.*").
  UNet unet{nullptr};
};
TORCH_MODULE(DeepColoring);

/// DeepColoring's inference on one image: logits [1+K,H,W] -> per-pixel argmax; for each
/// colour c >= 1, the 8-connected components of its region (ops::connected_components) with at
/// least `min_size` pixels, each an instance scored by the mean softmax probability of c over
/// it. Instances are ordered by colour, then by component (row-major first pixel).
InstancePrediction deep_coloring_instances(const at::Tensor& logits, int64_t min_size = 20);

/// [K,H,W] masks -> [H,W] int64 label image (0 background, mask k -> k + 1; later masks win
/// where they overlap), the form SBD and |DiC| take.
at::Tensor masks_to_label_image(const at::Tensor& masks, int64_t height, int64_t width);

}  // namespace ostrov::models
