#include "ostrov/models/detection/faster_rcnn.h"

#include <regex>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "ostrov/core/error.h"
#include "ostrov/io/weights.h"
#include "../instance/detector_counting.h"

namespace ostrov::models {

FasterRCNNOptions FasterRCNNOptions::fasterrcnn_resnet50_fpn(int64_t num_classes) {
  return FasterRCNNOptions(num_classes);
}

FasterRCNNOptions FasterRCNNOptions::maskrcnn_resnet50_fpn(int64_t num_classes) {
  return FasterRCNNOptions(num_classes).masks(true);
}

FasterRCNNOptions FasterRCNNOptions::maskrcnn_resnet18_fpn_small(int64_t num_classes,
                                                                 int64_t image_size,
                                                                 int64_t channels) {
  FasterRCNNOptions o(num_classes);
  o.backbone(BackboneWithFPNOptions(BackboneOptions("resnet18")).out_channels(channels))
      .anchors(AnchorGeneratorOptions().sizes({{16}, {32}, {64}, {128}, {256}}))
      .rpn(RegionProposalNetworkOptions()
               .pre_nms_top_n_train(1000)
               .pre_nms_top_n_test(500)
               .post_nms_top_n_train(1000)
               .post_nms_top_n_test(500))
      .roi_heads(RoIHeadsOptions().batch_size_per_image(128))
      .transform(GeneralizedRCNNTransformOptions()
                     .min_size(std::vector<int64_t>{image_size})
                     .max_size(image_size))
      .representation_size(256)
      .masks(true)
      .mask_layers(std::vector<int64_t>(4, channels))
      .mask_dim_reduced(channels);
  return o;
}

FasterRCNNImpl::FasterRCNNImpl(FasterRCNNOptions options_)
    : options(std::move(options_)), transform(options.transform()) {
  reset();
}

void FasterRCNNImpl::reset() {
  TORCH_CHECK(options.num_classes() >= 2, "FasterRCNN: num_classes must be >= 2 (background "
              "included), got ", options.num_classes());
  transform = GeneralizedRCNNTransform(options.transform());
  backbone = register_module("backbone", BackboneWithFPN(options.backbone()));
  const int64_t c = backbone->out_channels();
  const auto levels = static_cast<int64_t>(backbone->strides().size());
  AnchorGenerator anchors(options.anchors());
  const auto per_location = anchors.num_anchors_per_location();
  TORCH_CHECK(static_cast<int64_t>(per_location.size()) == levels, "FasterRCNN: anchors for ",
              per_location.size(), " levels, the pyramid has ", levels);
  rpn = register_module(
      "rpn", RegionProposalNetwork(anchors, RPNHead(RPNHeadOptions(c, per_location[0])),
                                   options.rpn()));
  const int64_t box = options.box_roi_size();
  MultiScaleRoIAlign box_pool(MultiScaleRoIAlignOptions(box).sampling_ratio(options.sampling_ratio()));
  TwoMLPHead box_head(c * box * box, options.representation_size());
  FastRCNNPredictor box_predictor(options.representation_size(), options.num_classes());
  if (options.masks()) {
    TORCH_CHECK(!options.mask_layers().empty(), "FasterRCNN: mask_layers is empty");
    MultiScaleRoIAlign mask_pool(
        MultiScaleRoIAlignOptions(options.mask_roi_size()).sampling_ratio(options.sampling_ratio()));
    roi_heads = register_module(
        "roi_heads",
        RoIHeads(box_pool, box_head, box_predictor, mask_pool,
                 MaskRCNNHeads(c, options.mask_layers()),
                 MaskRCNNPredictor(options.mask_layers().back(), options.mask_dim_reduced(),
                                   options.num_classes()),
                 options.roi_heads()));
  } else {
    roi_heads = register_module("roi_heads",
                                RoIHeads(box_pool, box_head, box_predictor, options.roi_heads()));
  }
}

namespace {

std::string box_text(const at::Tensor& b) {
  const auto v = b.to(at::kCPU, at::kDouble);
  std::ostringstream s;
  s << "(" << v[0].item<double>() << ", " << v[1].item<double>() << ", " << v[2].item<double>()
    << ", " << v[3].item<double>() << ")";
  return s.str();
}

/// The checks torchvision's GeneralizedRCNN makes (and a few it does not), with the image and
/// box named.
void check_targets(const std::vector<at::Tensor>& images, const std::vector<RCNNTarget>& targets,
                   int64_t num_classes, bool masks) {
  if (targets.size() != images.size()) {
    throw Error("FasterRCNN: " + std::to_string(images.size()) + " images but " +
                std::to_string(targets.size()) + " targets");
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& t = targets[i];
    const std::string where = "FasterRCNN: target of image " + std::to_string(i) + ": ";
    if (!t.boxes.defined() || t.boxes.dim() != 2 || t.boxes.size(1) != 4 ||
        !at::isFloatingType(t.boxes.scalar_type())) {
      throw Error(where + "boxes must be a floating [G,4] tensor");
    }
    const int64_t g = t.boxes.size(0);
    if (!t.labels.defined() || t.labels.dim() != 1 || t.labels.size(0) != g) {
      throw Error(where + "labels must be [" + std::to_string(g) + "]");
    }
    if (g > 0) {
      const auto b = t.boxes.to(at::kCPU);
      const auto bad = (b.select(1, 2) <= b.select(1, 0))
                           .logical_or(b.select(1, 3) <= b.select(1, 1))
                           .logical_or(b.isfinite().all(1).logical_not());
      if (bad.any().item<bool>()) {
        const auto j = at::where(bad)[0][0].item<int64_t>();
        throw Error(where + "box " + std::to_string(j) + " " + box_text(b[j]) +
                    " has zero or negative width or height (x1, y1, x2, y2)");
      }
      const auto l = t.labels.to(at::kCPU, at::kLong);
      const auto wrong = (l < 1).logical_or(l >= num_classes);
      if (wrong.any().item<bool>()) {
        const auto j = at::where(wrong)[0][0].item<int64_t>();
        throw Error(where + "label " + std::to_string(l[j].item<int64_t>()) + " of box " +
                    std::to_string(j) + " is outside [1, " + std::to_string(num_classes) + ")");
      }
    }
    if (masks) {
      if (!t.masks.defined() || t.masks.dim() != 3 || t.masks.size(0) != g ||
          t.masks.size(1) != images[i].size(1) || t.masks.size(2) != images[i].size(2)) {
        std::ostringstream s;
        s << where << "masks must be [" << g << "," << images[i].size(1) << ","
          << images[i].size(2) << "] (one per box, at the image's size), got "
          << (t.masks.defined() ? t.masks.sizes() : c10::IntArrayRef{});
        throw Error(s.str());
      }
    }
  }
}

}  // namespace

FasterRCNNOutput FasterRCNNImpl::forward(const std::vector<at::Tensor>& images,
                                         const std::vector<RCNNTarget>& targets_in) {
  const bool training = is_training();
  if (training && targets_in.empty()) {
    throw Error("FasterRCNN: training mode needs targets (call eval() for detections)");
  }
  std::vector<RCNNTarget> targets;
  if (!targets_in.empty()) {
    check_targets(images, targets_in, options.num_classes(), options.masks());
    targets = targets_in;  // resized below: the caller's stay as they are
  }
  std::vector<ImageSize> original;
  for (const auto& image : images) original.push_back({image.size(-2), image.size(-1)});
  const auto batch = transform(images, training, targets.empty() ? nullptr : &targets);
  const auto pyramid = backbone->forward(batch.tensors);
  std::vector<at::Tensor> all_levels, roi_levels;
  for (const auto& item : pyramid) {
    all_levels.push_back(item.value());
    if (item.key() != "pool") roi_levels.push_back(item.value());
  }
  auto proposals = rpn->forward(batch, all_levels, targets);
  auto heads = roi_heads->forward(roi_levels, proposals.boxes, batch.image_sizes, targets);
  FasterRCNNOutput out;
  out.losses = std::move(proposals.losses);
  for (auto& item : heads.losses) out.losses[item.first] = item.second;
  if (!training) {
    out.detections = std::move(heads.detections);
    transform.postprocess(out.detections, batch.image_sizes, original);
  }
  return out;
}

std::vector<RCNNDetection> FasterRCNNImpl::detect(const std::vector<at::Tensor>& images) {
  TORCH_CHECK(!is_training(), "FasterRCNN::detect: call eval() first");
  return forward(images).detections;
}

std::vector<InstancePrediction> FasterRCNNImpl::predict(const at::Tensor& x) {
  TORCH_CHECK(options.masks(), "FasterRCNN::predict: the model has no mask branch");
  TORCH_CHECK(x.dim() == 4, "FasterRCNN::predict: x should be [N,3,H,W], got ", x.sizes());
  std::vector<at::Tensor> images;
  for (int64_t i = 0; i < x.size(0); ++i) images.push_back(x[i]);
  return instances(detect(images));
}

std::vector<InstancePrediction> FasterRCNNImpl::instances(
    const std::vector<RCNNDetection>& detections) const {
  std::vector<InstancePrediction> out;
  for (const auto& d : detections) {
    InstancePrediction p;
    p.masks = d.masks.squeeze(1).gt(options.mask_threshold()).to(at::kByte);
    p.scores = d.scores;
    p.labels = d.labels;
    p.boxes = d.boxes;
    out.push_back(std::move(p));
  }
  return out;
}

at::Tensor FasterRCNNImpl::class_agnostic(const InstancePrediction& p, double min_score) const {
  return detail::class_agnostic_detections(p, min_score, options.count_nms_threshold());
}

at::Tensor FasterRCNNImpl::counted_masks(const InstancePrediction& p) const {
  return detail::counted_detection_masks(p, options.count_score(), options.count_nms_threshold());
}

void FasterRCNNImpl::load_torchvision(const io::StateDict& state, const std::string& source) {
  static const std::regex mask_fcn(R"(^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$)");
  io::StateDict renamed;
  for (const auto& item : state) {
    std::string key = item.key();
    std::smatch m;
    if (key == "rpn.head.conv.weight" || key == "rpn.head.conv.bias") {
      key = "rpn.head.conv.0.0." + key.substr(std::string("rpn.head.conv.").size());
    } else if (std::regex_match(key, m, mask_fcn)) {
      key = "roi_heads.mask_head." + std::to_string(std::stoi(m[1]) - 1) + ".0." + m[2].str();
    }
    renamed.insert(key, item.value());
  }
  // FrozenBatchNorm2d has no num_batches_tracked: keep the module's own counters.
  for (const auto& item : io::module_state_dict(*this)) {
    const auto& key = item.key();
    const std::string suffix = "num_batches_tracked";
    if (key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        renamed.find(key) == nullptr) {
      renamed.insert(key, item.value());
    }
  }
  io::load_state_dict_into(*this, renamed, true, source);
}

}  // namespace ostrov::models
