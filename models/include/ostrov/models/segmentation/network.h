#pragma once
// The interface every semantic-segmentation network of ostrov::models implements besides
// torch::nn::Module (UNetImpl, FCNImpl, FCDenseNetImpl, PSPNetImpl), so that code built from a
// config (ostrov::models::build, the trainer, the CLI) can run any of them, and so that a
// Module::clone() of one (a data-parallel replica) is still usable through it.

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace ostrov::models {

/// Logits for training with deep supervision.
struct SegmentationOutput {
  /// `[N, K, H, W]` float logits at the input's size.
  at::Tensor main;
  /// `[N, K, H, W]` logits of an auxiliary head (PSPNet's on layer3), undefined when the
  /// network has none.
  at::Tensor aux;
  /// Weight of the auxiliary loss in `loss(main) + aux_weight * loss(aux)` (0.4 in PSPNet);
  /// 0 when `aux` is undefined.
  double aux_weight = 0.0;
};

/// A semantic-segmentation network: `[N, C_in, H, W]` float image -> `[N, K, H, W]` logits for
/// any H, W >= 1.
class SegmentationNetwork {
 public:
  virtual ~SegmentationNetwork() = default;

  /// x: `[N, in_channels(), H, W]` float -> logits `[N, num_classes(), H, W]` (no softmax).
  virtual at::Tensor forward(const at::Tensor& x) = 0;

  /// Main and auxiliary logits for training. Default: `{forward(x), undefined, 0}`.
  virtual SegmentationOutput forward_with_aux(const at::Tensor& x) {
    SegmentationOutput out;
    out.main = forward(x);
    return out;
  }

  /// K, the channels of the logits (classes including background).
  virtual int64_t num_classes() const = 0;
  /// C_in, the channels the input must have.
  virtual int64_t in_channels() const = 0;

 protected:
  SegmentationNetwork() = default;
  /// Copied only as part of a network (torch::nn::Cloneable::clone copy-constructs the Impl);
  /// protected, so the interface cannot be sliced off.
  SegmentationNetwork(const SegmentationNetwork&) = default;
  SegmentationNetwork& operator=(const SegmentationNetwork&) = default;
};

}  // namespace ostrov::models
