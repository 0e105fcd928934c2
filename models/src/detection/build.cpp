#include "ostrov/models/detection/build.h"

#include <utility>

#include <c10/util/Exception.h>

#include "ostrov/core/error.h"
#include "ostrov/core/registry.h"
#include "ostrov/io/json.h"
#include "ostrov/io/weights.h"
#include "../backbone_keys.h"
#include "postprocess.h"
#include "ssd_keys.h"

namespace ostrov::models {

namespace detail {

SSDPostprocessOptions read_postprocess(io::ConfigReader& r, SSDPostprocessOptions post) {
  post.score_threshold(r.get<double>("score_threshold", post.score_threshold()))
      .nms_threshold(r.get<double>("nms_threshold", post.nms_threshold()))
      .topk_candidates(r.get<int64_t>("topk_candidates", post.topk_candidates()))
      .detections_per_image(r.get<int64_t>("detections_per_image", post.detections_per_image()));
  if (!(post.score_threshold() >= 0.0 && post.score_threshold() < 1.0)) {
    throw ConfigError(r.where() + ": key " + r.path_of("score_threshold") + " must be in [0,1)");
  }
  if (!(post.nms_threshold() > 0.0 && post.nms_threshold() <= 1.0)) {
    throw ConfigError(r.where() + ": key " + r.path_of("nms_threshold") + " must be in (0,1]");
  }
  if (post.topk_candidates() <= 0 || post.detections_per_image() <= 0) {
    throw ConfigError(r.where() + ": keys " + r.path_of("topk_candidates") + " and " +
                      r.path_of("detections_per_image") + " must be positive");
  }
  return post;
}

int64_t read_image_size(io::ConfigReader& r, int64_t fallback) {
  const auto size = r.get<int64_t>("image_size", fallback);
  if (size < 32) {
    throw ConfigError(r.where() + ": key " + r.path_of("image_size") + " must be >= 32, got " +
                      std::to_string(size));
  }
  return size;
}

FasterRCNNOptions read_two_stage(io::ConfigReader& r, const std::string& name,
                                 int64_t num_classes, int64_t image_size, bool masks) {
  if (num_classes < 2) {
    throw ConfigError(r.where() + ": " + name + " needs num_classes >= 2 (background + 1), got " +
                      std::to_string(num_classes));
  }
  const auto preset = r.get<std::string>("preset", "small");
  FasterRCNNOptions o(num_classes);
  if (preset == "small") {
    o = FasterRCNNOptions::maskrcnn_resnet18_fpn_small(num_classes, image_size).masks(masks);
  } else if (preset == "torchvision") {
    o = masks ? FasterRCNNOptions::maskrcnn_resnet50_fpn(num_classes)
              : FasterRCNNOptions::fasterrcnn_resnet50_fpn(num_classes);
  } else {
    throw ConfigError(r.where() + ": key " + r.path_of("preset") + ": \"" + preset +
                      "\" is not a " + name + " preset (small, torchvision)");
  }
  auto backbone = o.backbone();
  backbone.backbone(read_backbone(r, name, backbone.backbone(), {resnet_names(), true, {}}));
  // As torchvision: from ImageNet weights, the body's batch norm is frozen and only layer2 to
  // layer4 train (trainable_backbone_layers 3); from scratch, everything trains.
  const bool pretrained = !r.get<std::string>("backbone_weights", "").empty();
  backbone.out_channels(r.get<int64_t>("fpn_channels", backbone.out_channels()))
      .trainable_layers(r.get<int64_t>("trainable_layers", pretrained ? 3 : 5))
      .frozen_batch_norm(r.get<bool>("frozen_batch_norm", pretrained));
  o.backbone(backbone);
  auto transform = o.transform();
  const auto min_size = r.get<int64_t>("min_size", transform.min_size().back());
  const auto max_size = r.get<int64_t>("max_size", transform.max_size());
  if (min_size < 32 || max_size < min_size) {
    throw ConfigError(r.where() + ": keys " + r.path_of("min_size") + " and " +
                      r.path_of("max_size") + " need 32 <= min_size <= max_size, got " +
                      std::to_string(min_size) + " and " + std::to_string(max_size));
  }
  // ostrov's data pipeline normalises with ImageNet's statistics, as torchvision's transform.
  o.transform(transform.min_size(std::vector<int64_t>{min_size}).max_size(max_size).normalize(false));
  o.representation_size(r.get<int64_t>("representation_size", o.representation_size()));
  const int64_t mask_channels =
      masks ? r.get<int64_t>("mask_channels", o.mask_dim_reduced()) : o.mask_dim_reduced();
  if (masks) {
    o.mask_layers(std::vector<int64_t>(o.mask_layers().size(), mask_channels))
        .mask_dim_reduced(mask_channels);
  }
  auto rpn = o.rpn();
  rpn.batch_size_per_image(r.get<int64_t>("rpn_batch_size_per_image", rpn.batch_size_per_image()))
      .post_nms_top_n_train(r.get<int64_t>("rpn_post_nms_top_n_train", rpn.post_nms_top_n_train()))
      .post_nms_top_n_test(r.get<int64_t>("rpn_post_nms_top_n_test", rpn.post_nms_top_n_test()));
  o.rpn(rpn);
  auto heads = o.roi_heads();
  heads.batch_size_per_image(r.get<int64_t>("batch_size_per_image", heads.batch_size_per_image()))
      .score_thresh(r.get<double>("score_threshold", heads.score_thresh()))
      .nms_thresh(r.get<double>("nms_threshold", heads.nms_thresh()))
      .detections_per_img(r.get<int64_t>("detections_per_image", heads.detections_per_img()));
  o.roi_heads(heads);
  std::vector<std::pair<std::string, int64_t>> positive = {
      {"fpn_channels", o.backbone().out_channels()},
      {"representation_size", o.representation_size()}};
  if (masks) positive.emplace_back("mask_channels", mask_channels);
  positive.insert(positive.end(), {
      {"rpn_batch_size_per_image", rpn.batch_size_per_image()},
      {"rpn_post_nms_top_n_train", rpn.post_nms_top_n_train()},
      {"rpn_post_nms_top_n_test", rpn.post_nms_top_n_test()},
      {"batch_size_per_image", heads.batch_size_per_image()},
      {"detections_per_image", heads.detections_per_img()}});
  std::vector<std::pair<std::string, double>> unit = {{"score_threshold", heads.score_thresh()},
                                                      {"nms_threshold", heads.nms_thresh()}};
  if (masks) {
    o.mask_threshold(r.get<double>("mask_threshold", o.mask_threshold()))
        .count_score(r.get<double>("count_score", o.count_score()))
        .count_nms_threshold(r.get<double>("count_nms_threshold", o.count_nms_threshold()));
    unit.emplace_back("mask_threshold", o.mask_threshold());
    unit.emplace_back("count_score", o.count_score());
    unit.emplace_back("count_nms_threshold", o.count_nms_threshold());
  }
  for (const auto& [key, value] : positive) {
    if (value < 1) {
      throw ConfigError(r.where() + ": key " + r.path_of(key) + " must be >= 1, got " +
                        std::to_string(value));
    }
  }
  for (const auto& [key, value] : unit) {
    if (!(value >= 0.0 && value <= 1.0)) {
      throw ConfigError(r.where() + ": key " + r.path_of(key) + " must be in [0,1], got " +
                        std::to_string(value));
    }
  }
  return o;
}

}  // namespace detail

namespace {

SSDOptions parse_ssd300(io::ConfigReader& r, int64_t num_classes) {
  detail::read_backbone(r, "ssd300_vgg16", BackboneOptions("vgg16"), {{"vgg16"}, false, {}});
  const auto size = r.get<int64_t>("image_size", 300);
  if (size != 300) {
    throw ConfigError(r.where() + ": key " + r.path_of("image_size") +
                      ": ssd300_vgg16's default boxes are made for 300x300, got " +
                      std::to_string(size) + " (use ssd_light for other sizes)");
  }
  return SSDOptions::ssd300_vgg16(num_classes);
}

SSDOptions parse_ssd_light(io::ConfigReader& r, int64_t num_classes) {
  auto options = SSDOptions::light(num_classes, detail::read_image_size(r, 256));
  options.backbone_channels(detail::read_backbone(r, "ssd_light", BackboneOptions("resnet18"),
                                                  {{"resnet18"}, true, {}})
                                .channels());
  const auto extra = r.get<int64_t>("num_extra", 3);
  if (extra != 3) {
    throw ConfigError(r.where() + ": key " + r.path_of("num_extra") +
                      ": ssd_light's default boxes are defined for 3 extra stages, got " +
                      std::to_string(extra));
  }
  return options;
}

SSDOptions parse_ssdlite320(io::ConfigReader& r, int64_t num_classes) {
  detail::read_backbone(r, "ssdlite320_mobilenet_v3_large", BackboneOptions("mobilenet_v3_large"),
                        {{"mobilenet_v3_large"}, false, {}});
  auto options = SSDOptions::ssdlite320_mobilenet_v3_large(num_classes);
  // As torchvision: the half-width last stage unless ImageNet backbone weights are given.
  const bool imagenet = !r.get<std::string>("backbone_weights", "").empty();
  return options.image_size(detail::read_image_size(r, 320))
      .reduced_tail(r.get<bool>("reduced_tail", !imagenet));
}

core::Registry<DetectionModelEntry>& registry() {
  static core::Registry<DetectionModelEntry> r(
      "detection model", {{"ssd300_vgg16", parse_ssd300},
                          {"ssd_light", parse_ssd_light},
                          {"ssdlite320_mobilenet_v3_large", parse_ssdlite320}});
  return r;
}

struct ParsedDetector {
  SSDOptions options{2};
  std::string weights;
  std::string backbone_weights;
};

ParsedDetector parse(const nlohmann::json& config, int64_t num_classes, const std::string& where) {
  io::ConfigReader r(config, where, "model");
  ParsedDetector p;
  const auto name = r.required<std::string>("name");
  if (num_classes < 2) {
    throw ConfigError(where + ": a detector needs num_classes >= 2 (background + 1), got " +
                      std::to_string(num_classes));
  }
  const DetectionModelEntry* entry = registry().find(name);
  if (entry == nullptr) {
    throw ConfigError(where + ": key " + r.path_of("name") + ": unknown detector \"" + name +
                      "\" (known: " + registry().known() + ")");
  }
  p.options = entry->parse(r, num_classes);
  p.options.postprocess(detail::read_postprocess(r, p.options.postprocess()));
  p.weights = r.get<std::string>("weights", "");
  p.backbone_weights = r.get<std::string>("backbone_weights", "");
  r.finish();
  return p;
}

std::string join(const std::vector<std::string>& names, size_t limit = 8) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < limit; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > limit) out += ", ... (" + std::to_string(names.size()) + " in all)";
  return out;
}

}  // namespace

