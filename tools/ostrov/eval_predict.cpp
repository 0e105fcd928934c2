// `ostrov eval [CONFIG.json] --checkpoint FILE [--data PATH] [--precision P]`,
// `ostrov predict [CONFIG.json] --checkpoint FILE --input IMG_OR_DIR --output DIR
// [--precision P]` and
// `ostrov export [CONFIG.json] --checkpoint FILE --output WEIGHTS.pt`. The checkpoint carries
// its run's config; a CONFIG given replaces it.

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/logger.h>

#include "commands.h"
#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/core/progress.h"
#include "ostrov/core/runtime.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/tasks/config.h"
#include "ostrov/tasks/predictor.h"
#include "ostrov/tasks/run.h"
#include "ostrov/train/precision.h"

namespace fs = std::filesystem;

namespace ostrov::cli {

namespace {

struct RunArgs {
  std::string config;
  std::string checkpoint;
  std::vector<std::string> overrides;
  std::string data;
  std::string input;
  std::string output;
  bool tile = false;
  int64_t overlap = 32;
  std::string precision = "fp32";
};

void add_common(CLI::App* sub, RunArgs& args) {
  sub->add_option("config", args.config, "Run config (JSON); default: the checkpoint's own");
  sub->add_option("--checkpoint", args.checkpoint, "Checkpoint written by ostrov train")->required();
  sub->add_option("--set", args.overrides, "Override a config key: key.path=value")->take_all();
}

void add_precision(CLI::App* sub, RunArgs& args) {
  sub->add_option("--precision", args.precision,
                  "fp32 (default), bf16 (CPU, CUDA) or fp16 (CUDA): the network under autocast");
}

tasks::RunConfig run_config(const RunArgs& args) {
  auto config = args.config.empty() ? tasks::checkpoint_run_config(args.checkpoint, args.overrides)
                                    : tasks::load_run_config(args.config, args.overrides);
  core::set_num_threads(static_cast<int>(config.train.threads));
  return config;
}

std::vector<std::string> list_images(const std::string& input) {
  if (!fs::exists(input)) throw IoError(input + ": no such file or folder");
  if (!fs::is_directory(input)) return {input};
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(input)) {
    if (e.is_regular_file() && core::is_image_file(e.path().string())) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw IoError(input + ": no images (" + core::image_extension_list() + ") in the folder");
  }
  return files;
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "Evaluate a checkpoint on data.val; prints one JSON object");
  auto args = std::make_shared<RunArgs>();
  add_common(sub, *args);
  add_precision(sub, *args);
  sub->add_option("--data", args->data,
                  "Evaluate on this data instead of data.val: a folder (folder formats), a COCO "
                  "annotation file or a make-scenes folder");
  return [sub, args]() {
    if (!sub->parsed()) return -1;
    auto config = run_config(*args);
    if (!args->data.empty()) tasks::set_validation_data(config, args->data);
    const auto device = tasks::config_device(config);
    const auto precision = train::parse_precision(args->precision, device, "--precision");
    auto task = tasks::load_task(config, args->checkpoint, device);
    std::cout << tasks::evaluate(*task, precision).dump() << std::endl;  // the only stdout output
    return kExitOk;
  };
}

Command add_predict(CLI::App& app) {
  auto* sub = app.add_subcommand("predict", "Run a checkpoint on images; writes masks or boxes, and overlays");
  auto args = std::make_shared<RunArgs>();
  add_common(sub, *args);
  add_precision(sub, *args);
  sub->add_option("--input", args->input, "An image or a folder of images")->required();
  sub->add_option("--output", args->output, "Output folder (created)")->required();
  sub->add_flag("--tile", args->tile,
                "Segmentation: predict at the images' own resolution by overlapping tiles of "
                "the training size instead of resizing them");
  sub->add_option("--overlap", args->overlap, "Pixels neighbouring tiles share (default 32)");
  return [sub, args]() {
    if (!sub->parsed()) return -1;
    const auto config = run_config(*args);
    const auto options = tasks::PredictOptions().tile(args->tile).overlap(args->overlap);
    const auto images = list_images(args->input);
    const auto device = tasks::config_device(config);
    const auto predictor =
        tasks::Predictor::load(args->checkpoint, config, device,
                               train::parse_precision(args->precision, device, "--precision"));
    fs::create_directories(args->output);
    core::ProgressLine progress("predict", static_cast<int64_t>(images.size()), "images",
                                core::stderr_is_terminal() && images.size() > 1 ? &std::cerr
                                                                                 : nullptr);
    for (const auto& path : images) {
      const auto image = core::read_image(path);
      predictor.write(image, predictor.predict(image, options), fs::path(path).stem().string(),
                      args->output);
      progress.advance();
    }
    progress.finish();
    core::logger()->info("wrote predictions and overlays of {} images to {}", images.size(), args->output);
    return kExitOk;
  };
}

Command add_export(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "export", "Write a checkpoint's model weights as a state_dict file (torch.load reads it; "
                "model.weights / model.backbone_weights load it)");
  auto args = std::make_shared<RunArgs>();
  add_common(sub, *args);
  sub->add_option("--output", args->output, "The state_dict file to write (.pt)")->required();
  return [sub, args]() {
    if (!sub->parsed()) return -1;
    auto task = tasks::load_task(run_config(*args), args->checkpoint, c10::Device(c10::kCPU));
    const auto state = io::module_state_dict(task->model());
    io::save_state_dict(state, args->output);
    core::logger()->info("wrote {} tensors of {} to {}", state.size(), args->checkpoint,
                         args->output);
    return kExitOk;
  };
}

}  // namespace ostrov::cli
