#pragma once
// AlexNet exactly as torchvision 0.14 builds it (`torchvision.models.alexnet`), so its
// parameter names equal torchvision's state_dict keys and ImageNet weights load unchanged.
//
// Paper: Krizhevsky, "One weird trick for parallelizing convolutional neural networks",
// arXiv:1404.5997 (the 64-192-384-256-256 variant torchvision uses; no LRN).

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/pooling.h>
#include <torch/nn/pimpl.h>
#include <torch/ordered_dict.h>
#include <torch/types.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/backbones/backbone.h"

namespace ostrov::models {

/// Options of `AlexNet`; the defaults build torchvision's 1000-class ImageNet model.
struct AlexNetOptions {
  /// Outputs of the last Linear layer.
  TORCH_ARG(int64_t, num_classes) = 1000;
  /// Drop probability of the two Dropout layers in `classifier`.
  TORCH_ARG(double, dropout) = 0.5;
};

/// AlexNet (torchvision layout). Children and their state_dict keys:
///   features    Sequential, indices as torchvision:
///               0 Conv(3,64,k11,s4,p2) 1 ReLU 2 MaxPool(3,2) 3 Conv(64,192,k5,p2) 4 ReLU
///               5 MaxPool(3,2) 6 Conv(192,384,k3,p1) 7 ReLU 8 Conv(384,256,k3,p1) 9 ReLU
///               10 Conv(256,256,k3,p1) 11 ReLU 12 MaxPool(3,2)
///               -> features.{0,3,6,8,10}.{weight,bias}
///   avgpool     AdaptiveAvgPool2d(6,6)
///   classifier  0 Dropout 1 Linear(9216,4096) 2 ReLU 3 Dropout 4 Linear(4096,4096) 5 ReLU
///               6 Linear(4096,num_classes) -> classifier.{1,4,6}.{weight,bias}
/// Parameters keep PyTorch's default initialisation, as torchvision's AlexNet does.
///
/// Stages of `forward_features` (name: channels, stride for a 224x224 input -> size):
///   relu1: 64, /4 (55x55)    pool1: 64, /8 (27x27)
///   relu2: 192, /8 (27x27)   pool2: 192, /16 (13x13)
///   relu3: 384, /16 (13x13)  relu4: 256, /16 (13x13)  relu5: 256, /16 (13x13)
///   pool5: 256, /32 (6x6)    (= features(x))
/// ("reluK" is the output of the K-th convolution after its ReLU.)
class AlexNetImpl : public torch::nn::Cloneable<AlexNetImpl>, public Backbone {
 public:
  /// Builds the layers (reset()); num_classes 0 leaves out avgpool and classifier (a
  /// backbone). c10::Error for num_classes < 0 or dropout outside [0,1].
  explicit AlexNetImpl(AlexNetOptions options = {});

  void reset() override;

  /// x: [N,3,H,W] float (ImageNet-normalised RGB for pretrained weights), H,W >= 63
  /// -> logits [N,num_classes] (no softmax), as torchvision's forward.
  torch::Tensor forward(const torch::Tensor& x);

  /// x: [N,3,H,W] -> every stage listed in the class comment, in network order,
  /// each [N,C,h,w].
  torch::OrderedDict<std::string, torch::Tensor> forward_features(const torch::Tensor& x);

  /// As above but only the stages in `names` (returned in network order); the network runs
  /// only as far as the deepest requested stage. Throws c10::Error for an unknown name.
  torch::OrderedDict<std::string, torch::Tensor> forward_features(
      const torch::Tensor& x, const std::vector<std::string>& names) override;

  /// Stage names of `forward_features`, in network order.
  std::vector<std::string> stage_names() const override;

  /// Channels of a stage's output. Throws c10::Error for an unknown name.
  int64_t stage_channels(const std::string& name) const override;

  /// Nominal stride of a stage's output (see the class comment). c10::Error for an unknown name.
  int64_t stage_stride(const std::string& name) const override;

  /// A torchvision state_dict of the same network: every `features.*` key must match (IoError
  /// listing the keys otherwise); `classifier.*` is ignored and this network's own keeps its
  /// values.
  void load_torchvision(const io::StateDict& state, const std::string& source) override;

  /// Index in `features` whose output is the stage (e.g. relu5 -> 11, pool5 -> 12), for
  /// code that truncates or splits `features`. Throws c10::Error for an unknown name.
  int64_t stage_index(const std::string& name) const;

  void pretty_print(std::ostream& stream) const override;

  AlexNetOptions options;  ///< what reset() builds from
  /// Convs, ReLUs and max-pools 0 ... 12: [N,3,H,W] -> pool5 [N,256,h,w] (see above).
  torch::nn::Sequential features{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};  ///< to 6x6; null when num_classes is 0
  torch::nn::Sequential classifier{nullptr};  ///< Dropout/Linear head; null when num_classes is 0

 private:
  struct Stage {
    std::string name;
    size_t index;  ///< output of features[index]
    int64_t channels;
    int64_t stride;
  };
  const Stage& stage(const std::string& name) const;
  std::vector<Stage> stages_;
};

/// `ostrov::models::AlexNet()` is torchvision's `alexnet(weights=None)`.
TORCH_MODULE(AlexNet);

}  // namespace ostrov::models
