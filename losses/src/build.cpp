#include "ostrov/losses/build.h"

#include <ATen/ATen.h>

#include "ostrov/core/error.h"
#include "ostrov/core/registry.h"
#include "ostrov/io/json.h"

namespace ostrov::losses {

const at::Tensor& need(const at::Tensor& field, const char* term, const char* name) {
  TORCH_CHECK(field.defined(), "loss term \"", term, "\" needs LossInputs::", name);
  return field;
}

MultiboxLossOptions read_multibox_options(io::ConfigReader& r) {
  MultiboxLossOptions o;
  o.alpha(r.get<double>("alpha", o.alpha()));
  o.neg_pos_ratio(r.get<int64_t>("neg_pos_ratio", o.neg_pos_ratio()));
  o.min_negatives(r.get<int64_t>("min_negatives", o.min_negatives()));
  o.beta(r.get<double>("beta", o.beta()));
  return o;
}

namespace {

template <typename Impl, typename Options>
LossTerm::Make maker(Options options) {
  return [options] { return std::make_shared<Impl>(options); };
}

LossTerm::Make parse_cross_entropy(io::ConfigReader& r) {
  CrossEntropyOptions o;
  o.class_weights(r.get<std::vector<double>>("class_weights", o.class_weights()));
  o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
  return maker<CrossEntropyImpl>(o);
}

LossTerm::Make parse_soft_dice(io::ConfigReader& r) {
  SoftDiceOptions o;
  o.eps(r.get<double>("eps", o.eps()));
  o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
  o.skip_absent(r.get<bool>("skip_absent", o.skip_absent()));
  return maker<SoftDiceImpl>(o);
}

LossTerm::Make parse_ce_dice(io::ConfigReader& r) {
  CEDiceOptions o;
  o.ce_weight(r.get<double>("ce_weight", o.ce_weight()));
  o.dice_weight(r.get<double>("dice_weight", o.dice_weight()));
  o.class_weights(r.get<std::vector<double>>("class_weights", o.class_weights()));
  o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
  o.eps(r.get<double>("eps", o.eps()));
  o.skip_absent(r.get<bool>("skip_absent", o.skip_absent()));
  return maker<CEDiceImpl>(o);
}

LossTerm::Make parse_multibox(io::ConfigReader& r) {
  return maker<MultiboxLossImpl>(read_multibox_options(r));
}

LossTerm::Make parse_halo(io::ConfigReader& r) {
  HaloLossOptions o;
  o.margin(r.get<int64_t>("margin", o.margin()));
  o.mu(r.get<double>("mu", o.mu()));
  o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
  return maker<HaloLossImpl>(o);
}

LossTerm::Make parse_direction(io::ConfigReader& r) {
  DirectionLossOptions o;
  o.angular(r.get<bool>("angular", o.angular()));
  o.eps(r.get<double>("eps", o.eps()));
  return maker<DirectionLossImpl>(o);
}

LossTerm::Make parse_energy(io::ConfigReader& r) {
  EnergyLossOptions o;
  o.class_weights(r.get<std::vector<double>>("class_weights", o.class_weights()));
  o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
  return maker<EnergyLossImpl>(o);
}

LossTerm::Make parse_weighted_cross_entropy(io::ConfigReader& r) {
  WeightedCrossEntropyOptions o;
  auto map = r.child("weight_map");
  UNetWeightMapOptions m;
  m.w0(map.get<double>("w0", m.w0()))
      .sigma(map.get<double>("sigma", m.sigma()))
      .balance_classes(map.get<bool>("balance_classes", m.balance_classes()));
  map.finish();
  o.weight_map(m);
  o.class_weights(r.get<std::vector<double>>("class_weights", o.class_weights()));
  o.ignore_index(r.get<int64_t>("ignore_index", o.ignore_index()));
  return maker<WeightedCrossEntropyImpl>(o);
}

core::Registry<LossEntry>& registry() {
  static core::Registry<LossEntry> r("loss", {{"cross_entropy", parse_cross_entropy},
                                              {"soft_dice", parse_soft_dice},
                                              {"ce_dice", parse_ce_dice},
                                              {"multibox", parse_multibox, false},
                                              {"halo", parse_halo, false},
                                              {"direction", parse_direction, false},
                                              {"energy", parse_energy, false},
                                              {"weighted_cross_entropy",
                                               parse_weighted_cross_entropy, false}});
  return r;
}

LossTerm parse_term(const nlohmann::json& object, const std::string& where,
                    const std::string& prefix, bool weighted, bool class_map_only) {
  io::ConfigReader r(object, where, prefix);
  LossTerm term;
  term.name = r.required<std::string>("name");
  if (weighted) term.weight = r.get<double>("weight", 1.0);
  const LossEntry* entry = registry().find(term.name);
  if (entry == nullptr) {
    throw ConfigError(where + ": key " + r.path_of("name") + ": unknown loss \"" + term.name +
                      "\" (known: " + registry().known() + ")");
  }
  if (class_map_only && !entry->class_map_only) {
    std::string fit;
    for (const auto& n : class_map_loss_names()) fit += (fit.empty() ? "" : ", ") + n;
    throw ConfigError(where + ": key " + r.path_of("name") + ": loss \"" + term.name +
                      "\" needs more than class scores and a class map, which is all this task "
                      "gives it (losses here: " + fit + ")");
  }
  term.make = entry->parse(r);
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

void register_loss(LossEntry entry) {
  if (!entry.parse) throw Error("register_loss: the entry has no parse function");
  registry().add(std::move(entry));
}

std::vector<std::string> loss_names() { return registry().names(); }

std::vector<std::string> class_map_loss_names() {
  std::vector<std::string> names;
  for (const auto& name : registry().names()) {
    if (registry().find(name)->class_map_only) names.push_back(name);
  }
  return names;
}

CompositeLossImpl::CompositeLossImpl(std::vector<LossTerm> terms_) : terms(std::move(terms_)) {
  reset();
}

void CompositeLossImpl::reset() {
  TORCH_CHECK(!terms.empty(), "CompositeLoss: no terms");
  modules_.clear();
  for (size_t i = 0; i < terms.size(); ++i) {
    TORCH_CHECK(terms[i].make, "CompositeLoss: term \"", terms[i].name, "\" has no make function");
    auto module = register_module(std::to_string(i), terms[i].make());
    auto* term = dynamic_cast<LossTermModule*>(module.get());
    TORCH_CHECK(term != nullptr, "CompositeLoss: the module of term \"", terms[i].name,
                "\" is not a losses::LossTermModule");
    modules_.push_back(term);
  }
}

LossOutput CompositeLossImpl::forward(const LossInputs& in) {
  LossOutput out;
  for (size_t i = 0; i < terms.size(); ++i) {
    at::Tensor value = modules_[i]->compute(in);
    auto weighted = terms[i].weight == 1.0 ? value : value * terms[i].weight;
    out.total = out.total.defined() ? out.total + weighted : weighted;
    out.terms.emplace_back(terms[i].name, value);
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

namespace {

CompositeLoss build_terms(const nlohmann::json& config, const std::string& where,
                          const std::string& key, bool class_map_only) {
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
      terms.push_back(parse_term(list[i], where, list_path + "[" + std::to_string(i) + "]", true,
                                 class_map_only));
    }
  } else {
    terms.push_back(parse_term(config, where, key, false, class_map_only));
  }
  return CompositeLoss(std::move(terms));
}

}  // namespace

CompositeLoss build(const nlohmann::json& config, const std::string& where,
                    const std::string& key) {
  return build_terms(config, where, key, /*class_map_only=*/false);
}

CompositeLoss build_class_map_loss(const nlohmann::json& config, const std::string& where,
                                   const std::string& key) {
  return build_terms(config, where, key, /*class_map_only=*/true);
}

}  // namespace ostrov::losses