namespace {

struct ParsedYOLO {
  YOLOOptions options{2};
  std::string weights;
  std::string backbone_weights;
};

ParsedYOLO parse_yolo(const nlohmann::json& config, int64_t num_classes, const std::string& where) {
  io::ConfigReader r(config, where, "model");
  const auto name = r.required<std::string>("name");
  if (name != "yolo") {
    throw ConfigError(where + ": key " + r.path_of("name") + ": build_yolo builds \"yolo\", got \"" +
                      name + "\"");
  }
  if (num_classes < 2) {
    throw ConfigError(where + ": a detector needs num_classes >= 2 (background + 1), got " +
                      std::to_string(num_classes));
  }
  ParsedYOLO p;
  auto& o = p.options;
  o.num_classes(num_classes);
  o.backbone(detail::read_backbone(r, "yolo", o.backbone(),
                                   {detail::yolo_backbone_names(), true, {}}));
  o.image_size(detail::read_image_size(r, o.image_size()));
  auto positive = [&](const char* key, int64_t fallback) {
    const auto value = r.get<int64_t>(key, fallback);
    if (value < 1) {
      throw ConfigError(where + ": key " + r.path_of(key) + " must be >= 1, got " +
                        std::to_string(value));
    }
    return value;
  };
  o.grid(positive("grid", o.grid()));
  o.boxes_per_cell(positive("boxes_per_cell", o.boxes_per_cell()));
  o.head_channels(positive("head_channels", o.head_channels()));
  o.postprocess(detail::read_postprocess(r, o.postprocess()));
  p.weights = r.get<std::string>("weights", "");
  p.backbone_weights = r.get<std::string>("backbone_weights", "");
  r.finish();
  return p;
}

// The last steps of build_detector and build_yolo for a parsed config (options, weights,
// backbone_weights): the backbone file is read first, so a wrong path fails before the
// network is allocated; a c10::Error of the constructor becomes a ConfigError; then the
// backbone's and the whole model's weights are loaded.
template <typename Holder, typename Parsed, typename LoadBackbone>
Holder allocate_and_load(const Parsed& p, const std::string& where, LoadBackbone load_backbone) {
  const io::StateDict backbone_state =
      p.backbone_weights.empty() ? io::StateDict{} : io::load_state_dict(p.backbone_weights);
  Holder net{nullptr};
  try {
    net = Holder(p.options);
  } catch (const c10::Error& e) {
    throw ConfigError(where + ": model: " + e.what_without_backtrace());
  }
  if (!p.backbone_weights.empty()) load_backbone(*net, backbone_state, p.backbone_weights);
  if (!p.weights.empty()) io::load_weights(*net, p.weights, /*strict=*/true);
  return net;
}

}  // namespace

