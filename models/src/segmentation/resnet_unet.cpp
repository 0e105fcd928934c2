#include "ostrov/models/segmentation/resnet_unet.h"

#include <algorithm>
#include <array>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/sequential.h>

#include "ostrov/nn/conv_bn_act.h"
#include "resnet_encoder.h"

namespace ostrov::models {

namespace {

namespace tnn = torch::nn;

/// Total stride of the encoder's deepest stage: the input is padded to a multiple of it.
constexpr int64_t kEncoderStride = 32;
constexpr size_t kBlocks = 5;

}  // namespace

std::vector<int64_t> ResNetUNetOptions::effective_decoder_channels() const {
  if (!decoder_channels_.empty()) {
    return decoder_channels_;
  }
  const int64_t b = encoder_channels_;
  return {4 * b, 2 * b, b, std::max<int64_t>(1, b / 2), std::max<int64_t>(1, b / 4)};
}

ResNetUNetImpl::ResNetUNetImpl(ResNetUNetOptions options) : options(std::move(options)) {
  reset();
}

void ResNetUNetImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.num_classes() >= 1, "ResNetUNet num_classes must be >= 1, got ",
              o.num_classes());
  TORCH_CHECK(o.encoder_channels() >= 1, "ResNetUNet encoder_channels must be >= 1, got ",
              o.encoder_channels());
  const auto channels = o.effective_decoder_channels();
  TORCH_CHECK(channels.size() == kBlocks, "ResNetUNet decoder_channels must have ", kBlocks,
              " entries (deepest first), got [", c10::Join(", ", channels), "]");
  for (const int64_t c : channels) {
    TORCH_CHECK(c >= 1, "ResNetUNet decoder_channels must be >= 1, got [",
                c10::Join(", ", channels), "]");
  }

  // Throws for an unsupported depth.
  encoder = register_module("encoder", ResNet(ResNetOptions(o.encoder_depth())
                                                  .num_classes(0)
                                                  .base_channels(o.encoder_channels())));

  decoder = register_module("decoder", tnn::ModuleList());
  // Channels of the skips, deepest first (the stem's convolution output, before its max-pool,
  // has the stem's channels); the last block has none.
  const std::array<int64_t, kBlocks> skip_channels = {
      encoder->stage_channels("layer3"), encoder->stage_channels("layer2"),
      encoder->stage_channels("layer1"), encoder->stage_channels("stem"), 0};
  int64_t in = encoder->stage_channels("layer4");
  for (size_t i = 0; i < kBlocks; ++i) {
    const int64_t skip = skip_channels[i];
    const int64_t out = channels[i];
    decoder->push_back(tnn::Sequential(nn::ConvBnAct(nn::ConvBnActOptions(in + skip, out, 3)),
                                       nn::ConvBnAct(nn::ConvBnActOptions(out, out, 3))));
    in = out;
  }
  head = register_module("head", tnn::Conv2d(tnn::Conv2dOptions(in, o.num_classes(), 1)));

  // The decoder: He initialisation, as the encoder's convolutions (torchvision's ResNet init).
  torch::NoGradGuard no_grad;
  for (const auto& module : decoder->modules(/*include_self=*/false)) {
    if (auto* block = module->as<nn::ConvBnAct>()) {
      tnn::init::kaiming_normal_(block->conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    }
  }
}

at::Tensor ResNetUNetImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3,
              "ResNetUNet expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "ResNetUNet needs H, W >= 1, got ", x.sizes());
  const PaddedInput padded = pad_to_multiple(x, kEncoderStride, options.input_padding());

  auto& e = *encoder;
  const at::Tensor stem_conv = e.relu->forward(e.bn1->forward(e.conv1->forward(padded.tensor)));
  const at::Tensor layer1 = e.layer1->forward(e.maxpool->forward(stem_conv));
  const at::Tensor layer2 = e.layer2->forward(layer1);
  const at::Tensor layer3 = e.layer3->forward(layer2);
  at::Tensor y = e.layer4->forward(layer3);

  const std::array<const at::Tensor*, kBlocks - 1> skips = {&layer3, &layer2, &layer1,
                                                            &stem_conv};
  for (size_t i = 0; i < kBlocks; ++i) {
    y = at::upsample_nearest2d(y, {2 * y.size(2), 2 * y.size(3)});
    if (i < skips.size()) {
      y = at::cat({y, *skips[i]}, 1);
    }
    y = decoder[i]->as<tnn::Sequential>()->forward(y);
  }
  return crop_to_input(head->forward(y), padded);
}

void ResNetUNetImpl::load_encoder_weights(const std::string& path) {
  load_encoder_weights(io::load_state_dict(path), path);
}

void ResNetUNetImpl::load_encoder_weights(const io::StateDict& state, const std::string& source) {
  encoder->load_torchvision(state, source);
}

std::shared_ptr<torch::nn::Module> ResNetUNetImpl::clone(
    const c10::optional<torch::Device>& device) const {
  return detail::rebuild_clone(*this, device);
}

void ResNetUNetImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::ResNetUNet(num_classes=" << options.num_classes()
         << ", encoder=resnet" << options.encoder_depth()
         << ", encoder_channels=" << options.encoder_channels() << ", decoder_channels=["
         << c10::Join(", ", options.effective_decoder_channels())
         << "], input_padding=" << to_string(options.input_padding()) << ")";
}

}  // namespace ostrov::models
