#include "ostrov/models/instance/build.h"

#include <utility>

#include <c10/util/Exception.h>

#include "ostrov/core/error.h"
#include "ostrov/core/registry.h"
#include "ostrov/io/json.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/detection/build.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "../backbone_keys.h"
#include "../maker.h"
#include "../detection/ssd_keys.h"

namespace ostrov::models {

namespace {

UNetOptions read_unet(io::ConfigReader& r, UNetOptions unet) {
  return unet.depth(r.get<int64_t>("depth", unet.depth()))
      .base_width(r.get<int64_t>("base_width", unet.base_width()))
      .batch_norm(r.get<bool>("batch_norm", unet.batch_norm()));
}

using detail::maker;

InstanceRecipe parse_deep_coloring(io::ConfigReader& r, int64_t, int64_t) {
  DeepColoringOptions o;
  o.num_colors(r.get<int64_t>("num_colors", o.num_colors()))
      .min_size(r.get<int64_t>("min_size", o.min_size()));
  o.unet(read_unet(r, o.unet()));
  return {maker<DeepColoringImpl>(o), {}};
}

InstanceRecipe parse_deep_watershed(io::ConfigReader& r, int64_t, int64_t) {
  DeepWatershedOptions o;
  WatershedExtractOptions e;
  o.num_levels(r.get<int64_t>("num_levels", o.num_levels()))
      .level_step(r.get<double>("level_step", o.level_step()))
      .direction_to_energy(r.get<bool>("direction_to_energy", o.direction_to_energy()));
  e.cut_level(r.get<int64_t>("cut_level", e.cut_level()))
      .min_size(r.get<int64_t>("min_size", e.min_size()));
  o.extract(e).unet(read_unet(r, o.unet()));
  return {maker<DeepWatershedImpl>(o), {}};
}

InstanceRecipe parse_ssd_mask(io::ConfigReader& r, int64_t num_classes, int64_t image_size) {
  if (num_classes < 2) {
    throw ConfigError(r.where() + ": ssd_mask needs num_classes >= 2 (background + 1), got " +
                      std::to_string(num_classes));
  }
  SSDMaskOptions o(num_classes);
  o.image_size(detail::read_image_size(r, image_size))
      .backbone_channels(detail::read_backbone(r, "ssd_mask", BackboneOptions("resnet18"),
                                               {{"resnet18"}, true, {}})
                             .channels())
      .feature_channels(r.get<int64_t>("feature_channels", o.feature_channels()))
      .roi_size(r.get<int64_t>("roi_size", o.roi_size()))
      .sampling_ratio(r.get<int64_t>("sampling_ratio", o.sampling_ratio()))
      .mask_channels(r.get<int64_t>("mask_channels", o.mask_channels()))
      .mask_convs(r.get<int64_t>("mask_convs", o.mask_convs()))
      .mask_threshold(r.get<double>("mask_threshold", o.mask_threshold()))
      .min_score(r.get<double>("min_score", o.min_score()))
      .count_score(r.get<double>("count_score", o.count_score()))
      .count_nms_threshold(r.get<double>("count_nms_threshold", o.count_nms_threshold()));
  o.postprocess(detail::read_postprocess(r, o.postprocess()));
  InstanceRecipe recipe{maker<SSDMaskImpl>(o), {}};
  recipe.load_backbone = [](torch::nn::Module& module, const io::StateDict& state,
                            const std::string& file) {
    load_ssd_backbone_weights(*dynamic_cast<SSDMaskImpl&>(module).detector, state, file);
  };
  return recipe;
}

/// Two-stage Mask R-CNN (FasterRCNN with masks): detail::read_two_stage's keys.
InstanceRecipe parse_two_stage(io::ConfigReader& r, int64_t num_classes, int64_t image_size) {
  const FasterRCNNOptions o =
      detail::read_two_stage(r, "mask_rcnn", num_classes, image_size, /*masks=*/true);
  InstanceRecipe recipe{maker<FasterRCNNImpl>(o), {}};
  recipe.load_backbone = [](torch::nn::Module& module, const io::StateDict& state,
                            const std::string& file) {
    dynamic_cast<FasterRCNNImpl&>(module).backbone->load_backbone(state, file);
  };
  return recipe;
}

InstanceRecipe parse_unet_border(io::ConfigReader& r, int64_t, int64_t) {
  UNetBorderOptions o;
  const auto target = r.get<std::string>("target", "three_class");
  if (target == "three_class") {
    o.target(UNetBorderTarget::kThreeClass);
  } else if (target == "foreground") {
    o.target(UNetBorderTarget::kForeground);
  } else {
    throw ConfigError(r.where() + ": key " + r.path_of("target") + ": \"" + target +
                      "\" is not a unet_border target (three_class, foreground)");
  }
  o.border_width(r.get<int64_t>("border_width", o.border_width()))
      .min_size(r.get<int64_t>("min_size", o.min_size()));
  o.unet(read_unet(r, o.unet()));
  return {maker<UNetBorderImpl>(o), {}};
}

core::Registry<InstanceModelEntry>& registry() {
  static core::Registry<InstanceModelEntry> r("instance model",
                                              {{"deep_coloring", parse_deep_coloring},
                                               {"deep_watershed", parse_deep_watershed},
                                               {"mask_rcnn", parse_two_stage},
                                               {"ssd_mask", parse_ssd_mask},
                                               {"unet_border", parse_unet_border}});
  return r;
}

/// The model section read through its registry entry, unknown keys rejected.
struct Parsed {
  std::string name;
  std::string weights;
  std::string backbone_weights;
  InstanceRecipe recipe;
};

Parsed parse(const nlohmann::json& config, int64_t num_classes, int64_t image_size,
             const std::string& where) {
  io::ConfigReader r(config, where, "model");
  Parsed m;
  m.name = r.required<std::string>("name");
  m.weights = r.get<std::string>("weights", "");
  m.backbone_weights = r.get<std::string>("backbone_weights", "");
  const InstanceModelEntry* entry = registry().find(m.name);
  if (entry == nullptr) {
    throw ConfigError(where + ": key " + r.path_of("name") + ": unknown instance model \"" +
                      m.name + "\" (known: " + registry().known() + ")");
  }
  m.recipe = entry->parse(r, num_classes, image_size);
  r.finish();
  if (!m.backbone_weights.empty() && !m.recipe.load_backbone) {
    throw ConfigError(where + ": key " + r.path_of("backbone_weights") + ": " + m.name +
                      " has no pretrained backbone (model.weights loads a whole-model file)");
  }
  return m;
}

}  // namespace

void register_instance_model(InstanceModelEntry entry) {
  if (!entry.parse) throw Error("register_instance_model: the entry has no parse function");
  registry().add(std::move(entry));
}

std::vector<std::string> instance_model_names() { return registry().names(); }

std::shared_ptr<InstanceNetwork> as_instance_network(
    const std::shared_ptr<torch::nn::Module>& module) {
  auto network = std::dynamic_pointer_cast<InstanceNetwork>(module);
  TORCH_CHECK(network != nullptr, "as_instance_network: ",
              module ? module->name() : std::string("null module"),
              " is not an ostrov instance network");
  return network;
}

void check_instance_model(const nlohmann::json& model_config, int64_t num_classes,
                          int64_t image_size, const std::string& where) {
  parse(model_config, num_classes, image_size, where);
}

InstanceModel build_instance(const nlohmann::json& model_config, int64_t num_classes,
                             int64_t image_size, const std::string& where) {
  const Parsed m = parse(model_config, num_classes, image_size, where);
  // Read the backbone file first: a wrong path fails before the network is allocated.
  const io::StateDict backbone_state =
      m.backbone_weights.empty() ? io::StateDict{} : io::load_state_dict(m.backbone_weights);
  InstanceModel out;
  out.name = m.name;
  try {
    out.module = m.recipe.build();
  } catch (const c10::Error& e) {
    throw ConfigError(where + ": model \"" + m.name + "\": " + e.what_without_backtrace());
  }
  out.network = as_instance_network(out.module);
  if (!m.backbone_weights.empty()) {
    m.recipe.load_backbone(*out.module, backbone_state, m.backbone_weights);
  }
  if (!m.weights.empty()) io::load_weights(*out.module, m.weights, /*strict=*/true);
  return out;
}

}  // namespace ostrov::models
