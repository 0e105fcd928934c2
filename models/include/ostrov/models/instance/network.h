#pragma once
// The interface every instance-segmentation network of ostrov::models implements besides
// torch::nn::Module (DeepColoringImpl, DeepWatershedImpl, SSDMaskImpl), so that code built
// from a config (models::build_instance, the instance task, the Predictor) runs any of them
// without knowing which, and so that a Module::clone() of one is still usable through it.
// docs/architecture.md "Models" says how to add one.

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ostrov::models {

/// Instances found in one image: K masks and a confidence per mask; methods with classes and
/// boxes (SSDMask) also fill labels and boxes.
struct InstancePrediction {
  at::Tensor masks;   ///< [K,H,W] uint8 (disjoint for DeepColoring and DeepWatershed)
  at::Tensor scores;  ///< [K] float in (0,1]
  at::Tensor labels;  ///< [K] int64 classes 1..C-1, or undefined (class-agnostic methods)
  at::Tensor boxes;   ///< [K,4] float x1,y1,x2,y2 from the detector, or undefined
};

/// An instance-segmentation network: images -> one InstancePrediction per image.
class InstanceNetwork {
 public:
  virtual ~InstanceNetwork() = default;

  /// x: `[N, C, H, W]` preprocessed images -> the instances of each image at x's size (call in
  /// eval mode, under NoGradGuard for inference).
  virtual std::vector<InstancePrediction> predict(const at::Tensor& x) = 0;

  /// Whether predictions carry dataset classes (`labels`, `boxes`); false for the
  /// class-agnostic methods, whose every instance is "an object".
  virtual bool has_classes() const { return false; }

  /// Indices of `p`'s instances seen as one class, best first. Default: all of them (the
  /// class-agnostic methods); a detector-based network keeps those scoring >= min_score that
  /// survive a class-agnostic NMS, so one object found as two classes is one object.
  virtual at::Tensor class_agnostic(const InstancePrediction& p, double min_score) const;

  /// The masks of `p` that count as objects in a label image (SBD, |DiC|), weakest first so
  /// that the stronger win where they overlap. Default: `p.masks`.
  virtual at::Tensor counted_masks(const InstancePrediction& p) const;

 protected:
  InstanceNetwork() = default;
  /// Copied only as part of a network (torch::nn::Cloneable::clone copy-constructs the Impl);
  /// protected, so the interface cannot be sliced off.
  InstanceNetwork(const InstanceNetwork&) = default;
  InstanceNetwork& operator=(const InstanceNetwork&) = default;
};

}  // namespace ostrov::models
