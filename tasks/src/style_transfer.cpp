#include "ostrov/tasks/style_transfer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>
#include <torch/nn/functional/upsampling.h>
#include <torch/optim/adam.h>
#include <torch/optim/lbfgs.h>
#include <torch/utils.h>

#include "ostrov/losses/style.h"

namespace ostrov::tasks {

namespace {

namespace F = torch::nn::functional;

void check_image(const at::Tensor& image, const std::string& what) {
  TORCH_CHECK(image.defined(), "stylize: ", what, " is undefined");
  TORCH_CHECK(image.dim() == 3 && image.size(0) == 3 && image.size(1) > 0 && image.size(2) > 0,
              "stylize: ", what, " should be [3,H,W], got ", image.sizes());
  TORCH_CHECK(at::isFloatingType(image.scalar_type()), "stylize: ", what,
              " should be floating point in [0,1], got ", image.scalar_type());
}

/// [1,C,H,W] -> [1,C,h,w]: area averaging when shrinking, bilinear when enlarging.
at::Tensor resize_to(const at::Tensor& x, int64_t h, int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;
  if (h <= x.size(2) && w <= x.size(3)) {
    return F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(
                                 torch::kArea));
  }
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{h, w})
                               .mode(torch::kBilinear)
                               .align_corners(false))
      .clamp(0, 1);
}

/// [3,H,W] -> [1,3,h,w] with the longer side `size` (0: unchanged).
at::Tensor resize_longer(const at::Tensor& image, int64_t size) {
  auto x = image.unsqueeze(0);
  if (size == 0) return x;
  const int64_t h = image.size(1), w = image.size(2);
  const double scale = static_cast<double>(size) / static_cast<double>(std::max(h, w));
  const auto side = [&](int64_t v) {
    return std::max<int64_t>(1, static_cast<int64_t>(std::lround(static_cast<double>(v) * scale)));
  };
  return resize_to(x, side(h), side(w));
}

/// Y of [1,3,H,W] RGB matched to the mean and std of `reference` ([1,1,H,W]), as 3 channels.
at::Tensor matched_luminance(const at::Tensor& rgb, const at::Tensor& reference) {
  auto y = rgb_to_ycrcb(rgb).narrow(1, 0, 1);
  const auto ys = y.std();
  y = (y - y.mean()) / ys.clamp_min(1e-6) * reference.std() + reference.mean();
  return y.expand({-1, 3, -1, -1});
}

struct Terms {
  at::Tensor content, style, tv, total;
};

StyleLosses values(const Terms& t) {
  StyleLosses l;
  l.content = t.content.item<double>();
  l.style = t.style.item<double>();
  l.tv = t.tv.item<double>();
  l.total = t.total.item<double>();
  return l;
}

class Objective {
 public:
  Objective(models::VGGFeatures vgg, const StyleTransferOptions& options)
      : vgg_(std::move(vgg)), options_(options) {
    names_ = options.style_layers();
    if (std::find(names_.begin(), names_.end(), options.content_layer()) == names_.end()) {
      names_.push_back(options.content_layer());
    }
    layer_weights_ = options.style_layer_weights();
    if (layer_weights_.empty()) layer_weights_.assign(options.style_layers().size(), 1.0);
  }

  /// x: [1,3,H,W] network input.
  void set_content(const at::Tensor& x) {
    torch::NoGradGuard no_grad;
    content_target_ = vgg_->forward(x, {options_.content_layer()})[options_.content_layer()];
  }

  void add_style(const at::Tensor& x, double weight) {
    torch::NoGradGuard no_grad;
    const auto features = vgg_->forward(x, options_.style_layers());
    std::vector<at::Tensor> grams;
    for (const auto& name : options_.style_layers()) grams.push_back(losses::functional::gram_matrix(features[name]));
    style_grams_.push_back(std::move(grams));
    style_weights_.push_back(weight);
  }

  /// x: [1,3,H,W] network input; smooth: the optimised image (for total variation).
  Terms operator()(const at::Tensor& x, const at::Tensor& smooth) {
    const auto features = vgg_->forward(x, names_);
    Terms t;
    t.content = (features[options_.content_layer()] - content_target_).pow(2).mean();
    std::vector<at::Tensor> grams;
    for (const auto& name : options_.style_layers()) grams.push_back(losses::functional::gram_matrix(features[name]));
    t.style = at::zeros({}, x.options());
    for (size_t s = 0; s < style_grams_.size(); ++s) {
      for (size_t l = 0; l < grams.size(); ++l) {
        t.style = t.style + (style_weights_[s] * layer_weights_[l]) *
                                (grams[l] - style_grams_[s][l]).pow(2).mean();
      }
    }
    if (options_.tv_weight() != 0) {
      const int64_t h = smooth.size(2), w = smooth.size(3);
      const auto dy = smooth.narrow(2, 1, h - 1) - smooth.narrow(2, 0, h - 1);
      const auto dx = smooth.narrow(3, 1, w - 1) - smooth.narrow(3, 0, w - 1);
      t.tv = (h > 1 ? dy.pow(2).mean() : at::zeros({}, x.options())) +
             (w > 1 ? dx.pow(2).mean() : at::zeros({}, x.options()));
    } else {
      t.tv = at::zeros({}, x.options());
    }
    t.total = options_.content_weight() * t.content + options_.style_weight() * t.style +
              options_.tv_weight() * t.tv;
    return t;
  }

