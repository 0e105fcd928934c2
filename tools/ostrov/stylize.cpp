// `ostrov stylize`: Gatys et al. style transfer of one content image with one or more style
// images, optionally saving intermediate frames.

#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <ATen/ATen.h>
#include <spdlog/logger.h>

#include "commands.h"
#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/core/runtime.h"
#include "ostrov/tasks/style_transfer.h"
#include "ostrov/models/style/vgg_features.h"

namespace ostrov::cli {

namespace {

struct StylizeArgs {
  std::string content;
  std::vector<std::string> styles;
  std::vector<double> style_blend;
  std::string output;
  std::string weights;
  int64_t depth = 19;
  int64_t size = 512;
  int64_t steps = 300;
  std::string optimizer = "lbfgs";
  std::string init = "content";
  std::string pooling = "avg";
  double lr = 0;
  double style_weight = 1e6;
  double content_weight = 1;
  double tv_weight = 0;
  bool preserve_color = false;
  uint64_t seed = 0;
  int64_t log_every = 50;
  int64_t save_every = 0;
};

/// out.png, 40 -> out_0040.png (beside the output).
std::string frame_path(const std::string& output, int64_t step) {
  const std::filesystem::path p(output);
  char number[32];
  std::snprintf(number, sizeof(number), "_%04lld", static_cast<long long>(step));
  return (p.parent_path() / (p.stem().string() + number + p.extension().string())).string();
}

}  // namespace

Command add_stylize(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "stylize", "Neural style transfer (Gatys et al. 2016): paint --content in --style's style");
  auto args = std::make_shared<StylizeArgs>();
  sub->add_option("--content", args->content, "Content image")->required();
  sub->add_option("--style", args->styles, "Style image (repeat to blend several)")->required();
  sub->add_option("--style-blend", args->style_blend,
                  "Weights of the style images, one per --style (default equal)");
  sub->add_option("--output", args->output, "Output image (format from its extension)")
      ->required();
  sub->add_option("--weights", args->weights,
                  "torchvision VGG state_dict file (e.g. vgg19.pth); without it, random weights");
  sub->add_option("--vgg", args->depth, "VGG depth of --weights: 19 (default) or 16")
      ->check(CLI::IsMember({11, 13, 16, 19}));
  sub->add_option("--size", args->size, "Longer side of the output in pixels (default 512)")
      ->check(CLI::Range(int64_t{1}, tasks::kMaxStyleTransferSize));
  sub->add_option("--steps", args->steps, "Optimisation steps (default 300)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--optimizer", args->optimizer, "lbfgs (default) or adam")
      ->check(CLI::IsMember({"lbfgs", "adam"}));
  sub->add_option("--init", args->init, "Starting image: content (default), style or noise")
      ->check(CLI::IsMember({"content", "style", "noise"}));
  sub->add_option("--pooling", args->pooling, "VGG pooling: avg (default, as Gatys) or max")
      ->check(CLI::IsMember({"avg", "max"}));
  sub->add_option("--lr", args->lr, "Learning rate (default 1 for lbfgs, 0.02 for adam)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--style-weight", args->style_weight, "Style loss weight (default 1e6)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--content-weight", args->content_weight, "Content loss weight (default 1)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--tv-weight", args->tv_weight, "Total variation weight (default 0)")
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("--preserve-color", args->preserve_color,
                "Transfer luminance only and keep the content's colours");
  sub->add_option("--seed", args->seed, "Seed for random VGG weights and noise init (default 0)");
  sub->add_option("--log-every", args->log_every, "Log the losses every N steps (0: never)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--save-every", args->save_every,
                  "Also write OUTPUT_STEM_NNNN.EXT every N steps (0: never)")
      ->check(CLI::NonNegativeNumber);
  return [sub, args]() {
    if (!sub->parsed()) return -1;
    if (!args->style_blend.empty() && args->style_blend.size() != args->styles.size()) {
      throw ConfigError("--style-blend: " + std::to_string(args->style_blend.size()) +
                        " weights for " + std::to_string(args->styles.size()) + " --style images");
    }
    const auto parent = std::filesystem::path(args->output).parent_path();
    if (!parent.empty() && !std::filesystem::is_directory(parent)) {
      throw IoError(args->output + ": the output folder " + parent.string() + " does not exist");
    }
    core::seed_everything(args->seed);
    // Read every input before the long optimisation, so a bad file fails at once.
    const auto content = core::image_to_tensor(core::read_image(args->content));
    std::vector<tasks::StyleImage> styles;
    for (size_t i = 0; i < args->styles.size(); ++i) {
      styles.push_back({core::image_to_tensor(core::read_image(args->styles[i])),
                        args->style_blend.empty() ? 1.0 : args->style_blend[i]});
    }

    models::VGGFeatures vgg(models::VGGFeaturesOptions(args->depth).pooling(args->pooling));
    if (args->weights.empty()) {
      core::logger()->warn(
          "no --weights: using random VGG{} weights (random features still synthesise textures, "
          "Ustyuzhaninov et al. 2016); for Gatys' results save torchvision's weights with "
          "/usr/bin/python3 -c \"import torch, torchvision; torch.save(torchvision.models."
          "vgg19(weights='DEFAULT').state_dict(), 'vgg19.pth')\" and pass --weights vgg19.pth",
          args->depth);
    } else {
      vgg->load_weights(args->weights);
    }

    const auto log_every = args->log_every;
    const auto save_every = args->save_every;
    const std::string output = args->output;
    auto options = tasks::StyleTransferOptions()
                       .size(args->size)
                       .steps(args->steps)
                       .optimizer(args->optimizer)
                       .init(args->init)
                       .lr(args->lr)
                       .style_weight(args->style_weight)
                       .content_weight(args->content_weight)
                       .tv_weight(args->tv_weight)
                       .preserve_color(args->preserve_color)
                       .callback_every(std::gcd(log_every, save_every))
                       .callback([log_every, save_every,
                                  output](const tasks::StyleTransferProgress& p) {
                         const auto& l = p.losses;
                         if (log_every > 0 && p.step % log_every == 0) {
                           core::logger()->info(
                               "step {}: total {:.4g} (content {:.4g}, style {:.4g}, tv {:.4g})",
                               p.step, l.total, l.content, l.style, l.tv);
                         }
                         if (save_every > 0 && p.step % save_every == 0) {
                           core::write_image(frame_path(output, p.step),
                                             core::tensor_to_image(p.image));
                         }
                       });
    const auto result = tasks::stylize(vgg, content, styles, options);
    core::write_image(args->output, core::tensor_to_image(result.image));
    const auto& l = result.losses;
    core::logger()->info(
        "wrote {} ({}x{}) after {} steps: total {:.4g} (content {:.4g}, style {:.4g}, tv {:.4g}), "
        "from {:.4g}",
        args->output, result.image.size(2), result.image.size(1), result.steps, l.total,
        l.content, l.style, l.tv, result.initial_losses.total);
    return kExitOk;
  };
}

}  // namespace ostrov::cli
