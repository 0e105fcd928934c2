#pragma once
// Losses from a JSON config: one loss, or a weighted sum of several.
//
//   {"name": "ce_dice", "ce_weight": 1, "dice_weight": 0.5, "class_weights": [1, 1, 5]}
//   {"terms": [{"name": "cross_entropy", "weight": 1, "ignore_index": 255},
//              {"name": "soft_dice", "weight": 0.5, "skip_absent": true}]}
//
// Names and their keys (defaults as in the options structs):
//   cross_entropy: class_weights, ignore_index
//   soft_dice:     eps, ignore_index, skip_absent
//   ce_dice:       ce_weight, dice_weight, class_weights, ignore_index, eps, skip_absent
//   multibox:      alpha, neg_pos_ratio, min_negatives, beta
//   halo:          margin, mu, ignore_index
//   direction:     angular, eps                 (Deep Watershed direction field)
//   energy:        class_weights, ignore_index  (Deep Watershed energy levels)
// A term of "terms" also takes "weight" (default 1). Unknown keys and names are
// ostrov::ConfigError naming the file and the key path (e.g. "loss.terms[1].epss").
//
//   auto loss = ostrov::losses::build(config["loss"], "run.json");
//   ostrov::losses::LossInputs in;  in.logits = logits;  in.target = target;
//   auto out = loss(in);            // out.total, out.terms[i] = {"soft_dice", value}
//   out.total.backward();

#include <ostream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/losses/halo.h"
#include "ostrov/losses/multibox.h"
#include "ostrov/losses/segmentation.h"
#include "ostrov/losses/watershed.h"

namespace ostrov::io {
class ConfigReader;
}

namespace ostrov::losses {

/// What a built loss reads; each term uses the fields it needs and names a missing one.
struct LossInputs {
  /// Class scores: [N,C,H,W] per pixel (cross_entropy, soft_dice, ce_dice, halo, energy) or
  /// [N,P,C] per prior (multibox).
  at::Tensor logits;
  /// int64: [N,H,W] class map (segmentation), instance map (halo) or energy levels (energy);
  /// [N,P] prior labels (multibox).
  at::Tensor target;
  /// Optional [N,H,W] per-pixel weights (cross_entropy, ce_dice, energy, direction).
  at::Tensor pixel_weights;
  /// multibox: predicted box offsets [N,P,4] and the encoded matched boxes [N,P,4].
  at::Tensor locations;
  at::Tensor target_locations;
  /// direction: predicted field [N,2,H,W], unit target [N,2,H,W], optional [N,H,W] bool mask.
  at::Tensor direction;
  at::Tensor target_direction;
  at::Tensor mask;
};

/// The weighted sum and each term's unweighted value (for logging).
struct LossOutput {
  at::Tensor total;
  std::vector<std::pair<std::string, at::Tensor>> terms;
};

/// Options of one term: its kind is the type held.
using LossTermOptions = std::variant<CrossEntropyOptions, SoftDiceOptions, CEDiceOptions,
                                     MultiboxLossOptions, HaloLossOptions, DirectionLossOptions,
                                     EnergyLossOptions>;

/// One weighted term; `name` is the config name ("cross_entropy", ...).
struct LossTerm {
  std::string name;
  double weight = 1.0;
  LossTermOptions options;
};

/// A weighted sum of loss modules (children "0", "1", ... in the order of the terms).
class CompositeLossImpl : public torch::nn::Cloneable<CompositeLossImpl> {
 public:
  explicit CompositeLossImpl(std::vector<LossTerm> terms);
  void reset() override;
  LossOutput forward(const LossInputs& inputs);
  void pretty_print(std::ostream& stream) const override;

  std::vector<LossTerm> terms;

 private:
  std::vector<std::shared_ptr<torch::nn::Module>> modules_;
};
TORCH_MODULE(CompositeLoss);

/// The options of one term named `name` ("multibox", ...) read from `reader`, an object that
/// may hold other keys too (a training objective reads its own beside them; the caller calls
/// reader.finish()). ConfigError naming the key for an unknown name or a bad value.
LossTermOptions parse_loss_options(const std::string& name, io::ConfigReader& reader);

/// Builds a loss from its config (see the header comment). `where` names the config file in
/// errors and `key` the config's own path in it ("loss").
CompositeLoss build(const nlohmann::json& config, const std::string& where,
                    const std::string& key = "loss");

}  // namespace ostrov::losses
