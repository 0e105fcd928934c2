#include "ostrov/tasks/objectives.h"

#include <mutex>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"
#include "ostrov/losses/build.h"
#include "ostrov/losses/mask.h"

namespace ostrov::tasks {

namespace {

// A weight of the loss section: `key` or `fallback`, ConfigError naming the key when < 0.
double non_negative(io::ConfigReader& loss, const char* key, double fallback) {
  const double value = loss.get<double>(key, fallback);
  if (!(value >= 0.0)) {
    throw ConfigError(loss.where() + ": key " + loss.path_of(key) + " must be >= 0, got " +
                      std::to_string(value));
  }
  return value;
}

}  // namespace

SSDObjective::SSDObjective(io::ConfigReader& loss, int64_t num_classes) {
  const auto name = loss.get<std::string>("name", "multibox");
  if (name != "multibox") {
    throw ConfigError(loss.where() + ": key " + loss.path_of("name") +
                      " must be \"multibox\" for an SSD detector, got \"" + name + "\"");
  }
  multibox_ = losses::read_multibox_options(loss);
  targets_.num_classes(num_classes);
  targets_.matcher(loss.get<std::string>("matcher", targets_.matcher()));
  if (targets_.matcher() != "threshold" && targets_.matcher() != "hungarian" &&
      targets_.matcher() != "hungarian_predicted") {
    throw ConfigError(loss.where() + ": key " + loss.path_of("matcher") +
                      " must be \"threshold\", \"hungarian\" or \"hungarian_predicted\", got \"" +
                      targets_.matcher() + "\"");
  }
  targets_.iou_threshold(loss.get<double>("iou_threshold", targets_.iou_threshold()));
  if (!(targets_.iou_threshold() > 0.0 && targets_.iou_threshold() <= 1.0)) {
    throw ConfigError(loss.where() + ": key " + loss.path_of("iou_threshold") +
                      " must be in (0,1], got " + std::to_string(targets_.iou_threshold()));
  }
  auto hungarian = ops::HungarianMatcherOptions().threshold(targets_.iou_threshold());
  hungarian.add_threshold_positives(
      loss.get<bool>("hungarian_threshold_positives", hungarian.add_threshold_positives()));
  // The weights of hungarian_predicted's cost (alpha: box distance, beta: confidence).
  hungarian.location_weight(
      non_negative(loss, "location_weight", hungarian.location_weight()));
  hungarian.confidence_weight(
      non_negative(loss, "confidence_weight", hungarian.confidence_weight()));
  targets_.hungarian(hungarian);
}

SSDObjective SSDObjective::from_config(const nlohmann::json& loss, int64_t num_classes,
                                       const std::string& where) {
  const nlohmann::json section = loss.is_null() ? nlohmann::json::object() : loss;
  if (!section.is_object()) throw ConfigError(where + ": loss must be an object");
  io::ConfigReader r(section, where, "loss");
  SSDObjective objective(r, num_classes);
  r.finish();
  return objective;
}

at::Tensor SSDObjective::operator()(const models::SSDOutput& out,
                                    const std::vector<at::Tensor>& boxes,
                                    const std::vector<at::Tensor>& labels) const {
  std::vector<at::Tensor> cpu_boxes, cpu_labels;
  for (size_t i = 0; i < boxes.size(); ++i) {
    cpu_boxes.push_back(boxes[i].to(at::kCPU));
    cpu_labels.push_back(labels[i].to(at::kCPU));
  }
  // Set prediction: the matching reads the network's current outputs, without a gradient.
  models::SSDPredictions predictions;
  if (targets_.matcher() == "hungarian_predicted") {
    predictions.codes = out.locations.detach().to(at::kCPU, at::kFloat);
    predictions.probabilities = at::softmax(out.scores.detach().to(at::kFloat), -1).to(at::kCPU);
  }
  const auto t = models::ssd_targets(cpu_boxes, cpu_labels, out.priors.to(at::kCPU), targets_,
                                     predictions);
  const auto device = out.scores.device();
  return losses::functional::multibox_loss(out.locations, out.scores, t.locations.to(device),
                                           t.labels.to(device), multibox_)
      .loss;
}

YOLOObjective::YOLOObjective(io::ConfigReader& loss) {
  const auto name = loss.get<std::string>("name", "yolo");
  if (name != "yolo") {
    throw ConfigError(loss.where() + ": key " + loss.path_of("name") +
                      " must be \"yolo\" for model yolo, got \"" + name + "\"");
  }
  options_.lambda_coord(non_negative(loss, "lambda_coord", options_.lambda_coord()))
      .lambda_noobj(non_negative(loss, "lambda_noobj", options_.lambda_noobj()))
      .rescore(loss.get<bool>("rescore", options_.rescore()));
}

YOLOObjective YOLOObjective::from_config(const nlohmann::json& loss, const std::string& where) {
  const nlohmann::json section = loss.is_null() ? nlohmann::json::object() : loss;
  if (!section.is_object()) throw ConfigError(where + ": loss must be an object");
  io::ConfigReader r(section, where, "loss");
  YOLOObjective objective(r);
  r.finish();
  return objective;
}

losses::YOLOLossParts YOLOObjective::operator()(const models::YOLOOutput& out,
                                                const std::vector<at::Tensor>& boxes,
                                                const std::vector<at::Tensor>& labels,
                                                int64_t grid, int64_t image_size) const {
  std::vector<at::Tensor> cpu_boxes, cpu_labels;
  for (size_t i = 0; i < boxes.size(); ++i) {
    cpu_boxes.push_back(boxes[i].to(at::kCPU, at::kFloat));
    cpu_labels.push_back(labels[i].to(at::kCPU, at::kLong));
  }
  const auto t = models::yolo_targets(cpu_boxes, cpu_labels, grid, image_size);
  return losses::functional::yolo_loss(out.boxes, out.confidence, out.class_logits, t.has_object,
                                       t.boxes, t.classes, options_);
}

MaskObjective::MaskObjective(io::ConfigReader& loss) {
  mask_weight_ = non_negative(loss, "mask_weight", mask_weight_);
  box_jitter_ = loss.get<double>("box_jitter", box_jitter_);
  if (!(box_jitter_ >= 0.0 && box_jitter_ < 0.5)) {
    throw ConfigError(loss.where() + ": key " + loss.path_of("box_jitter") +
                      " must be in [0, 0.5), got " + std::to_string(box_jitter_));
  }
}

at::Tensor MaskObjective::operator()(models::SSDMaskImpl& net, const at::Tensor& mask_features,
                                     const std::vector<at::Tensor>& boxes,
                                     const std::vector<at::Tensor>& labels,
                                     const std::vector<at::Tensor>& instances,
                                     ops::GridSize image_size, bool training,
                                     std::mt19937_64& rng) const {
  if (mask_weight_ <= 0.0) return {};
  std::vector<at::Tensor> rois, mask_labels, targets;
  for (size_t i = 0; i < boxes.size(); ++i) {
    const auto b = boxes[i].to(at::kCPU, at::kFloat);
    if (b.size(0) == 0) continue;
    const auto jittered = training ? models::jitter_boxes(b, box_jitter_, image_size, rng) : b;
    rois.push_back(at::cat(
        {at::full({b.size(0), 1}, static_cast<double>(i), at::kFloat), jittered}, 1));
    mask_labels.push_back(labels[i].to(at::kCPU, at::kLong));
    targets.push_back(models::mask_targets(instances[i], jittered, 2 * net.options.roi_size()));
  }
  if (rois.empty()) return {};
  const auto device = mask_features.device();
  const auto logits = net.mask_logits(mask_features, at::cat(rois).to(device));
  return mask_weight_ * losses::functional::mask_loss(logits, at::cat(mask_labels).to(device),
                                                      at::cat(targets).to(device));
}

RCNNObjective RCNNObjective::from_config(const nlohmann::json& loss, bool masks,
                                         const std::string& where) {
  const nlohmann::json section = loss.is_null() ? nlohmann::json::object() : loss;
  if (!section.is_object()) throw ConfigError(where + ": loss must be an object");
  io::ConfigReader r(section, where, "loss");
  RCNNObjective objective;
  objective.masks_ = masks;
  std::vector<std::string> terms = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                                    "loss_box_reg"};
  if (masks) terms.emplace_back("loss_mask");
  for (const auto& term : terms) {
    objective.weights_[term] = non_negative(r, (term + "_weight").c_str(), 1.0);
  }
  r.finish();
  return objective;
}

