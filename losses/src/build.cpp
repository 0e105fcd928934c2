#include "ostrov/losses/build.h"

#include <ATen/ATen.h>

#include "ostrov/core/error.h"
#include "ostrov/io/json.h"

namespace ostrov::losses {

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

const at::Tensor& need(const at::Tensor& t, const std::string& term, const char* field) {
  TORCH_CHECK(t.defined(), "loss term \"", term, "\" needs LossInputs::", field);
  return t;
}

const char* const kNames = "cross_entropy, soft_dice, ce_dice, multibox, halo, direction, energy";

LossTermOptions parse_options(const std::string& name, io::ConfigReader& r,
                              const std::string& name_path) {
  if (name == "cross_entropy") {
    CrossEntropyOptions o;
    o.class_weights(r.get<std::vector<double>>("class_weights", o.class_weights()));
    o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
    return o;
  }
  if (name == "soft_dice") {
    SoftDiceOptions o;
    o.eps(r.get<double>("eps", o.eps()));
    o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
    o.skip_absent(r.get<bool>("skip_absent", o.skip_absent()));
    return o;
  }
  if (name == "ce_dice") {
    CEDiceOptions o;
    o.ce_weight(r.get<double>("ce_weight", o.ce_weight()));
    o.dice_weight(r.get<double>("dice_weight", o.dice_weight()));
    o.class_weights(r.get<std::vector<double>>("class_weights", o.class_weights()));
    o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
    o.eps(r.get<double>("eps", o.eps()));
    o.skip_absent(r.get<bool>("skip_absent", o.skip_absent()));
    return o;
  }
  if (name == "multibox") {
    MultiboxLossOptions o;
    o.alpha(r.get<double>("alpha", o.alpha()));
    o.neg_pos_ratio(r.get<int64_t>("neg_pos_ratio", o.neg_pos_ratio()));
    o.min_negatives(r.get<int64_t>("min_negatives", o.min_negatives()));
    o.beta(r.get<double>("beta", o.beta()));
    return o;
  }
  if (name == "halo") {
    HaloLossOptions o;
    o.margin(r.get<int64_t>("margin", o.margin()));
    o.mu(r.get<double>("mu", o.mu()));
    o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
    return o;
  }
  if (name == "direction") {
    DirectionLossOptions o;
    o.angular(r.get<bool>("angular", o.angular()));
    o.eps(r.get<double>("eps", o.eps()));
    return o;
  }
  if (name == "energy") {
    EnergyLossOptions o;
    o.class_weights(r.get<std::vector<double>>("class_weights", o.class_weights()));
    o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
    return o;
  }
  throw ConfigError(r.where() + ": key " + name_path + ": unknown loss \"" + name +
                    "\" (known: " + kNames + ")");
}

LossTerm parse_term(const nlohmann::json& object, const std::string& where,
                    const std::string& prefix, bool weighted) {
  io::ConfigReader r(object, where, prefix);
  LossTerm term;
  term.name = r.required<std::string>("name");
  if (weighted) term.weight = r.get<double>("weight", 1.0);
  term.options = parse_options(term.name, r, r.path_of("name"));
  r.finish();
  // Build once so that invalid values fail here as a ConfigError naming the key path.
  try {
    CompositeLoss check(std::vector<LossTerm>{term});
  } catch (const c10::Error& e) {
    throw ConfigError(where + ": " + (prefix.empty() ? std::string("loss") : prefix) + ": " +
                      e.what_without_backtrace());
  }
  return term;
}

}  // namespace

LossTermOptions parse_loss_options(const std::string& name, io::ConfigReader& reader) {
  return parse_options(name, reader, reader.path_of("name"));
}

CompositeLossImpl::CompositeLossImpl(std::vector<LossTerm> terms_) : terms(std::move(terms_)) {
  reset();
}

