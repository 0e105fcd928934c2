#pragma once
// Internal to ostrov::models: the parts MobileNetV2 and MobileNetV3 share — torchvision's
// _make_divisible and Conv2dNormActivation, and the "numbered stages" a backbone has when its
// stages are torchvision's `features` indices "0" ... "N-1".

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/ordered_dict.h>

#include "ostrov/io/state_dict.h"

namespace ostrov::models::detail {

/// torchvision's _make_divisible: the nearest multiple of `divisor` (at least `divisor`) that
/// is not more than 10% below `v`.
int64_t make_divisible(double v, int64_t divisor = 8);

enum class Act { kNone, kReLU, kReLU6, kHardswish };

/// A layer of a MobileNet's `features` (a conv block or an inverted residual), run through one
/// interface.
class FeatureLayer {
 public:
  virtual ~FeatureLayer() = default;
  virtual at::Tensor run(const at::Tensor& x) = 0;
};

/// torchvision's Conv2dNormActivation: children "0" Conv2d (no bias, padding
/// (k - 1) / 2 * dilation), "1" BatchNorm2d(eps, momentum), then the activation (no
/// parameters, so no key).
class ConvNormActImpl : public torch::nn::Cloneable<ConvNormActImpl>, public FeatureLayer {
 public:
  struct Spec {
    int64_t in, out, kernel, stride = 1, groups = 1, dilation = 1;
    Act act = Act::kNone;
    double eps = 1e-5, momentum = 0.1;
  };
  explicit ConvNormActImpl(Spec spec);

  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  at::Tensor run(const at::Tensor& x) override { return forward(x); }
  int64_t out_channels() const { return spec_.out; }

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  Spec spec_;
};
TORCH_MODULE(ConvNormAct);

/// torchvision's MobileNet initialisation of every module below `features`: convs
/// kaiming_normal_(fan_out) with zero biases, BatchNorm weights 1 and biases 0.
void init_mobilenet(torch::nn::Module& features);

/// "0" ... "count-1".
std::vector<std::string> numbered_stage_names(size_t count);

/// Position of stage `name` among "0" ... "count-1"; c10::Error naming `who` and the range.
size_t numbered_stage(const std::string& name, size_t count, const char* who);

/// x: [N,3,H,W] (checked, `who` in the message) -> the stages in `names`, running
/// `run(i, y)` for i = 0 up to the deepest of them.
torch::OrderedDict<std::string, at::Tensor> forward_numbered(
    const at::Tensor& x, const std::vector<std::string>& names, size_t count, const char* who,
    const std::function<at::Tensor(size_t, const at::Tensor&)>& run);

/// Loads a torchvision classifier's `features.*` entries (prefix removed, `classifier.*`
/// ignored) into `features`, strictly; a file of `features`' own keys ("0.0.weight" ...)
/// loads as it is. IoError naming `source` and the keys otherwise.
void load_features(torch::nn::Module& features, const io::StateDict& state,
                   const std::string& source);

}  // namespace ostrov::models::detail
