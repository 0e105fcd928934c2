#include "ostrov/losses/mask.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace ostrov::losses::functional {

at::Tensor mask_loss(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& targets) {
  TORCH_CHECK(logits.dim() == 4 && logits.size(2) == logits.size(3),
              "mask_loss: logits should be [R,C,M,M], got ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()),
              "mask_loss: logits should be floating point, got ", logits.scalar_type());
  const int64_t r = logits.size(0), m = logits.size(2);
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == r, "mask_loss: labels should be [", r,
              "], got ", labels.sizes());
  TORCH_CHECK(targets.dim() == 3 && targets.size(0) == r && targets.size(1) == m &&
                  targets.size(2) == m,
              "mask_loss: targets should be [", r, ",", m, ",", m, "], got ", targets.sizes());
  if (r == 0) return logits.sum() * 0;
  const auto l = labels.to(logits.device(), at::kLong);
  TORCH_CHECK(l.min().item<int64_t>() >= 0 && l.max().item<int64_t>() < logits.size(1),
              "mask_loss: labels must lie in [0, ", logits.size(1), ")");
  const auto chosen = logits.index({at::arange(r, l.options()), l});
  return at::binary_cross_entropy_with_logits(chosen, targets.to(logits.device(), logits.scalar_type()));
}

}  // namespace ostrov::losses::functional