at::Tensor RCNNObjective::operator()(models::FasterRCNNImpl& net, const data::Batch& batch,
                                     std::vector<models::RCNNDetection>* found) const {
  std::vector<at::Tensor> images;
  std::vector<models::RCNNTarget> targets;
  const auto device = batch.images.device();
  for (int64_t i = 0; i < batch.images.size(0); ++i) {
    const auto k = static_cast<size_t>(i);
    images.push_back(batch.images[i]);
    const auto b = batch.boxes.at(k).to(device, at::kFloat);
    const auto keep = at::where((b.select(1, 2) > b.select(1, 0))
                                    .logical_and(b.select(1, 3) > b.select(1, 1)))[0];
    models::RCNNTarget target{b.index_select(0, keep),
                              batch.labels.at(k).to(device, at::kLong).index_select(0, keep),
                              at::Tensor()};
    if (masks_) target.masks = batch.instances.at(k).to(device).index_select(0, keep);
    targets.push_back(std::move(target));
  }
  // The validation loss samples anchors and proposals too: keep the default generator where
  // it was, so that how often one evaluates does not change the training's draws.
  auto generator = at::detail::getDefaultCPUGenerator();
  at::Tensor state;
  if (!net.is_training()) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    state = generator.get_state();
  }
  auto out = net.forward(images, targets);
  if (state.defined()) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  }
  if (found) *found = std::move(out.detections);
  at::Tensor total;
  for (const auto& [name, value] : out.losses) {
    const auto term = value * weights_.at(name);
    total = total.defined() ? total + term : term;
  }
  return total;
}

}  // namespace ostrov::tasks
