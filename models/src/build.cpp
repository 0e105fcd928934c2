#include "ostrov/models/build.h"

#include <algorithm>
#include <array>
#include <functional>
#include <utility>

#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include "ostrov/core/error.h"
#include "ostrov/core/registry.h"
#include "ostrov/io/json.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/backbones/mobilenet_v3.h"
#include "ostrov/models/segmentation/deeplab.h"
#include "ostrov/models/segmentation/fc_densenet.h"
#include "ostrov/models/segmentation/fcn.h"
#include "ostrov/models/segmentation/pspnet.h"
#include "ostrov/models/segmentation/resnet_unet.h"
#include "ostrov/models/segmentation/unet.h"
#include "backbone_keys.h"
#include "maker.h"

namespace ostrov::models {

namespace {

using detail::backbone_layers;
using detail::conv;
using detail::mobilenet_v3_layers;
using detail::pool;
using detail::resnet_layers;
using io::ConfigReader;

/// Reads a string option and converts it with `parse`, turning its c10::Error into a
/// ConfigError that names the key.
template <typename Parse>
auto parse_string(ConfigReader& r, const std::string& key, const std::string& fallback,
                  Parse parse) {
  const auto value = r.get<std::string>(key, fallback);
  try {
    return parse(value);
  } catch (const c10::Error& e) {
    throw ConfigError(r.where() + ": key " + r.path_of(key) + ": " + e.what_without_backtrace());
  }
}

/// The options of a U-Net over `backbone` ("resnet18" ... "resnet152"); the plain U-Net's
/// keys are refused, naming the key.
ResNetUNetOptions parse_resnet_unet(ConfigReader& r, const std::string& backbone,
                                    int64_t num_classes, InputPadding padding) {
  auto names = detail::resnet_names();
  names.insert(names.begin(), "none");
  const auto spec = detail::read_backbone(r, "unet", backbone, {names, true, {}});
  for (const char* key :
       {"in_channels", "depth", "base_width", "batch_norm", "upsampling", "padding"}) {
    if (r.has(key)) {
      throw ConfigError(r.where() + ": key " + r.path_of(key) +
                        " applies to the plain U-Net only, not to backbone \"" + backbone + "\"");
    }
  }
  ResNetUNetOptions o(num_classes);
  o.encoder_depth(spec.resnet_depth())
      .encoder_channels(spec.channels())
      .decoder_channels(r.get<std::vector<int64_t>>("decoder_channels", {}))
      .input_padding(padding);
  return o;
}


std::vector<nn::LayerSpec> unet_layers(const UNetOptions& o) {
  const int64_t p = o.padding() == nn::PaddingMode::kValid ? 0 : 1;
  std::vector<nn::LayerSpec> layers;
  for (int64_t l = 1; l <= o.depth() + 1; ++l) {
    const std::string level = std::to_string(l);
    layers.push_back(conv("conv" + level + "_1", 3, 1, p));
    layers.push_back(conv("conv" + level + "_2", 3, 1, p));
    if (l <= o.depth()) {
      layers.push_back(pool("pool" + level, 2, 2));
    }
  }
  return layers;
}

std::vector<nn::LayerSpec> fcn_layers() {
  auto layers = nn::alexnet_layers();
  layers.push_back(conv("fc6", 6));
  layers.push_back(conv("fc7", 1));
  return layers;
}

std::vector<nn::LayerSpec> fc_densenet_layers(const FCDenseNetOptions& o) {
  const auto blocks = o.effective_layers_per_block();
  const size_t pools = blocks.size() / 2;
  std::vector<nn::LayerSpec> layers{conv("first_conv", 3, 1, 1)};
  for (size_t b = 0; b <= pools; ++b) {
    const std::string block = b < pools ? "block" + std::to_string(b + 1) : "bottleneck";
    for (int64_t i = 1; i <= blocks[b]; ++i) {
      layers.push_back(conv(block + "_layer" + std::to_string(i), 3, 1, 1));
    }
    if (b < pools) {
      layers.push_back(conv("td" + std::to_string(b + 1) + "_conv", 1));
      layers.push_back(pool("td" + std::to_string(b + 1) + "_pool", 2, 2));
    }
  }
  return layers;
}


/// ASPP's 3x3 branch with the largest rate (the widest window of the head).
nn::LayerSpec widest_aspp_branch(const std::vector<int64_t>& rates) {
  TORCH_CHECK(!rates.empty(), "atrous_rates must not be empty");
  const int64_t rate = *std::max_element(rates.begin(), rates.end());
  return conv("aspp_rate" + std::to_string(rate), 3, 1, rate, rate);
}

/// DeepLabV3 / FCN: the backbone, then the head's widest 3x3 conv (ASPP's largest rate) and
/// the 3x3 conv after it (FCN: its one 3x3 conv).
std::vector<nn::LayerSpec> deeplab_layers(const DeepLabV3Options& o) {
  auto layers = backbone_layers(o.backbone());
  if (o.head() == DenseHead::kASPP) layers.push_back(widest_aspp_branch(o.atrous_rates()));
  layers.push_back(conv("head_3x3", 3, 1, 1));
  return layers;
}

std::vector<nn::LayerSpec> pspnet_layers(const PSPNetOptions& o) {
  auto layers = resnet_layers(o.backbone_depth(), o.output_stride());
  layers.push_back(conv("bottleneck", 3, 1, 1));
  return layers;
}


using detail::maker;

// Calls `load` (an XImpl's "load a torchvision classifier" member) on the built network.
template <typename Impl>
auto backbone_loader(void (Impl::*load)(const io::StateDict&, const std::string&)) {
  return [load](torch::nn::Module& m, const io::StateDict& state, const std::string& file) {
    (m.as<Impl>()->*load)(state, file);
  };
}

SegmentationRecipe parse_unet(ConfigReader& r, const std::string& name, int64_t num_classes,
                              InputPadding padding) {
  SegmentationRecipe recipe;
  const std::string backbone = r.get<std::string>("backbone", "none");
  if (backbone != "none") {  // a torchvision ResNet encoder
    const auto o = parse_resnet_unet(r, backbone, num_classes, padding);
    recipe.build = maker<ResNetUNetImpl>(o);
    recipe.layers = [o] { return resnet_layers(o.encoder_depth(), /*output_stride=*/32); };
    recipe.load_backbone = backbone_loader(&ResNetUNetImpl::load_encoder_weights);
    return recipe;
  }
  UNetOptions o(num_classes);  // the paper's encoder
  o.in_channels(r.get<int64_t>("in_channels", o.in_channels()))
      .depth(r.get<int64_t>("depth", o.depth()))
      .base_width(r.get<int64_t>("base_width", o.base_width()))
      .batch_norm(r.get<bool>("batch_norm", o.batch_norm()))
      .upsampling(parse_string(r, "upsampling", to_string(o.upsampling()),
                               unet_upsampling_from_string))
      .padding(parse_string(r, "padding", nn::to_string(o.padding()),
                            nn::padding_mode_from_string))
      .input_padding(padding);
  recipe.build = maker<UNetImpl>(o);
  recipe.layers = [o] { return unet_layers(o); };
  return recipe;
}

SegmentationRecipe parse_fcn(ConfigReader& r, const std::string& name, int64_t num_classes,
                             InputPadding padding) {
  detail::read_backbone(r, name, BackboneOptions("alexnet"), {{"alexnet"}, false, {}});
  FCNOptions o(num_classes);
  o.variant(fcn_variant_from_string(name))
      .fc_channels(r.get<int64_t>("fc_channels", o.fc_channels()))
      .dropout(r.get<double>("dropout", o.dropout()))
      .skip16_stage(r.get<std::string>("skip16_stage", o.skip16_stage()))
      .skip8_stage(r.get<std::string>("skip8_stage", o.skip8_stage()))
      .input_padding(padding);
  SegmentationRecipe recipe;
  recipe.build = maker<FCNImpl>(o);
  recipe.layers = [] { return fcn_layers(); };
  recipe.load_backbone = backbone_loader(&FCNImpl::load_torchvision_alexnet);
  return recipe;
}

SegmentationRecipe parse_fc_densenet(ConfigReader& r, const std::string& name,
                                     int64_t num_classes, InputPadding padding) {
  FCDenseNetOptions o(num_classes);
  o.depth(std::stoll(name.substr(11)))  // "fc_densenet<depth>"
      .in_channels(r.get<int64_t>("in_channels", o.in_channels()))
      .first_channels(r.get<int64_t>("first_channels", o.first_channels()))
      .dropout(r.get<double>("dropout", o.dropout()))
      .input_padding(padding);
  if (auto growth = r.find<int64_t>("growth_rate")) o.growth_rate(*growth);
  if (auto layers = r.find<std::vector<int64_t>>("layers_per_block")) o.layers_per_block(*layers);
  SegmentationRecipe recipe;
  recipe.build = maker<FCDenseNetImpl>(o);
  recipe.layers = [o] { return fc_densenet_layers(o); };
  return recipe;
}

SegmentationRecipe parse_pspnet(ConfigReader& r, const std::string& name, int64_t num_classes,
                                InputPadding padding) {
  PSPNetOptions o(num_classes);
  if (r.has("backbone_depth")) {
    throw ConfigError(r.where() + ": key " + r.path_of("backbone_depth") + " is spelled " +
                      r.path_of("backbone") + " = \"resnet" +
                      std::to_string(r.get<int64_t>("backbone_depth", 0)) +
                      "\" (as in every model with a backbone)");
  }
  const auto spec = detail::read_backbone(
      r, name, BackboneOptions("resnet" + std::to_string(o.backbone_depth())).output_stride(8),
      {detail::resnet_names(), true, {8, 16}});
  o.backbone_depth(spec.resnet_depth())
      .backbone_channels(spec.channels())
      .output_stride(spec.output_stride())
      .bins(r.get<std::vector<int64_t>>("bins", o.bins()))
      .pooling(parse_string(r, "pooling", to_string(o.pooling()), pyramid_pooling_from_string))
      .reduce_dimension(r.get<bool>("reduce_dimension", o.reduce_dimension()))
      .head_channels(r.get<int64_t>("head_channels", o.head_channels()))
      .dropout(r.get<double>("dropout", o.dropout()))
      .aux(r.get<bool>("aux", o.aux()))
      .aux_channels(r.get<int64_t>("aux_channels", o.aux_channels()))
      .aux_weight(r.get<double>("aux_weight", o.aux_weight()))
      .input_padding(padding);
  SegmentationRecipe recipe;
  recipe.build = maker<PSPNetImpl>(o);
  recipe.layers = [o] { return pspnet_layers(o); };
  recipe.load_backbone = backbone_loader(&PSPNetImpl::load_backbone_weights);
  return recipe;
}

/// The backbone of a dense-prediction model: ResNets (when `resnets`; output stride 8 default
/// or 16, any width) or MobileNetV3 (output stride 16).
BackboneOptions read_dense_backbone(ConfigReader& r, const std::string& model,
                                    const std::string& fallback, bool resnets,
                                    int64_t resnet_stride = 8) {
  const std::vector<std::string> mobilenets{"mobilenet_v3_large", "mobilenet_v3_small"};
  std::vector<std::string> names = resnets ? detail::resnet_names() : std::vector<std::string>{};
  names.insert(names.end(), mobilenets.begin(), mobilenets.end());
  const std::string backbone = r.get<std::string>("backbone", fallback);
  const bool mobilenet = backbone.rfind("mobilenet_v3_", 0) == 0;
  return detail::read_backbone(
      r, model, BackboneOptions(fallback).output_stride(mobilenet ? 16 : resnet_stride),
      {names, /*channels=*/!mobilenet, mobilenet ? std::vector<int64_t>{16}
                                                 : std::vector<int64_t>{8, 16}});
}

/// torchvision's models run on any size and resize their logits back; no padding applies.
void refuse_input_padding(ConfigReader& r, const std::string& model) {
  if (r.has("input_padding")) {
    throw ConfigError(r.where() + ": key " + r.path_of("input_padding") + ": " + model +
                      " takes any input size (its logits are resized to the input, as "
                      "torchvision's); it does not pad");
  }
}

/// "deeplabv3" (ASPP head) and "fcn" (torchvision's FCN head).
SegmentationRecipe parse_deeplab(ConfigReader& r, const std::string& name, int64_t num_classes,
                                 InputPadding /*padding: torchvision's models take any size*/) {
  refuse_input_padding(r, name);
  const bool aspp = name == "deeplabv3";
  DeepLabV3Options o(num_classes);
  o.backbone(read_dense_backbone(r, name, aspp ? "mobilenet_v3_large" : "resnet50", true))
      .head(aspp ? DenseHead::kASPP : DenseHead::kFCN)
      .aux(r.get<bool>("aux", o.aux()))
      .aux_weight(r.get<double>("aux_weight", o.aux_weight()));
  if (aspp) o.atrous_rates(r.get<std::vector<int64_t>>("atrous_rates", o.atrous_rates()));
  SegmentationRecipe recipe;
  recipe.build = maker<DeepLabV3Impl>(o);
  recipe.layers = [o] { return deeplab_layers(o); };
  recipe.load_backbone = backbone_loader(&DeepLabV3Impl::load_backbone_weights);
  return recipe;
}

SegmentationRecipe parse_deeplab_plus(ConfigReader& r, const std::string& name,
                                      int64_t num_classes, InputPadding /*padding*/) {
  refuse_input_padding(r, name);
  DeepLabV3PlusOptions o(num_classes);
  o.backbone(read_dense_backbone(r, name, "mobilenet_v3_large", true, /*resnet_stride=*/16))
      .atrous_rates(r.get<std::vector<int64_t>>("atrous_rates", o.atrous_rates()))
      .low_level_channels(r.get<int64_t>("low_level_channels", o.low_level_channels()))
      .decoder_channels(r.get<int64_t>("decoder_channels", o.decoder_channels()));
  SegmentationRecipe recipe;
  recipe.build = maker<DeepLabV3PlusImpl>(o);
  recipe.layers = [o] {
    auto layers = backbone_layers(o.backbone());
    layers.push_back(widest_aspp_branch(o.atrous_rates()));
    return layers;
  };
  recipe.load_backbone = backbone_loader(&DeepLabV3PlusImpl::load_backbone_weights);
  return recipe;
}

SegmentationRecipe parse_lraspp(ConfigReader& r, const std::string& name, int64_t num_classes,
                                InputPadding /*padding*/) {
  refuse_input_padding(r, name);
  LRASPPOptions o(num_classes);
  o.backbone(read_dense_backbone(r, name, "mobilenet_v3_large", false))
      .inter_channels(r.get<int64_t>("inter_channels", o.inter_channels()));
  SegmentationRecipe recipe;
  recipe.build = maker<LRASPPImpl>(o);
  recipe.layers = [o] { return mobilenet_v3_layers(o.backbone()); };
  recipe.load_backbone = backbone_loader(&LRASPPImpl::load_backbone_weights);
  return recipe;
}

core::Registry<SegmentationModelEntry>& registry() {
  static core::Registry<SegmentationModelEntry> r(
      "segmentation model", {{"unet", parse_unet},
                             {"fcn32s", parse_fcn},
                             {"fcn16s", parse_fcn},
                             {"fcn8s", parse_fcn},
                             {"fc_densenet56", parse_fc_densenet},
                             {"fc_densenet67", parse_fc_densenet},
                             {"fc_densenet103", parse_fc_densenet},
                             {"pspnet", parse_pspnet},
                             {"deeplabv3", parse_deeplab},
                             {"fcn", parse_deeplab},
                             {"deeplabv3plus", parse_deeplab_plus},
                             {"lraspp", parse_lraspp}});
  return r;
}

/// The model section read through its registry entry, unknown keys rejected.
struct Parsed {
  std::string name;
  std::string weights;
  std::string backbone_weights;
  SegmentationRecipe recipe;
};

Parsed parse(const nlohmann::json& config, int64_t num_classes, const std::string& where) {
  ConfigReader r(config, where, "model");
  Parsed m;
  m.name = r.required<std::string>("name");
  m.weights = r.get<std::string>("weights", "");
  m.backbone_weights = r.get<std::string>("backbone_weights", "");
  const InputPadding padding =
      parse_string(r, "input_padding", "reflect", input_padding_from_string);
  const SegmentationModelEntry* entry = registry().find(m.name);
  if (entry == nullptr) {
    throw ConfigError(where + ": key " + r.path_of("name") + ": unknown model \"" + m.name +
                      "\" (known: " + registry().known() + ")");
  }
  m.recipe = entry->parse(r, m.name, num_classes, padding);
  r.finish();
  if (!m.backbone_weights.empty() && !m.recipe.load_backbone) {
    throw ConfigError(where + ": key " + r.path_of("backbone_weights") + ": " + m.name +
                      " has no pretrained backbone (model.weights loads a whole-model file; "
                      "a U-Net with model.backbone \"resnet18\" ... has one)");
  }
  return m;
}

}  // namespace

void register_segmentation_model(SegmentationModelEntry entry) {
  if (!entry.parse) throw Error("register_segmentation_model: the entry has no parse function");
  registry().add(std::move(entry));
}

std::vector<std::string> segmentation_model_names() { return registry().names(); }

std::shared_ptr<SegmentationNetwork> as_segmentation_network(
    const std::shared_ptr<torch::nn::Module>& module) {
  auto network = std::dynamic_pointer_cast<SegmentationNetwork>(module);
  TORCH_CHECK(network != nullptr, "as_segmentation_network: ",
              module ? module->name() : std::string("null module"),
              " is not an ostrov segmentation network");
  return network;
}

SegmentationModel build(const nlohmann::json& model_config, int64_t num_classes,
                        const std::string& where) {
  const Parsed m = parse(model_config, num_classes, where);
  // Read the backbone file first: a wrong path fails before a large network is allocated.
  const io::StateDict backbone_state =
      m.backbone_weights.empty() ? io::StateDict{} : io::load_state_dict(m.backbone_weights);
  SegmentationModel out;
  out.name = m.name;
  try {
    out.module = m.recipe.build();
  } catch (const c10::Error& e) {
    throw ConfigError(where + ": model \"" + m.name + "\": " + e.what_without_backtrace());
  }
  out.network = as_segmentation_network(out.module);
  if (!m.backbone_weights.empty()) {
    m.recipe.load_backbone(*out.module, backbone_state, m.backbone_weights);
  }
  if (!m.weights.empty()) {
    io::load_weights(*out.module, m.weights, /*strict=*/true);
  }
  return out;
}

std::vector<nn::LayerSpec> receptive_field_layers(const nlohmann::json& model_config,
                                                  const std::string& where) {
  const Parsed m = parse(model_config, /*num_classes=*/2, where);
  try {
    return m.recipe.layers();
  } catch (const c10::Error& e) {
    throw ConfigError(where + ": model \"" + m.name + "\": " + e.what_without_backtrace());
  }
}

}  // namespace ostrov::models