SSDOptions detector_options(const nlohmann::json& model_config, int64_t num_classes,
                            const std::string& where) {
  return parse(model_config, num_classes, where).options;
}

void load_ssd_backbone_weights(SSDImpl& ssd, const io::StateDict& state, const std::string& source) {
  const SSDBackbone& kind = ssd.maps_backbone();
  io::StateDict renamed;
  for (const auto& item : state) {
    const std::string key = kind.key_from_classifier(item.key());
    if (!key.empty()) renamed.insert(key, item.value());
  }
  auto& backbone = *ssd.backbone;
  const auto diff = io::compare_state_dict(backbone, renamed);
  // Only the layers the classifier never had may be missing (kind.ssd_only).
  std::vector<std::string> missing;
  for (const auto& key : diff.missing) {
    if (!kind.ssd_only(key)) missing.push_back(key);
  }
  if (!missing.empty() || !diff.unexpected.empty() || !diff.mismatched.empty()) {
    std::string message = source + ": not a torchvision " + kind.classifier_name() +
                          " checkpoint for the SSD backbone";
    if (!missing.empty()) message += "; missing: " + join(missing);
    if (!diff.unexpected.empty()) message += "; unexpected: " + join(diff.unexpected);
    if (!diff.mismatched.empty()) message += "; wrong shape: " + join(diff.mismatched);
    throw IoError(message);
  }
  io::load_state_dict_into(backbone, renamed, /*strict=*/false, source);
}