void CompositeLossImpl::reset() {
  TORCH_CHECK(!terms.empty(), "CompositeLoss: no terms");
  modules_.clear();
  for (size_t i = 0; i < terms.size(); ++i) {
    std::shared_ptr<torch::nn::Module> m = std::visit(
        [](const auto& o) -> std::shared_ptr<torch::nn::Module> {
          using O = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<O, CrossEntropyOptions>) return std::make_shared<CrossEntropyImpl>(o);
          else if constexpr (std::is_same_v<O, SoftDiceOptions>) return std::make_shared<SoftDiceImpl>(o);
          else if constexpr (std::is_same_v<O, CEDiceOptions>) return std::make_shared<CEDiceImpl>(o);
          else if constexpr (std::is_same_v<O, MultiboxLossOptions>) return std::make_shared<MultiboxLossImpl>(o);
          else if constexpr (std::is_same_v<O, HaloLossOptions>) return std::make_shared<HaloLossImpl>(o);
          else if constexpr (std::is_same_v<O, DirectionLossOptions>) return std::make_shared<DirectionLossImpl>(o);
          else return std::make_shared<EnergyLossImpl>(o);
        },
        terms[i].options);
    modules_.push_back(register_module(std::to_string(i), m));
  }
}

LossOutput CompositeLossImpl::forward(const LossInputs& in) {
  LossOutput out;
  for (size_t i = 0; i < terms.size(); ++i) {
    const std::string& name = terms[i].name;
    auto* module = modules_[i].get();
    at::Tensor value = std::visit(
        Overloaded{
            [&](const CrossEntropyOptions&) {
              return dynamic_cast<CrossEntropyImpl*>(module)->forward(
                  need(in.logits, name, "logits"), need(in.target, name, "target"), in.pixel_weights);
            },
            [&](const SoftDiceOptions&) {
              return dynamic_cast<SoftDiceImpl*>(module)->forward(need(in.logits, name, "logits"),
                                                                 need(in.target, name, "target"));
            },
            [&](const CEDiceOptions&) {
              return dynamic_cast<CEDiceImpl*>(module)->forward(
                  need(in.logits, name, "logits"), need(in.target, name, "target"), in.pixel_weights);
            },
            [&](const MultiboxLossOptions&) {
              return dynamic_cast<MultiboxLossImpl*>(module)
                  ->forward(need(in.locations, name, "locations"), need(in.logits, name, "logits"),
                            need(in.target_locations, name, "target_locations"),
                            need(in.target, name, "target"))
                  .loss;
            },
            [&](const HaloLossOptions&) {
              return dynamic_cast<HaloLossImpl*>(module)->forward(need(in.logits, name, "logits"),
                                                                 need(in.target, name, "target"));
            },
            [&](const DirectionLossOptions&) {
              return dynamic_cast<DirectionLossImpl*>(module)->forward(
                  need(in.direction, name, "direction"),
                  need(in.target_direction, name, "target_direction"), in.mask, in.pixel_weights);
            },
            [&](const EnergyLossOptions&) {
              return dynamic_cast<EnergyLossImpl*>(module)->forward(
                  need(in.logits, name, "logits"), need(in.target, name, "target"), in.pixel_weights);
            },
        },
        terms[i].options);
    auto weighted = terms[i].weight == 1.0 ? value : value * terms[i].weight;
    out.total = out.total.defined() ? out.total + weighted : weighted;
    out.terms.emplace_back(name, value);
  }
  return out;
}

void CompositeLossImpl::pretty_print(std::ostream& stream) const {
  stream << "ostrov::losses::CompositeLoss(";
  for (size_t i = 0; i < terms.size(); ++i) {
    stream << (i ? " + " : "") << terms[i].weight << " * " << terms[i].name;
  }
  stream << ")";
}

CompositeLoss build(const nlohmann::json& config, const std::string& where,
                    const std::string& key) {
  if (!config.is_object()) {
    throw ConfigError(where + ": " + key + " must be a JSON object, got " +
                      (config.is_null() ? std::string("nothing") : config.dump()));
  }
  std::vector<LossTerm> terms;
  if (config.contains("terms")) {
    io::ConfigReader r(config, where, key);
    const auto& list = r.raw("terms");
    r.finish();  // "terms" excludes every other top-level key
    const std::string list_path = r.path_of("terms");
    if (!list.is_array() || list.empty()) {
      throw ConfigError(where + ": key " + list_path + " must be a non-empty array of terms, got " +
                        list.dump());
    }
    for (size_t i = 0; i < list.size(); ++i) {
      terms.push_back(parse_term(list[i], where, list_path + "[" + std::to_string(i) + "]", true));
    }
  } else {
    terms.push_back(parse_term(config, where, key, false));
  }
  return CompositeLoss(std::move(terms));
}

}  // namespace ostrov::losses
