#include "ostrov/models/segmentation/fcn.h"

#include <algorithm>
#include <array>
#include <sstream>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/pooling.h>

#include "ostrov/core/error.h"
#include "ostrov/io/weights.h"
#include "ostrov/nn/fusion.h"
#include "ostrov/nn/receptive_field.h"

namespace ostrov::models {

namespace {

namespace tnn = torch::nn;

constexpr int64_t kPool5Channels = 256;
constexpr int64_t kFc6Kernel = 6;

/// One stage of AlexNetImpl::forward_features: the output of features[index].
struct AlexNetStage {
  const char* name;
  int64_t index;
  int64_t channels;
};

/// AlexNetImpl's stage table (its class comment; tests/models/test_segmentation.cpp checks
/// that the two agree).
constexpr std::array<AlexNetStage, 8> kAlexNetStages = {{{"relu1", 1, 64},
                                                         {"pool1", 2, 64},
                                                         {"relu2", 4, 192},
                                                         {"pool2", 5, 192},
                                                         {"relu3", 7, 384},
                                                         {"relu4", 9, 256},
                                                         {"relu5", 11, 256},
                                                         {"pool5", 12, 256}}};

const AlexNetStage& alexnet_stage(const std::string& name) {
  std::string names;
  for (const auto& s : kAlexNetStages) {
    if (name == s.name) {
      return s;
    }
    names += (names.empty() ? "" : ", ") + std::string(s.name);
  }
  TORCH_CHECK(false, "FCN: AlexNet has no stage '", name, "'; its stages are: ", names);
}

/// torchvision AlexNet's `features`, module for module as ostrov::models::AlexNet builds it
/// (same indices, so features.{0,3,6,8,10}.{weight,bias} are torchvision's keys, and PyTorch's
/// default initialisation as torchvision), without constructing AlexNet's 58M-parameter
/// classifier, which the FCN replaces by fc6/fc7.
tnn::Sequential alexnet_features() {
  const auto conv = [](int64_t in, int64_t out, int64_t k, int64_t stride, int64_t padding) {
    return tnn::Conv2d(tnn::Conv2dOptions(in, out, k).stride(stride).padding(padding));
  };
  const auto relu = [] { return tnn::ReLU(tnn::ReLUOptions(/*inplace=*/true)); };
  const auto pool = [] { return tnn::MaxPool2d(tnn::MaxPool2dOptions(3).stride(2)); };
  return tnn::Sequential(conv(3, 64, 11, 4, 2), relu(), pool(), conv(64, 192, 5, 1, 2), relu(),
                         pool(), conv(192, 384, 3, 1, 1), relu(), conv(384, 256, 3, 1, 1),
                         relu(), conv(256, 256, 3, 1, 1), relu(), pool());
}

/// AlexNet's `features` layers followed by fc6 (6x6, valid), for the receptive-field arithmetic.
std::vector<nn::LayerSpec> fcn_layers() {
  auto layers = nn::alexnet_layers();
  layers.push_back(nn::LayerSpec{"fc6", "conv", kFc6Kernel, 1, 0, 1});
  return layers;
}

/// Receptive-field row of an AlexNet stage ("reluK" is the output of layer "convK").
nn::LayerField stage_field(const std::string& stage) {
  const std::string layer = stage.rfind("relu", 0) == 0 ? "conv" + stage.substr(4) : stage;
  for (const auto& f : nn::receptive_fields(fcn_layers())) {
    if (f.name == layer) {
      return f;
    }
  }
  TORCH_CHECK(false, "FCN: AlexNet stage '", stage, "' has no receptive-field row");
}

/// Units of the fc6 map for a padded input side (floor arithmetic of every layer).
int64_t score_units(int64_t side) {
  for (const auto& l : fcn_layers()) {
    const int64_t k_eff = l.dilation * (l.kernel - 1) + 1;
    if (side + 2 * l.padding < k_eff) {
      return 0;
    }
    side = (side + 2 * l.padding - k_eff) / l.stride + 1;
  }
  return side;
}

int64_t factor_of(FCNVariant v) {
  switch (v) {
    case FCNVariant::k32s:
      return 32;
    case FCNVariant::k16s:
      return 16;
    default:
      return 8;
  }
}

/// x2 transposed convolution, kernel 3, bilinear-initialised: coarse unit i -> fine unit 2i.
nn::TransposedUpsample upsample(int64_t channels, int64_t factor) {
  return nn::TransposedUpsample(nn::TransposedUpsampleOptions(channels, channels, factor)
                                    .kernel_size(2 * factor - 1)
                                    .bilinear_init(true));
}

/// `x[:, :, offset:offset+h, offset:offset+w]`, checking that the window fits.
at::Tensor crop_at(const at::Tensor& x, int64_t offset, int64_t h, int64_t w, const char* what) {
  TORCH_CHECK(offset >= 0 && offset + h <= x.size(2) && offset + w <= x.size(3), "FCN: ", what,
              " map ", x.sizes(), " does not contain the window at offset ", offset, " of size ",
              h, "x", w);
  return x.narrow(2, offset, h).narrow(3, offset, w);
}

/// `dict` entries under "prefix." with the prefix removed.
io::StateDict with_prefix(const io::StateDict& dict, const std::string& prefix) {
  io::StateDict out;
  for (const auto& item : dict) {
    if (item.key().rfind(prefix, 0) == 0) {
      out.insert(item.key().substr(prefix.size()), item.value());
    }
  }
  return out;
}

}  // namespace

FCNVariant fcn_variant_from_string(const std::string& name) {
  const std::string n = name.rfind("fcn", 0) == 0 ? name.substr(3) : name;
  if (n == "32s") {
    return FCNVariant::k32s;
  }
  if (n == "16s") {
    return FCNVariant::k16s;
  }
  if (n == "8s") {
    return FCNVariant::k8s;
  }
  TORCH_CHECK(false, "unknown FCN variant \"", name, "\"; expected \"32s\", \"16s\" or \"8s\"");
}

std::string to_string(FCNVariant variant) {
  return std::to_string(factor_of(variant)) + "s";
}

FCNImpl::FCNImpl(FCNOptions options) : options(std::move(options)) { reset(); }

void FCNImpl::reset() {
  const auto& o = options;
  TORCH_CHECK(o.num_classes() >= 1, "FCN num_classes must be >= 1, got ", o.num_classes());
  TORCH_CHECK(o.fc_channels() >= 1, "FCN fc_channels must be >= 1, got ", o.fc_channels());
  TORCH_CHECK(o.dropout() >= 0.0 && o.dropout() < 1.0, "FCN dropout must be in [0, 1), got ",
              o.dropout());

  features = register_module("features", alexnet_features());
  const auto tap = [&](const std::string& stage, int64_t stride, int64_t& channels) {
    const AlexNetStage& s = alexnet_stage(stage);
    channels = s.channels;
    const nn::LayerField f = stage_field(stage);
    TORCH_CHECK(f.jump == stride, "FCN: skip stage '", stage, "' has stride ", f.jump,
                ", the ", stride, "-stride skip needs a stage of stride ", stride);
    Tap t;
    t.index = s.index;
    t.start = static_cast<int64_t>(f.start);
    t.jump = f.jump;
    return t;
  };
  int64_t skip16_channels = 0;
  int64_t skip8_channels = 0;
  skip16_ = o.variant() != FCNVariant::k32s ? tap(o.skip16_stage(), 16, skip16_channels) : Tap{};
  skip8_ = o.variant() == FCNVariant::k8s ? tap(o.skip8_stage(), 8, skip8_channels) : Tap{};
  const nn::LayerField score_field = nn::receptive_fields(fcn_layers()).back();
  score_start_ = static_cast<int64_t>(score_field.start);  // 111
  margin_ = score_start_;

  fc6 = register_module(
      "fc6", tnn::Conv2d(tnn::Conv2dOptions(kPool5Channels, o.fc_channels(), kFc6Kernel)));
  drop6 = register_module("drop6", tnn::Dropout(o.dropout()));
  fc7 = register_module("fc7", tnn::Conv2d(tnn::Conv2dOptions(o.fc_channels(), o.fc_channels(), 1)));
  drop7 = register_module("drop7", tnn::Dropout(o.dropout()));
  score_fr = register_module(
      "score_fr", tnn::Conv2d(tnn::Conv2dOptions(o.fc_channels(), o.num_classes(), 1)));

  torch::NoGradGuard no_grad;
  const int64_t k = o.num_classes();
  score_skip16 = nullptr;
  score_skip8 = nullptr;
  upscore2 = nullptr;
  upscore_skip16 = nullptr;
  if (o.variant() != FCNVariant::k32s) {
    score_skip16 = register_module("score_skip16",
                                   tnn::Conv2d(tnn::Conv2dOptions(skip16_channels, k, 1)));
    tnn::init::zeros_(score_skip16->weight);
    tnn::init::zeros_(score_skip16->bias);
    upscore2 = register_module("upscore2", upsample(k, 2));
  }
  if (o.variant() == FCNVariant::k8s) {
    score_skip8 =
        register_module("score_skip8", tnn::Conv2d(tnn::Conv2dOptions(skip8_channels, k, 1)));
    tnn::init::zeros_(score_skip8->weight);
    tnn::init::zeros_(score_skip8->bias);
    upscore_skip16 = register_module("upscore_skip16", upsample(k, 2));
  }
  upscore = register_module("upscore", upsample(k, factor_of(o.variant())));
}

at::Tensor FCNImpl::run_features(const at::Tensor& x, at::Tensor* skip16, at::Tensor* skip8) {
  auto y = x;
  int64_t index = 0;
  for (auto& module : *features) {
    y = module.forward(y);
    if (skip16 != nullptr && index == skip16_.index) {
      *skip16 = y;
    }
    if (skip8 != nullptr && index == skip8_.index) {
      *skip8 = y;
    }
    ++index;
  }
  TORCH_CHECK(y.size(2) >= kFc6Kernel && y.size(3) >= kFc6Kernel,
              "FCN: pool5 is ", y.sizes(), ", fc6 needs at least 6x6 (input ", x.sizes(),
              "; at least 223x223)");
  return y;
}

int64_t FCNImpl::padded_side(int64_t side) const {
  TORCH_CHECK(side >= 1, "FCN: image side must be >= 1, got ", side);
  // Pixel y sits at padded coordinate margin + y = score_start + y and unit i is centred on
  // score_start + 32 i, so the last pixel is within the grid when 32 (n - 1) >= side - 1.
  const int64_t units = 1 + (side - 1 + 31) / 32;
  int64_t s = margin_ + side;
  while (score_units(s) < units) {
    ++s;
  }
  return s;
}

at::Tensor FCNImpl::forward_fc7(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3, "FCN expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  auto y = run_features(x, nullptr, nullptr);
  y = drop6->forward(at::relu(fc6->forward(y)));
  return drop7->forward(at::relu(fc7->forward(y)));
}

at::Tensor FCNImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.defined() && x.dim() == 4 && x.size(1) == 3, "FCN expects input [N,3,H,W], got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  TORCH_CHECK(x.size(2) >= 1 && x.size(3) >= 1, "FCN needs H, W >= 1, got ", x.sizes());
  const int64_t hp = padded_side(x.size(2));
  const int64_t wp = padded_side(x.size(3));
  const PaddedInput padded = pad_input(x, margin_, hp - margin_ - x.size(2), margin_,
                                       wp - margin_ - x.size(3), options.input_padding());