SSD build_detector(const nlohmann::json& model_config, int64_t num_classes,
                   const std::string& where) {
  const ParsedDetector p = parse(model_config, num_classes, where);
  return allocate_and_load<SSD>(p, where, [](SSDImpl& net, const io::StateDict& state,
                                             const std::string& file) {
    load_ssd_backbone_weights(net, state, file);
  });
}

std::vector<nn::LayerSpec> detector_receptive_field_layers(const nlohmann::json& model_config,
                                                           const std::string& where) {
  if (model_config.is_object() && model_config.contains("name") &&
      model_config["name"] == "yolo") {
    // The backbone to its last stage, then the head's 1x1 and 3x3 convolutions.
    const auto options = parse_yolo(model_config, /*num_classes=*/2, where).options;
    auto layers = detail::backbone_layers(options.backbone());
    layers.push_back(detail::conv("head.0", 1));
    layers.push_back(detail::conv("head.1", 3, 1, 1));
    return layers;
  }
  if (model_config.is_object() && model_config.contains("name") &&
      model_config["name"] == "faster_rcnn") {
    // The body to layer4, the FPN's 3x3 output convolution of that level and the RPN's 3x3
    // convolution: what one anchor of the coarsest convolutional level sees.
    const auto config = faster_rcnn_config(model_config, /*num_classes=*/2, where);
    auto layers = detail::backbone_layers(config.options.backbone().backbone());
    layers.push_back(detail::conv("backbone.fpn.layer_blocks.3.0", 3, 1, 1));
    layers.push_back(detail::conv("rpn.head.conv.0.0", 3, 1, 1));
    return layers;
  }
  const ParsedDetector p = parse(model_config, /*num_classes=*/2, where);
  try {
    return ssd_receptive_field_layers(p.options);
  } catch (const c10::Error& e) {
    throw ConfigError(where + ": model: " + e.what_without_backtrace());
  }
}

