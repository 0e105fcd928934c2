#pragma once
// DeepColoring's halo loss (Kulikov, Yurchenko, Lempitsky, "Instance Segmentation by Deep
// Coloring", arXiv:1807.10007): the network predicts C maps ("colours"), map 0 = background;
// each object is assigned, per image, the colour that already covers it best and is least
// present in a halo around it, then trained with cross-entropy towards that colour.
//
// For object k with pixels M^k and halo^k = dilate(M^k, disk of radius m) \ M^k:
//   c_k = argmax_{c >= 1} [ mean_{p in M^k} log y[c,p] + mu * mean_{p in halo^k} log(1 - y[c,p]) ]
//   loss = ( -sum_k sum_{p in M^k} log y[c_k,p] - sum_{p in background} log y[0,p] ) / #pixels
// with y = softmax(logits) over the C maps and #pixels the non-ignored pixels of the image
// (so the scale does not depend on image size), averaged over the batch. The choice of c_k is
// made without gradient. A halo may cover other objects (that is the point: neighbours must
// get different colours); pixels equal to ignore_index are never part of a halo.

#include <cstdint>
#include <ostream>

#include <ATen/core/Tensor.h>
#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/losses/term.h"

namespace ostrov::losses {

/// Options of HaloLoss.
struct HaloLossOptions {
  /// Halo radius m in pixels (the halo is the dilation by a disk of this radius, OpenCV's
  /// elliptic structuring element of size 2m+1, minus the object).
  TORCH_ARG(int64_t, margin) = 10;
  /// Weight mu of the halo term in the choice of colour.
  TORCH_ARG(double, mu) = 1.0;
  /// Instance-map value of unlabelled pixels (left out of the loss and of halos).
  TORCH_ARG(int64_t, ignore_index) = -1;
};

namespace functional {

/// The colour assignment: logits [N,C,H,W] (C >= 2), instances [N,H,W] int64 (0 = background,
/// each other value one object, ignore_index = unlabelled) -> [N,H,W] int64 target with
/// 0 on background, c_k on the pixels of object k and ignore_index elsewhere. No gradient.
at::Tensor halo_coloring(const at::Tensor& logits, const at::Tensor& instances,
                         const HaloLossOptions& options = {});

/// The halo loss (see the header comment) -> scalar; 0 with a gradient for an image whose
/// pixels are all ignored.
at::Tensor halo_loss(const at::Tensor& logits, const at::Tensor& instances,
                     const HaloLossOptions& options = {});

}  // namespace functional

/// Module form: forward(logits [N,C,H,W], instances [N,H,W] int64) -> scalar.
class HaloLossImpl : public torch::nn::Cloneable<HaloLossImpl>, public LossTermModule {
 public:
  /// c10::Error for margin < 1, mu < 0 or ignore_index 0 (the background).
  explicit HaloLossImpl(HaloLossOptions options = {});
  void reset() override;
  /// functional::halo_loss: logits [N,C,H,W] (C >= 2), instances [N,H,W] int64 -> scalar.
  at::Tensor forward(const at::Tensor& logits, const at::Tensor& instances);
  /// forward on the LossInputs fields named above (CompositeLoss).
  at::Tensor compute(const LossInputs& in) override;
  void pretty_print(std::ostream& stream) const override;

  HaloLossOptions options;  ///< checked by reset() and again on every forward
};
TORCH_MODULE(HaloLoss);

}  // namespace ostrov::losses
