#include "ostrov/models/segmentation/unet.h"

#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/init.h>

#include "ostrov/nn/fusion.h"
#include "ostrov/nn/upsample.h"

namespace ostrov::models {

namespace {

namespace tnn = torch::nn;

/// Two 3x3 ConvBnAct blocks, in -> out -> out.
tnn::Sequential double_conv(int64_t in, int64_t out, const UNetOptions& o) {
  const auto block = [&](int64_t c_in) {
    return nn::ConvBnAct(
        nn::ConvBnActOptions(c_in, out, 3).padding(o.padding()).batch_norm(o.batch_norm()));
  };
  return tnn::Sequential(block(in), block(out));
}

/// Output side of a valid-padding U-Net whose bottleneck output is b: going up, each level
/// doubles the side (up-conv) and loses 4 pixels (two 3x3 convs): u_l = 2 u_{l+1} - 4.
/// Returns -1 when some level would be empty.
int64_t valid_output(int64_t b, int64_t depth) {
  int64_t u = b;
  for (int64_t l = 0; l < depth; ++l) {
    u = 2 * u - 4;
    if (u < 1) {
      return -1;
    }
  }
  return u;
}

/// Input side a valid-padding U-Net needs for bottleneck output b: going down, the bottleneck
/// input is b + 4, each level's conv output is twice the next level's input, plus 4 for its
/// two convs: I = 2^L (b + 4) + 4 (2^L - 1) ... computed level by level.
int64_t valid_input(int64_t b, int64_t depth) {
  int64_t s = b + 4;
  for (int64_t l = 0; l < depth; ++l) {
    s = 2 * s + 4;
  }
  return s;
}

}  // namespace

UNetUpsampling unet_upsampling_from_string(const std::string& name) {
  if (name == "transposed" || name == "deconv") {
    return UNetUpsampling::kTransposed;
  }
  if (name == "bilinear") {
    return UNetUpsampling::kBilinear;
  }
  TORCH_CHECK(false, "unknown U-Net up-sampling \"", name,
              "\"; expected \"transposed\" or \"bilinear\"");
}

std::string to_string(UNetUpsampling mode) {
  return mode == UNetUpsampling::kTransposed ? "transposed" : "bilinear";
}

UNetImpl::UNetImpl(UNetOptions options) : options(std::move(options)) { reset(); }

void UNetImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.num_classes() >= 1, "UNet num_classes must be >= 1, got ", o.num_classes());
  TORCH_CHECK(o.in_channels() >= 1, "UNet in_channels must be >= 1, got ", o.in_channels());
  TORCH_CHECK(o.depth() >= 1 && o.depth() <= 8, "UNet depth must be in [1, 8], got ",
              o.depth());
  TORCH_CHECK(o.base_width() >= 1, "UNet base_width must be >= 1, got ", o.base_width());
  const auto width = [&](int64_t l) { return o.base_width() << l; };

  encoder = register_module("encoder", tnn::ModuleList());
  up = register_module("up", tnn::ModuleList());
  decoder = register_module("decoder", tnn::ModuleList());
  for (int64_t l = 0; l < o.depth(); ++l) {
    encoder->push_back(double_conv(l == 0 ? o.in_channels() : width(l - 1), width(l), o));
  }
  bottleneck =
      register_module("bottleneck", double_conv(width(o.depth() - 1), width(o.depth()), o));
  for (int64_t l = 0; l < o.depth(); ++l) {
    if (o.upsampling() == UNetUpsampling::kTransposed) {
      up->push_back(nn::TransposedUpsample(
          nn::TransposedUpsampleOptions(width(l + 1), width(l), 2).kernel_size(2)));
    } else {
      up->push_back(nn::BilinearConvUpsample(
          nn::BilinearConvUpsampleOptions(width(l + 1), width(l), 2).kernel_size(1)));
    }
    decoder->push_back(double_conv(2 * width(l), width(l), o));
  }
  head = register_module("head", tnn::Conv2d(tnn::Conv2dOptions(width(0), o.num_classes(), 1)));

  // He initialisation, as the paper (section 3).
  torch::NoGradGuard no_grad;
  for (const auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<tnn::Conv2d>()) {
      tnn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
      if (conv->bias.defined()) {
        tnn::init::zeros_(conv->bias);
      }
    }
  }
}

at::Tensor UNetImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == options.in_channels(),
              "UNet expects input [N,", options.in_channels(), ",H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "UNet needs H, W >= 1, got ", x.sizes());
  const int64_t depth = options.depth();
  PaddedInput padded;
  int64_t out_top = 0;
  int64_t out_left = 0;
  if (options.padding() == nn::PaddingMode::kValid) {
    // Smallest bottleneck output b whose logits cover the image; the logits' pixel o is centred
    // on the padded input's pixel o + margin, so a top/left margin `margin` aligns them.
    const int64_t margin = 6 * (int64_t{1} << depth) - 4;
    const auto plan = [&](int64_t side) {
      int64_t b = 1;
      while (valid_output(b, depth) < side) {
        ++b;
      }
      return valid_input(b, depth);
    };
    const int64_t in_h = plan(x.size(2));
    const int64_t in_w = plan(x.size(3));
    padded = pad_input(x, margin, in_h - margin - x.size(2), margin, in_w - margin - x.size(3),
                       options.input_padding());
  } else {
    const int64_t multiple = int64_t{1} << depth;
    const int64_t min_size = options.padding() == nn::PaddingMode::kSameMirror ? 2 * multiple : 1;
    padded = pad_to_multiple(x, multiple, options.input_padding(), 0, min_size);
    out_top = padded.top;
    out_left = padded.left;
  }

  auto y = padded.tensor;
  std::vector<at::Tensor> skips;
  skips.reserve(static_cast<size_t>(depth));
  for (int64_t l = 0; l < depth; ++l) {
    y = encoder[static_cast<size_t>(l)]->as<tnn::Sequential>()->forward(y);
    skips.push_back(y);
    y = at::max_pool2d(y, {2, 2}, {2, 2});
  }
  y = bottleneck->forward(y);
  for (int64_t l = depth - 1; l >= 0; --l) {
    const auto& module = up[static_cast<size_t>(l)];
    if (auto* transposed = module->as<nn::TransposedUpsample>()) {
      y = transposed->forward(y);
    } else {
      y = module->as<nn::BilinearConvUpsample>()->forward(y);
    }
    // Valid convolutions leave the encoder map larger: fuse_concat centre-crops it.
    y = nn::fuse_concat(y, skips[static_cast<size_t>(l)]);
    y = decoder[static_cast<size_t>(l)]->as<tnn::Sequential>()->forward(y);
  }
  y = head->forward(y);
  return y.narrow(2, out_top, x.size(2)).narrow(3, out_left, x.size(3));
}

void UNetImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::UNet(num_classes=" << options.num_classes()
         << ", in_channels=" << options.in_channels() << ", depth=" << options.depth()
         << ", base_width=" << options.base_width()
         << ", batch_norm=" << (options.batch_norm() ? "true" : "false")
         << ", upsampling=" << to_string(options.upsampling())
         << ", padding=" << nn::to_string(options.padding())
         << ", input_padding=" << to_string(options.input_padding()) << ")";
}

}  // namespace ostrov::models