 private:
  models::VGGFeatures vgg_;
  const StyleTransferOptions& options_;
  std::vector<std::string> names_;
  std::vector<double> layer_weights_;
  at::Tensor content_target_;
  std::vector<std::vector<at::Tensor>> style_grams_;
  std::vector<double> style_weights_;
};

void check_options(models::VGGFeatures& vgg, const StyleTransferOptions& o,
                   const std::vector<StyleImage>& styles) {
  TORCH_CHECK(!o.style_layers().empty(), "stylize: no style layers");
  TORCH_CHECK(o.style_layer_weights().empty() ||
                  o.style_layer_weights().size() == o.style_layers().size(),
              "stylize: ", o.style_layer_weights().size(), " style layer weights for ",
              o.style_layers().size(), " style layers");
  for (const auto& name : o.style_layers()) vgg->layer_index(name);  // throws for unknown names
  vgg->layer_index(o.content_layer());
  TORCH_CHECK(o.init() == "content" || o.init() == "style" || o.init() == "noise",
              "stylize: init must be \"content\", \"style\" or \"noise\", got \"", o.init(), "\"");
  TORCH_CHECK(o.optimizer() == "lbfgs" || o.optimizer() == "adam",
              "stylize: optimizer must be \"lbfgs\" or \"adam\", got \"", o.optimizer(), "\"");
  TORCH_CHECK(o.steps() >= 1, "stylize: steps must be >= 1, got ", o.steps());
  TORCH_CHECK(o.size() >= 0 && o.size() <= kMaxStyleTransferSize, "stylize: size must be in [1,",
              kMaxStyleTransferSize, "] (or 0 to keep the content's size), got ", o.size());
  TORCH_CHECK(o.callback_every() >= 0, "stylize: callback_every must be >= 0, got ",
              o.callback_every());
  TORCH_CHECK(o.content_weight() >= 0 && o.style_weight() >= 0 && o.tv_weight() >= 0,
              "stylize: weights must be >= 0, got content ", o.content_weight(), ", style ",
              o.style_weight(), ", tv ", o.tv_weight());
  TORCH_CHECK(!styles.empty(), "stylize: no style image");
  double sum = 0;
  for (size_t i = 0; i < styles.size(); ++i) {
    check_image(styles[i].image, "style image " + std::to_string(i));
    TORCH_CHECK(styles[i].weight >= 0 && std::isfinite(styles[i].weight),
                "stylize: style image ", i, " has weight ", styles[i].weight);
    sum += styles[i].weight;
  }
  TORCH_CHECK(sum > 0, "stylize: the style image weights sum to ", sum);
}

}  // namespace

at::Tensor rgb_to_ycrcb(const at::Tensor& rgb) {
  TORCH_CHECK(rgb.dim() >= 3 && rgb.size(-3) == 3, "rgb_to_ycrcb: expected [...,3,H,W], got ",
              rgb.sizes());
  const auto r = rgb.select(-3, 0), g = rgb.select(-3, 1), b = rgb.select(-3, 2);
  const auto y = 0.299 * r + 0.587 * g + 0.114 * b;
  return at::stack({y, 0.713 * (r - y) + 0.5, 0.564 * (b - y) + 0.5}, -3);
}

at::Tensor ycrcb_to_rgb(const at::Tensor& ycrcb) {
  TORCH_CHECK(ycrcb.dim() >= 3 && ycrcb.size(-3) == 3, "ycrcb_to_rgb: expected [...,3,H,W], got ",
              ycrcb.sizes());
  const auto y = ycrcb.select(-3, 0), cr = ycrcb.select(-3, 1), cb = ycrcb.select(-3, 2);
  const auto r = y + (cr - 0.5) / 0.713;
  const auto b = y + (cb - 0.5) / 0.564;
  const auto g = (y - 0.299 * r - 0.114 * b) / 0.587;
  return at::stack({r, g, b}, -3);
}

