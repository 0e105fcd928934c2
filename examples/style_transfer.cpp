// style_transfer — paint a photograph in the style of a painting by optimising its pixels.
//
// Shows: ostrov::models::VGGFeatures (torchvision's VGG19 trunk under torchvision's parameter
// names, so its ImageNet weights file loads unchanged; average pooling; layers by name) and
// ostrov::tasks::stylize: Gram-matrix style loss on conv1_1..conv5_1, content loss on
// conv4_2, L-BFGS over the image, luminance-only transfer to keep the photo's colours, and a
// progress callback that logs the loss terms and saves intermediate frames.
//
// Paper: Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks",
// CVPR 2016; colour preservation: Gatys, Bethge, Hertzmann & Shechtman, "Preserving Color in
// Neural Artistic Style Transfer", arXiv:1606.05897.
//
// Data (shipped in data/, see data/LICENSES.md): chelsea.png (scikit-image's cat photo) as the
// content and starry_night.jpg (van Gogh, via OpenCV's samples) as the style.
// Weights: torchvision's VGG19, saved once on a machine that has them:
//   /usr/bin/python3 -c "import torch, torchvision as tv
//   torch.save(tv.models.vgg19(weights='DEFAULT').state_dict(), 'vgg19.pth')"
// Without --weights the VGG is random: random features still synthesise textures
// (Ustyuzhaninov et al. 2016), but the picture is far from Gatys'.
//
// Run (from the repository root):
//   style_transfer --weights vgg19.pth --size 384 --steps 300 --output chelsea_starry.png
//       [--content data/chelsea.png] [--style data/starry_night.jpg] [--preserve-color]
//       [--frames-every 50] [--seed 0]
//   style_transfer --smoke        # 2 steps at 64 px with random weights (CTest)

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <spdlog/logger.h>

#include "ostrov/core/image.h"
#include "ostrov/core/runtime.h"
#include "ostrov/tasks/style_transfer.h"
#include "ostrov/models/style/vgg_features.h"

namespace {

void usage() {
  std::cerr << "usage: style_transfer [--content IMG] [--style IMG] [--output IMG]\n"
               "       [--weights vgg19.pth] [--size N] [--steps N] [--preserve-color]\n"
               "       [--frames-every N] [--seed S] [--smoke]\n";
}

/// out.png, 50 -> out_0050.png
std::string frame_path(const std::string& output, int64_t step) {
  const std::filesystem::path p(output);
  char number[32];
  std::snprintf(number, sizeof(number), "_%04lld", static_cast<long long>(step));
  return (p.parent_path() / (p.stem().string() + number + p.extension().string())).string();
}

}  // namespace

int main(int argc, char** argv) {
  std::string content_path = "data/chelsea.png", style_path = "data/starry_night.jpg";
  std::string output = "chelsea_starry.png", weights;
  int64_t size = 384, steps = 300, frames_every = 0;
  uint64_t seed = 0;
  bool preserve_color = false, smoke = false, output_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--content" && has_value) content_path = argv[++i];
    else if (a == "--style" && has_value) style_path = argv[++i];
    else if (a == "--output" && has_value) { output = argv[++i]; output_given = true; }
    else if (a == "--weights" && has_value) weights = argv[++i];
    else if (a == "--size" && has_value) size = std::stoll(argv[++i]);
    else if (a == "--steps" && has_value) steps = std::stoll(argv[++i]);
    else if (a == "--frames-every" && has_value) frames_every = std::stoll(argv[++i]);
    else if (a == "--seed" && has_value) seed = std::stoull(argv[++i]);
    else if (a == "--preserve-color") preserve_color = true;
    else if (a == "--smoke") smoke = true;
    else { usage(); return 2; }
  }
  if (smoke) {
    size = 64;
    steps = 2;
    if (!output_given) {
      output = (std::filesystem::temp_directory_path() / "ostrov_style_transfer_smoke.png").string();
    }
  }
  try {
    ostrov::core::set_num_threads();
    ostrov::core::seed_everything(seed);
    auto log = ostrov::core::logger();

    // 1. Images as [3,H,W] float RGB in [0,1].
    const at::Tensor content = ostrov::core::image_to_tensor(ostrov::core::read_image(content_path));
    const at::Tensor style = ostrov::core::image_to_tensor(ostrov::core::read_image(style_path));

    // 2. The frozen VGG19 trunk with average pooling (Gatys' choice) and torchvision's weights.
    ostrov::models::VGGFeatures vgg(ostrov::models::VGGFeaturesOptions(19).pooling("avg"));
    if (weights.empty()) {
      log->warn("no --weights: random VGG19 weights (textures only; see the header comment)");
    } else {
      vgg->load_weights(weights);
    }

    // 3. Optimise the image, starting from the content, logging every 10 steps.
    auto options = ostrov::tasks::StyleTransferOptions()
                       .size(size)
                       .steps(steps)
                       .preserve_color(preserve_color)
                       .callback_every(frames_every > 0 ? frames_every : 10)
                       .callback([&](const ostrov::tasks::StyleTransferProgress& p) {
                         log->info("step {:4d} ({} passes): total {:.4g} = content {:.4g} + "
                                   "1e6 x style {:.4g} + tv",
                                   p.step, p.evaluations, p.losses.total, p.losses.content,
                                   p.losses.style);
                         if (frames_every > 0 && p.step % frames_every == 0 && p.step < steps) {
                           ostrov::core::write_image(frame_path(output, p.step),
                                                     ostrov::core::tensor_to_image(p.image));
                         }
                       });
    const auto result = ostrov::tasks::stylize(vgg, content, {{style, 1.0}}, options);

    // 4. Written to a temporary name and renamed: no partial file on failure.
    ostrov::core::write_image(output, ostrov::core::tensor_to_image(result.image));
    std::cout << "wrote " << output << " (" << result.image.size(2) << "x" << result.image.size(1)
              << "): loss " << result.initial_losses.total << " -> " << result.losses.total
              << " in " << result.steps << " steps (" << result.evaluations << " passes)\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "style_transfer: " << e.what() << "\n";
    return 1;
  }
}
