#pragma once
// Building instance-segmentation models from the `model` object of an ostrov JSON config (task
// "instance"), for the CLI and users' own programs; the instance counterpart of models/build.h
// and models/detection/build.h.
//
// Config keys (unknown keys are ostrov::ConfigError naming the key path, e.g. model.cut_levle):
//   name  "deep_coloring" | "deep_watershed" | "mask_rcnn" | "ssd_mask" | "unet_border"
//   weights  optional path: a whole-model state_dict (e.g. an ostrov checkpoint's weights),
//            loaded strictly after everything else
//   deep_coloring:  num_colors, min_size, depth, base_width, batch_norm
//   deep_watershed: num_levels, level_step, cut_level, min_size, direction_to_energy, depth,
//                   base_width, batch_norm
//   ssd_mask:      backbone ("resnet18", the only one), backbone_channels, image_size
//                   (default: the caller's), feature_channels, roi_size,
//                   sampling_ratio, mask_channels, mask_convs, mask_threshold, min_score,
//                   count_score, count_nms_threshold, score_threshold, nms_threshold, topk_candidates,
//                   detections_per_image, backbone_weights (torchvision resnet18 for the
//                   detector's backbone)
//   mask_rcnn:      the two-stage Mask R-CNN (models::FasterRCNN with masks): preset ("small":
//                   ResNet-18 FPN resized to the data's size, FasterRCNNOptions::
//                   maskrcnn_resnet18_fpn_small; "torchvision": maskrcnn_resnet50_fpn), then
//                   backbone (a ResNet), backbone_channels, fpn_channels, trainable_layers
//                   and frozen_batch_norm (5 / false, or 3 / true with backbone_weights, as
//                   torchvision), min_size, max_size, representation_size, mask_channels,
//                   rpn_batch_size_per_image, rpn_post_nms_top_n_train/_test,
//                   batch_size_per_image, score_threshold, nms_threshold,
//                   detections_per_image, mask_threshold, count_score, count_nms_threshold,
//                   backbone_weights (a torchvision ResNet for the body); images come
//                   normalised from ostrov's data pipeline, so the model only resizes them
//   unet_border:    target ("three_class" | "foreground"), border_width, min_size, depth,
//                   base_width, batch_norm
// Defaults are the options structs' (DeepColoringOptions, DeepWatershedOptions,
// SSDMaskOptions, UNetBorderOptions); count_score (0.5) is the score from which ssd_mask's detections count as
// objects in label images (SBD, |DiC|), after a class-agnostic NMS at count_nms_threshold
// (0.5), while AP takes every detection above min_score. Each name is an entry of a registry
// (register_instance_model adds one; docs/architecture.md "Models").

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/models/instance/deep_coloring.h"
#include "ostrov/models/instance/deep_watershed.h"
#include "ostrov/models/instance/ssd_mask.h"
#include "ostrov/models/instance/network.h"
#include "ostrov/models/instance/unet_border.h"

namespace ostrov::io {
class ConfigReader;
}

namespace ostrov::models {

/// A built instance model: one object seen as a Module and as an InstanceNetwork.
struct InstanceModel {
  /// The config's `name`.
  std::string name;
  /// The network as a module: parameters(), train()/eval(), to(device), state dicts.
  std::shared_ptr<torch::nn::Module> module;
  /// The same object's instance interface.
  std::shared_ptr<InstanceNetwork> network;

  /// The method's own predict(x): one InstancePrediction per image, at x's size.
  std::vector<InstancePrediction> predict(const at::Tensor& x) const { return network->predict(x); }
  /// InstanceNetwork::class_agnostic.
  at::Tensor class_agnostic(const InstancePrediction& p, double min_score) const {
    return network->class_agnostic(p, min_score);
  }
  /// InstanceNetwork::counted_masks.
  at::Tensor counted_masks(const InstancePrediction& p) const { return network->counted_masks(p); }
  /// The concrete network (e.g. `as<SSDMaskImpl>()`), nullptr when it is another kind.
  template <typename Impl>
  Impl* as() const {
    return dynamic_cast<Impl*>(module.get());
  }
};

/// What reading one instance model's config gives.
struct InstanceRecipe {
  /// Allocates the network (a torch::nn::Module that is an InstanceNetwork).
  std::function<std::shared_ptr<torch::nn::Module>()> build;
  /// Loads a torchvision classification state_dict (`model.backbone_weights`, read from
  /// `file`) into the built network's backbone; empty when the model has none.
  std::function<void(torch::nn::Module&, const io::StateDict&, const std::string& file)>
      load_backbone;
};

/// An instance model kind in the registry `build_instance` reads: `parse` reads the kind's own
/// keys from the `model` section (name, weights and backbone_weights are read before, unknown
/// keys rejected after) for `num_classes` classes (background included) and a square network
/// input of `image_size` (the data's), and returns its recipe.
struct InstanceModelEntry {
  /// Reads the kind's keys through `model` and returns its recipe (see the struct).
  using Parse = std::function<InstanceRecipe(io::ConfigReader& model, int64_t num_classes,
                                             int64_t image_size)>;
  /// The config's `name` that selects this kind (non-empty and unique in the registry).
  std::string name;
  /// Reads the kind's keys; required (register_instance_model throws ostrov::Error when empty).
  Parse parse;
};

/// Adds an instance model kind (`"name"` in configs); ostrov::Error when the name is taken.
void register_instance_model(InstanceModelEntry entry);

/// Builds the model named by `model_config["name"]` for `num_classes` classes (background
/// included; only ssd_mask uses them) and a square network input of `image_size` (ssd_mask's
/// default), then loads `backbone_weights` and `weights` if given. `where` names the config
/// file in errors: ConfigError for bad keys and values, IoError for weights files.
InstanceModel build_instance(const nlohmann::json& model_config, int64_t num_classes,
                             int64_t image_size, const std::string& where);

/// Validates `model_config` as `build_instance` does (ConfigError) without allocating it.
void check_instance_model(const nlohmann::json& model_config, int64_t num_classes,
                          int64_t image_size, const std::string& where);

/// The InstanceNetwork interface of a module built here (or of its clone()); throws
/// c10::Error when the module is not an instance network.
std::shared_ptr<InstanceNetwork> as_instance_network(
    const std::shared_ptr<torch::nn::Module>& module);

/// The names `build_instance` accepts (the registry's, in registration order).
std::vector<std::string> instance_model_names();

}  // namespace ostrov::models