  at::Tensor tap16;
  at::Tensor tap8;
  const bool want16 = options.variant() != FCNVariant::k32s;
  const bool want8 = options.variant() == FCNVariant::k8s;
  auto y = run_features(padded.tensor, want16 ? &tap16 : nullptr, want8 ? &tap8 : nullptr);
  y = drop6->forward(at::relu(fc6->forward(y)));
  y = drop7->forward(at::relu(fc7->forward(y)));
  y = score_fr->forward(y);  // unit i centred on score_start + 32 i

  // Each x2 up-sampling keeps unit 0 on score_start and halves the jump, so a skip map whose
  // unit j is centred on start + jump * j is aligned after dropping (score_start - start)/jump
  // leading units.
  if (want16) {
    y = upscore2->forward(y);
    const auto s = score_skip16->forward(tap16);
    y = nn::fuse_sum(y, crop_at(s, (score_start_ - skip16_.start) / skip16_.jump, y.size(2),
                                y.size(3), "skip16"));
  }
  if (want8) {
    y = upscore_skip16->forward(y);
    const auto s = score_skip8->forward(tap8);
    y = nn::fuse_sum(y, crop_at(s, (score_start_ - skip8_.start) / skip8_.jump, y.size(2),
                                y.size(3), "skip8"));
  }
  // The final xF kernel puts unit i on output pixel F i + F/2 - 1, i.e. output pixel o is
  // padded pixel score_start + o - F/2 + 1; image pixel 0 (padded margin_ = score_start) is
  // output pixel F/2 - 1.
  const int64_t f = factor_of(options.variant());
  y = upscore->forward(y);
  return crop_at(y, f / 2 - 1, x.size(2), x.size(3), "output");
}