StyleTransferResult stylize(models::VGGFeatures& vgg, const at::Tensor& content,
                            const std::vector<StyleImage>& styles,
                            const StyleTransferOptions& options) {
  TORCH_CHECK(!c10::InferenceMode::is_enabled(),
              "stylize optimises the image by gradients: do not call it under c10::InferenceMode");
  TORCH_CHECK(!vgg.is_empty(), "stylize: the models::VGGFeatures is null");
  check_image(content, "content image");
  check_options(vgg, options, styles);
  TORCH_CHECK(options.size() > 0 || std::max(content.size(1), content.size(2)) <=
                                        kMaxStyleTransferSize,
              "stylize: the content image ", content.sizes(), " is larger than ",
              kMaxStyleTransferSize, " pixels; set a size");
  at::AutoGradMode grad_mode(true);  // also under an outer NoGradGuard: the image needs grads
  const auto float_options = content.options().dtype(at::kFloat);
  const auto c = resize_longer(content.to(float_options).clamp(0, 1), options.size());
  const int64_t h = c.size(2), w = c.size(3);
  const int64_t size = std::max(h, w);
  const bool luminance = options.preserve_color();
  const auto c_ycrcb = rgb_to_ycrcb(c);
  const auto c_y = c_ycrcb.narrow(1, 0, 1);
  const auto c_chroma = c_ycrcb.narrow(1, 1, 2);

  Objective objective(vgg, options);
  objective.set_content(luminance ? c_y.expand({-1, 3, -1, -1}) : c);
  double weight_sum = 0;
  for (const auto& s : styles) weight_sum += s.weight;
  for (const auto& s : styles) {
    const auto x = resize_longer(s.image.to(float_options).clamp(0, 1), size);
    objective.add_style(luminance ? matched_luminance(x, c_y) : x, s.weight / weight_sum);
  }

  // The optimised variable: RGB [1,3,H,W], or luminance [1,1,H,W] with preserve_color.
  at::Tensor start;
  if (options.init() == "content") {
    start = luminance ? c_y : c;
  } else if (options.init() == "style") {
    const auto s = resize_to(styles[0].image.to(float_options).clamp(0, 1).unsqueeze(0), h, w);
    start = luminance ? matched_luminance(s, c_y).narrow(1, 0, 1) : s;
  } else {
    start = at::rand({1, luminance ? 1 : 3, h, w}, float_options);
  }
  auto var = start.detach().clone().contiguous().set_requires_grad(true);
  const auto network_input = [&](const at::Tensor& v) {
    return luminance ? v.expand({-1, 3, -1, -1}) : v;
  };
  const auto to_rgb = [&](const at::Tensor& v) {
    torch::NoGradGuard no_grad;
    const auto rgb = luminance ? ycrcb_to_rgb(at::cat({v, c_chroma}, 1)) : v;
    return rgb[0].clamp(0, 1).detach().clone();
  };

  const bool lbfgs = options.optimizer() == "lbfgs";
  const double lr = options.lr() > 0 ? options.lr() : (lbfgs ? 1.0 : 0.02);
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (lbfgs) {
    // Strong-Wolfe line search: without it L-BFGS barely moves on these losses (their
    // gradients per pixel are small). No gradient/change tolerances, so it runs every step.
    optimizer = std::make_unique<torch::optim::LBFGS>(
        std::vector<at::Tensor>{var}, torch::optim::LBFGSOptions(lr)
                                          .history_size(100)
                                          .tolerance_grad(0)
                                          .tolerance_change(0)
                                          .line_search_fn(std::string("strong_wolfe")));
  } else {
    optimizer = std::make_unique<torch::optim::Adam>(std::vector<at::Tensor>{var},
                                                     torch::optim::AdamOptions(lr));
  }

  StyleTransferResult result;
  Terms last;
  int64_t evaluations = 0;
  const auto closure = [&]() -> at::Tensor {
    at::AutoGradMode enable_grad(true);
    optimizer->zero_grad();
    Terms t = objective(network_input(var), var);
    t.total.backward();
    last = {t.content.detach(), t.style.detach(), t.tv.detach(), t.total.detach()};
    if (evaluations++ == 0) result.initial_losses = values(last);
    return t.total;
  };
  // Steps run in chunks between callbacks; L-BFGS does a chunk in one step() call (one call
  // per iteration would evaluate the loss once more per iteration).
  const int64_t steps = options.steps();
  const int64_t chunk = options.callback_every() > 0 ? options.callback_every() : steps;
  for (int64_t done = 0; done < steps;) {
    const int64_t n = std::min(chunk, steps - done);
    if (lbfgs) {
      auto& group = static_cast<torch::optim::LBFGSOptions&>(
          optimizer->param_groups().front().options());
      group.max_iter(n).max_eval(n * 30);  // the line search takes at most 25 per iteration
      optimizer->step(closure);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        closure();
        optimizer->step();
        torch::NoGradGuard no_grad;
        var.clamp_(0, 1);
      }
    }
    done += n;
    if (options.callback()) {
      StyleTransferProgress progress;
      progress.step = done;
      progress.evaluations = evaluations;
      progress.losses = values(last);
      progress.image = to_rgb(var);
      options.callback()(progress);
    }
  }
  {
    torch::NoGradGuard no_grad;
    result.losses = values(objective(network_input(var), var));
  }
  result.image = to_rgb(var);
  result.steps = steps;
  result.evaluations = evaluations;
  return result;
}

}  // namespace ostrov::tasks
