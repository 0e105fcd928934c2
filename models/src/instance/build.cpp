#include "ostrov/models/instance/build.h"

#include <c10/util/Exception.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/models/detection/build.h"
#include "../detection/ssd_keys.h"
#include "ostrov/ops/nms.h"

namespace ostrov::models {

namespace {

UNetOptions read_unet(io::ConfigReader& r, UNetOptions unet) {
  return unet.depth(r.get<int64_t>("depth", unet.depth()))
      .base_width(r.get<int64_t>("base_width", unet.base_width()))
      .batch_norm(r.get<bool>("batch_norm", unet.batch_norm()));
}

}  // namespace

std::vector<std::string> instance_model_names() {
  return {"deep_coloring", "deep_watershed", "mask_rcnn"};
}

std::vector<InstancePrediction> InstanceModel::predict(const at::Tensor& x) const {
  if (deep_coloring) return deep_coloring.ptr()->predict(x);
  if (deep_watershed) return deep_watershed.ptr()->predict(x);
  TORCH_CHECK(mask_rcnn, "InstanceModel: no model built");
  return mask_rcnn.ptr()->predict(x);
}

at::Tensor InstanceModel::class_agnostic(const InstancePrediction& p, double min_score) const {
  const int64_t k = p.masks.size(0);
  if (!mask_rcnn || k == 0) return at::arange(k, at::kLong);
  // The detector's NMS is per class, so one object can come back as a shirt and as a coat.
  const auto candidates = (p.scores >= min_score).nonzero().squeeze(1);
  return candidates.index({ops::nms(p.boxes.index({candidates}), p.scores.index({candidates}),
                                    count_nms_threshold)});
}

at::Tensor InstanceModel::counted_masks(const InstancePrediction& p) const {
  if (!mask_rcnn) return p.masks;
  return p.masks.index({class_agnostic(p, count_score).flip(0)});  // weakest first
}

InstanceModel build_instance(const nlohmann::json& model_config, int64_t num_classes,
                             int64_t image_size, const std::string& where) {
  io::ConfigReader r(model_config, where, "model");
  InstanceModel m;
  m.name = r.required<std::string>("name");
  const auto weights = r.get<std::string>("weights", "");
  try {
    if (m.name == "deep_coloring") {
      DeepColoringOptions o;
      o.num_colors(r.get<int64_t>("num_colors", o.num_colors()))
          .min_size(r.get<int64_t>("min_size", o.min_size()));
      o.unet(read_unet(r, o.unet()));
      r.finish();
      m.deep_coloring = DeepColoring(o);
      m.module = m.deep_coloring.ptr();
    } else if (m.name == "deep_watershed") {
      DeepWatershedOptions o;
      WatershedExtractOptions e;
      o.num_levels(r.get<int64_t>("num_levels", o.num_levels()))
          .level_step(r.get<double>("level_step", o.level_step()))
          .direction_to_energy(r.get<bool>("direction_to_energy", o.direction_to_energy()));
      e.cut_level(r.get<int64_t>("cut_level", e.cut_level()))
          .min_size(r.get<int64_t>("min_size", e.min_size()));
      o.extract(e).unet(read_unet(r, o.unet()));
      r.finish();
      m.deep_watershed = DeepWatershed(o);
      m.module = m.deep_watershed.ptr();
    } else if (m.name == "mask_rcnn") {
      if (num_classes < 2) {
        throw ConfigError(where + ": mask_rcnn needs num_classes >= 2 (background + 1), got " +
                          std::to_string(num_classes));
      }
      MaskRCNNOptions o(num_classes);
      o.image_size(detail::read_image_size(r, image_size))
          .backbone_channels(detail::read_backbone_channels(r, o.backbone_channels()))
          .feature_channels(r.get<int64_t>("feature_channels", o.feature_channels()))
          .roi_size(r.get<int64_t>("roi_size", o.roi_size()))
          .sampling_ratio(r.get<int64_t>("sampling_ratio", o.sampling_ratio()))
          .mask_channels(r.get<int64_t>("mask_channels", o.mask_channels()))
          .mask_convs(r.get<int64_t>("mask_convs", o.mask_convs()))
          .mask_threshold(r.get<double>("mask_threshold", o.mask_threshold()))
          .min_score(r.get<double>("min_score", o.min_score()));
      o.postprocess(detail::read_postprocess(r, o.postprocess()));
      m.count_score = r.get<double>("count_score", m.count_score);
      m.count_nms_threshold = r.get<double>("count_nms_threshold", m.count_nms_threshold);
      const auto backbone_weights = r.get<std::string>("backbone_weights", "");
      r.finish();
      m.mask_rcnn = MaskRCNN(o);
      if (!backbone_weights.empty()) {
        load_ssd_backbone_weights(*m.mask_rcnn->detector, io::load_state_dict(backbone_weights),
                                  backbone_weights);
      }
      m.module = m.mask_rcnn.ptr();
    } else {
      std::string known;
      for (const auto& n : instance_model_names()) known += (known.empty() ? "" : ", ") + n;
      throw ConfigError(where + ": key " + r.path_of("name") + ": unknown instance model \"" +
                        m.name + "\" (known: " + known + ")");
    }
  } catch (const c10::Error& e) {
    throw ConfigError(where + ": model: " + e.what_without_backtrace());
  }
  if (!weights.empty()) io::load_weights(*m.module, weights, /*strict=*/true);
  return m;
}

}  // namespace ostrov::models
