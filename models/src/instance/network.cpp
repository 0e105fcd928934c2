#include "ostrov/models/instance/network.h"

#include <ATen/ATen.h>

namespace ostrov::models {

at::Tensor InstanceNetwork::class_agnostic(const InstancePrediction& p, double) const {
  return at::arange(p.masks.size(0), at::kLong);
}

at::Tensor InstanceNetwork::counted_masks(const InstancePrediction& p) const { return p.masks; }

}  // namespace ostrov::models
