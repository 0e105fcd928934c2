#pragma once
// Deep Watershed Transform (Bai & Urtasun, "Deep Watershed Transform for Instance
// Segmentation", CVPR 2017, arXiv:1611.08303): a network predicts, for every pixel, the unit
// direction in which the distance to its object's boundary grows (the direction head) and that
// distance quantised into energy levels, level 0 = background (the energy head, which in the
// paper reads the direction field: `direction_to_energy`). Objects are the basins of the energy:
// cutting it at a level leaves one seed per object even where objects touch, and each seed is
// grown back down the energy to its object's boundary.
//
// ```
// ostrov::models::DeepWatershed net(ostrov::models::DeepWatershedOptions().num_levels(16));
// auto out = net->forward(images);                 // out.direction [N,2,H,W], out.energy [N,16,H,W]
// auto t = ostrov::losses::watershed_targets(instance_maps, {});   // targets from masks
// auto objects = ostrov::models::watershed_instances(out.energy[0], {});  // masks + scores
// ```

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include "ostrov/models/instance/deep_coloring.h"
#include "ostrov/models/segmentation/unet.h"

namespace ostrov::models {

/// How energy maps become instances (watershed_instances).
struct WatershedExtractOptions {
  /// Seeds are the connected regions of pixels whose predicted level is >= cut_level (>= 1).
  /// Two objects stay apart when the energy between them stays below it.
  TORCH_ARG(int64_t, cut_level) = 3;
  /// Instances with fewer pixels are dropped.
  TORCH_ARG(int64_t, min_size) = 20;
};

/// Options of DeepWatershed.
struct DeepWatershedOptions {
  /// K, energy levels including the background level 0 (the paper: 16).
  TORCH_ARG(int64_t, num_levels) = 16;
  /// Pixels of distance to the boundary per level (the targets' WatershedTargetOptions::step).
  TORCH_ARG(double, level_step) = 1.0;
  /// The shared U-Net trunk; its num_classes is replaced by base_width (the feature channels
  /// the two heads read).
  TORCH_ARG(UNetOptions, unet) = UNetOptions(16).depth(4).base_width(16);
  /// true: the energy head also reads the normalised predicted direction field, as the paper's
  /// watershed-transform network does; false: both heads read only the trunk's features.
  TORCH_ARG(bool, direction_to_energy) = true;
  /// Instance extraction at predict().
  TORCH_ARG(WatershedExtractOptions, extract) = {};
};

/// Both heads' outputs.
struct WatershedOutput {
  at::Tensor direction;  ///< [N,2,H,W] (x, y), not normalised
  at::Tensor energy;     ///< [N,K,H,W] level logits (no softmax)
};

/// The network. Children: `unet` (trunk, UNet's own names), `direction_head` (3x3 ConvBnAct,
/// 1x1 conv to 2), `energy_head` (3x3 ConvBnAct on the features [+ direction], 1x1 conv to K).
class DeepWatershedImpl : public torch::nn::Cloneable<DeepWatershedImpl>, public InstanceNetwork {
 public:
  /// Builds trunk and heads; c10::Error unless num_levels >= 2, level_step > 0,
  /// 1 <= extract.cut_level < num_levels and extract.min_size >= 1.
  explicit DeepWatershedImpl(DeepWatershedOptions options = {});
  void reset() override;
  /// x [N,C,H,W] -> both heads at the input's size, any H, W.
  WatershedOutput forward(const at::Tensor& x);
  /// watershed_instances of every image of forward(x), with options.extract.
  std::vector<InstancePrediction> predict(const at::Tensor& x) override;

  /// The options it was built with; reset() rebuilds from them.
  DeepWatershedOptions options;
  /// Trunk with base_width outputs, ReLU'd into the heads' features (keys "unet.*").
  UNet unet{nullptr};
  /// base_width -> 2: "direction_head.0" (3x3 ConvBnAct), "direction_head.1" (1x1 Conv2d).
  torch::nn::Sequential direction_head{nullptr};
  /// base_width (+ 2 with direction_to_energy) -> num_levels: "energy_head.0" (3x3 ConvBnAct),
  /// "energy_head.1" (1x1 Conv2d).
  torch::nn::Sequential energy_head{nullptr};
};
TORCH_MODULE(DeepWatershed);

/// The watershed on one image's energy logits [K,H,W]: foreground = pixels whose most likely
/// level is >= 1; seeds = 8-connected components of pixels whose level is >= cut_level; every
/// seed grows into the foreground by priority flooding (Meyer), highest expected energy
/// E = sum_k k p_k first, 8-connected (as the foreground's components), so each foreground pixel joins the seed whose basin it
/// drains into. Foreground components that hold no seed (objects thinner than the cut) become
/// instances of their own. Instances smaller than min_size are dropped; each is scored by its
/// mean foreground probability 1 - p_0. Order: seeds' row-major order, then seedless parts.
InstancePrediction watershed_instances(const at::Tensor& energy_logits,
                                       const WatershedExtractOptions& options = {});

}  // namespace ostrov::models