void FCNImpl::load_torchvision_alexnet(const std::string& path) {
  load_torchvision_alexnet(io::load_state_dict(path), path);
}

void FCNImpl::load_torchvision_alexnet(const io::StateDict& state, const std::string& source) {
  const io::StateDict converted = alexnet_to_fcn_state_dict(state, source);
  for (const auto& key : converted.keys()) {
    if (key.rfind("features.", 0) != 0 && key.rfind("fc6.", 0) != 0 &&
        key.rfind("fc7.", 0) != 0) {
      throw IoError(source + ": unexpected key " + key +
                    " in a torchvision AlexNet state_dict (expected features.*, classifier.*)");
    }
  }
  // Strict per part: every features/fc6/fc7 tensor must be there with the right shape.
  io::load_state_dict_into(*features, with_prefix(converted, "features."), true, source);
  io::load_state_dict_into(*fc6, with_prefix(converted, "fc6."), true, source + " (fc6)");
  io::load_state_dict_into(*fc7, with_prefix(converted, "fc7."), true, source + " (fc7)");
}

io::StateDict alexnet_to_fcn_state_dict(const io::StateDict& alexnet, const std::string& source) {
  const auto get = [&](const std::string& key, const std::vector<int64_t>& shape) {
    const at::Tensor* t = alexnet.find(key);
    if (t == nullptr) {
      throw IoError(source + ": missing key " + key +
                    " (not a torchvision AlexNet state_dict?)");
    }
    bool ok = t->dim() == static_cast<int64_t>(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) {
      ok = shape[i] < 0 || t->size(static_cast<int64_t>(i)) == shape[i];
    }
    if (!ok) {
      std::ostringstream msg;
      msg << source << ": " << key << " has shape " << t->sizes() << ", expected "
          << at::IntArrayRef(shape) << " (-1: any)";
      throw IoError(msg.str());
    }
    return *t;
  };
  const int64_t in6 = kPool5Channels * kFc6Kernel * kFc6Kernel;  // 9216
  const at::Tensor w6 = get("classifier.1.weight", {-1, in6});
  const int64_t c6 = w6.size(0);
  const at::Tensor w7 = get("classifier.4.weight", {-1, c6});
  const int64_t c7 = w7.size(0);

  io::StateDict out;
  for (const auto& item : alexnet) {
    if (item.key().rfind("classifier.", 0) != 0) {
      out.insert(item.key(), item.value());
    }
  }
  out.insert("fc6.weight", w6.reshape({c6, kPool5Channels, kFc6Kernel, kFc6Kernel}));
  out.insert("fc6.bias", get("classifier.1.bias", {c6}));
  out.insert("fc7.weight", w7.reshape({c7, c6, 1, 1}));
  out.insert("fc7.bias", get("classifier.4.bias", {c7}));
  return out;
}

void FCNImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::models::FCN(num_classes=" << options.num_classes()
         << ", variant=" << to_string(options.variant())
         << ", fc_channels=" << options.fc_channels() << ", dropout=" << options.dropout();
  if (options.variant() != FCNVariant::k32s) {
    stream << ", skip16_stage=" << options.skip16_stage();
  }
  if (options.variant() == FCNVariant::k8s) {
    stream << ", skip8_stage=" << options.skip8_stage();
  }
  stream << ", input_padding=" << to_string(options.input_padding()) << ")";
}

}  // namespace ostrov::models