YOLOOptions yolo_options(const nlohmann::json& model_config, int64_t num_classes,
                         const std::string& where) {
  return parse_yolo(model_config, num_classes, where).options;
}

YOLO build_yolo(const nlohmann::json& model_config, int64_t num_classes, const std::string& where) {
  const ParsedYOLO p = parse_yolo(model_config, num_classes, where);
  return allocate_and_load<YOLO>(p, where, [](YOLOImpl& net, const io::StateDict& state,
                                              const std::string& file) {
    net.load_backbone_weights(state, file);
  });
}

namespace {

struct ParsedFasterRCNN {
  FasterRCNNOptions options;
  int64_t image_size;
  std::string weights;
  std::string backbone_weights;
};

ParsedFasterRCNN parse_faster_rcnn(const nlohmann::json& model_config, int64_t num_classes,
                                   const std::string& where) {
  io::ConfigReader r(model_config, where, "model");
  const auto name = r.required<std::string>("name");
  if (name != "faster_rcnn") {
    throw ConfigError(where + ": key " + r.path_of("name") + ": \"" + name +
                      "\" is not faster_rcnn");
  }
  const bool torchvision = r.get<std::string>("preset", "small") == "torchvision";
  const int64_t image_size = detail::read_image_size(r, torchvision ? 800 : 320);
  ParsedFasterRCNN p{
      detail::read_two_stage(r, name, num_classes, image_size, /*masks=*/false), image_size,
      r.get<std::string>("weights", ""), r.get<std::string>("backbone_weights", "")};
  r.finish();
  return p;
}

}  // namespace

FasterRCNNConfig faster_rcnn_config(const nlohmann::json& model_config, int64_t num_classes,
                                    const std::string& where) {
  const ParsedFasterRCNN p = parse_faster_rcnn(model_config, num_classes, where);
  return {p.options, p.image_size};
}

FasterRCNN build_faster_rcnn(const nlohmann::json& model_config, int64_t num_classes,
                             const std::string& where) {
  const ParsedFasterRCNN p = parse_faster_rcnn(model_config, num_classes, where);
  return allocate_and_load<FasterRCNN>(p, where, [](FasterRCNNImpl& net,
                                                    const io::StateDict& state,
                                                    const std::string& file) {
    net.backbone->load_backbone(state, file);
  });
}

void register_detection_model(DetectionModelEntry entry) {
  if (!entry.parse) throw Error("register_detection_model: the entry has no parse function");
  registry().add(std::move(entry));
}

std::vector<std::string> detection_model_names() { return registry().names(); }

}  // namespace ostrov::models
