// `ostrov make-scenes`: scenes composed from Debian's Fashion-MNIST, written as a COCO
// instances file plus a segmentation folder (DIR/instances.json, DIR/images, DIR/masks), or,
// with --layout classes, single-item scenes in one folder per class (DIR/<class>/*.png) for
// classification.

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include <spdlog/logger.h>

#include "commands.h"
#include "ostrov/core/error.h"
#include "ostrov/core/runtime.h"
#include "ostrov/data/fashion_mnist.h"
#include "ostrov/data/scenes.h"

namespace ostrov::cli {

namespace {

struct MakeScenesArgs {
  int64_t count = 0;
  std::string out;
  uint64_t seed = 0;
  std::string size = "256x256";
  std::string split = "train";
  std::string background = "noise";
  int64_t min_items = 2;
  int64_t max_items = 6;
  int64_t min_scale = 40;
  int64_t max_scale = 96;
  std::string layout = "coco";
};

}  // namespace

Command add_make_scenes(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "make-scenes", "Compose scenes from Fashion-MNIST items (COCO JSON + images + masks)");
  auto args = std::make_shared<MakeScenesArgs>();
  sub->add_option("--count", args->count, "Number of scenes")->required()->check(CLI::PositiveNumber);
  sub->add_option("--out", args->out, "Output folder (created; an earlier scene set is replaced)")
      ->required();
  sub->add_option("--seed", args->seed, "Seed: the same seed gives the same files byte for byte");
  sub->add_option("--size", args->size, "Canvas size WxH (default 256x256)");
  sub->add_option("--split", args->split,
                  "Fashion-MNIST split the items come from: train or test (held-out items)")
      ->check(CLI::IsMember({"train", "test"}));
  sub->add_option("--background", args->background, "noise, texture or plain")
      ->check(CLI::IsMember({"noise", "texture", "plain"}));
  sub->add_option("--min-items", args->min_items, "Fewest items per scene (default 2)");
  sub->add_option("--max-items", args->max_items, "Most items per scene (default 6)");
  sub->add_option("--min-scale", args->min_scale,
                  "Smallest side of a pasted item in pixels (the 28x28 item is resized; default 40)");
  sub->add_option("--max-scale", args->max_scale, "Largest side of a pasted item (default 96)");
  sub->add_option("--layout", args->layout,
                  "coco (instances.json + images/ + masks/, the default) or classes (one item "
                  "per scene, DIR/<class>/<scene>.png + classes.txt: a classification set)")
      ->check(CLI::IsMember({"coco", "classes"}));
  return [sub, args]() {
    if (!sub->parsed()) return -1;
    int w = 0, h = 0;
    char tail = 0;
    if (std::sscanf(args->size.c_str(), "%dx%d%c", &w, &h, &tail) != 2 || w <= 0 || h <= 0) {
      throw ConfigError("--size " + args->size + ": expected WxH, e.g. 256x256");
    }
    auto options = data::SceneOptions()
                       .width(w)
                       .height(h)
                       .seed(args->seed)
                       .min_items(args->min_items)
                       .max_items(args->max_items)
                       .min_scale(args->min_scale)
                       .max_scale(args->max_scale)
                       .background(data::scene_background_from_string(args->background));
    data::FashionMnist items(args->split == "train" ? data::FashionMnistSplit::kTrain
                                                    : data::FashionMnistSplit::kTest);
    if (args->layout == "classes") {
      const bool other_count = (sub->count("--min-items") > 0 && args->min_items != 1) ||
                               (sub->count("--max-items") > 0 && args->max_items != 1);
      if (other_count) {
        throw ConfigError("--layout classes puts exactly one item in each scene; drop "
                          "--min-items/--max-items or set both to 1");
      }
      data::write_item_folders(items, options.min_items(1).max_items(1), args->count, args->out);
      core::logger()->info("wrote {} single-item scenes to {} (one folder per class, classes.txt)",
                           args->count, args->out);
      return kExitOk;
    }
    const auto summary = data::write_scenes(items, options, args->count, args->out);
    core::logger()->info("wrote {} scenes with {} objects to {} (instances.json, images/, masks/)",
                         summary.images, summary.annotations, args->out);
    return kExitOk;
  };
}

}  // namespace ostrov::cli
