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
//   weighted_cross_entropy: weight_map {w0, sigma, balance_classes}, class_weights,
//                  ignore_index                 (U-Net's border weights; needs instances)
// A term of "terms" also takes "weight" (default 1). Unknown keys and names are
// ostrov::ConfigError naming the file and the key path (e.g. "loss.terms[1].epss"). Each name
// is an entry of a registry (register_loss adds one; docs/architecture.md "Losses").
//
//   auto loss = ostrov::losses::build(config["loss"], "run.json");
//   ostrov::losses::LossInputs in;  in.logits = logits;  in.target = target;
//   auto out = loss(in);            // out.total, out.terms[i] = {"soft_dice", value}
//   out.total.backward();

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

#include "ostrov/losses/halo.h"
#include "ostrov/losses/multibox.h"
#include "ostrov/losses/segmentation.h"
#include "ostrov/losses/term.h"
#include "ostrov/losses/unet_weights.h"
#include "ostrov/losses/watershed.h"

namespace ostrov::io {
class ConfigReader;
}

namespace ostrov::losses {

/// The weighted sum and each term's unweighted value (for logging).
struct LossOutput {
  at::Tensor total;  ///< scalar: sum of weight * value over the terms (call backward() on it)
  /// (config name, unweighted scalar value) of each term, in the order of the terms.
  std::vector<std::pair<std::string, at::Tensor>> terms;
};

/// One weighted term; `name` is the config name ("cross_entropy", ...).
struct LossTerm {
  /// Allocates the term's module: a torch::nn::Module that is a LossTermModule.
  using Make = std::function<std::shared_ptr<torch::nn::Module>()>;
  std::string name;     ///< the config name, also the name in LossOutput::terms
  double weight = 1.0;  ///< factor of the term's value in LossOutput::total ("weight" key)
  Make make;            ///< called by CompositeLoss on construction and on every reset()
};

/// A loss kind in the registry `build` reads: `parse` reads the term's own keys from its
/// object (`name` and, inside "terms", `weight` are read around it; unknown keys are rejected
/// after) and returns how to make the term's module. ConfigError naming the key for bad values.
struct LossEntry {
  /// Reads the term's keys from `term` and returns the Make of its module.
  using Parse = std::function<LossTerm::Make(io::ConfigReader& term)>;
  std::string name;  ///< the config "name" of this kind; register_loss refuses a taken one
  Parse parse;       ///< the reader above; register_loss refuses an empty one (ostrov::Error)
  /// Whether the term needs nothing but class scores [N,C,H,W] and a class map [N,H,W] — what
  /// the segmentation task gives its loss (build_class_map_loss). false for the terms of other
  /// objectives: multibox (priors), halo (an instance map), direction, energy,
  /// weighted_cross_entropy (instance masks).
  bool class_map_only = true;
};

/// Adds a loss kind (`"name"` in configs); ostrov::Error when the name is taken.
void register_loss(LossEntry entry);

/// The names `build` accepts (the registry's, in registration order).
std::vector<std::string> loss_names();
/// The names `build_class_map_loss` accepts: the entries with class_map_only.
std::vector<std::string> class_map_loss_names();

/// A weighted sum of loss modules (children "0", "1", ... in the order of the terms).
class CompositeLossImpl : public torch::nn::Cloneable<CompositeLossImpl> {
 public:
  /// Makes each term's module and registers it as child "i"; c10::Error for no terms, a term
  /// without `make`, or a module that is not a LossTermModule.
  explicit CompositeLossImpl(std::vector<LossTerm> terms);
  void reset() override;
  /// Runs every term on `inputs` -> the weighted sum and each term's unweighted value.
  LossOutput forward(const LossInputs& inputs);
  void pretty_print(std::ostream& stream) const override;

  /// The terms, in order (term i's module is child "i").
  std::vector<LossTerm> terms;

 private:
  std::vector<LossTermModule*> modules_;  ///< the children "0", "1", ... as loss terms
};
TORCH_MODULE(CompositeLoss);

/// The multibox keys (alpha, neg_pos_ratio, min_negatives, beta) read from `reader`, an object
/// that may hold other keys too (SSD's training objective reads its own beside them; the
/// caller calls reader.finish()).
MultiboxLossOptions read_multibox_options(io::ConfigReader& reader);

/// Builds a loss from its config (see the header comment). `where` names the config file in
/// errors and `key` the config's own path in it ("loss").
CompositeLoss build(const nlohmann::json& config, const std::string& where,
                    const std::string& key = "loss");
/// `build` for a task that gives its loss only class scores and a class map (segmentation):
/// a term whose entry is not class_map_only is a ConfigError naming its `name` key and the
/// names that fit.
CompositeLoss build_class_map_loss(const nlohmann::json& config, const std::string& where,
                                   const std::string& key = "loss");

}  // namespace ostrov::losses
