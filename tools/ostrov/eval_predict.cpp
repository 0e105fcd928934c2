// `ostrov eval CONFIG.json --checkpoint FILE`,
// `ostrov predict CONFIG.json --checkpoint FILE --input IMG_OR_DIR --output DIR` and
// `ostrov export CONFIG.json --checkpoint FILE --output WEIGHTS.pt`.

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <spdlog/logger.h>

#include "commands.h"
#include "ostrov/core/device.h"
#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/core/runtime.h"
#include "ostrov/data/loader.h"
#include "ostrov/io/checkpoint.h"
#include "ostrov/io/state_dict.h"
#include "ostrov/io/weights.h"
#include "ostrov/train/trainer.h"
#include "run_config.h"
#include "task.h"

namespace fs = std::filesystem;

namespace ostrov::cli {

namespace {

struct RunArgs {
  std::string config;
  std::string checkpoint;
  std::vector<std::string> overrides;
  std::string input;
  std::string output;
};

void add_common(CLI::App* sub, RunArgs& args) {
  sub->add_option("config", args.config, "Run config (JSON)")->required();
  sub->add_option("--checkpoint", args.checkpoint, "Checkpoint written by ostrov train")->required();
  sub->add_option("--set", args.overrides, "Override a config key: key.path=value")->take_all();
}

// Builds the task from the config and loads the checkpoint into its model. The checkpoint
// replaces every weight, so the config's initial weights (model.weights,
// model.backbone_weights) are not read: evaluating a run does not need its starting files.
std::unique_ptr<CliTask> load_task(RunConfig config, const std::string& checkpoint,
                                   const c10::Device& device) {
  if (!fs::exists(checkpoint)) throw IoError(checkpoint + ": no such checkpoint file");
  if (config.model.is_object()) {
    config.model.erase("weights");
    config.model.erase("backbone_weights");
  }
  auto task = make_task(config, device);
  io::load_checkpoint(checkpoint, task->model());
  task->model().eval();
  return task;
}

std::vector<std::string> list_images(const std::string& input) {
  if (!fs::exists(input)) throw IoError(input + ": no such file or folder");
  if (!fs::is_directory(input)) return {input};
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(input)) {
    auto ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (e.is_regular_file() && (ext == ".png" || ext == ".jpg" || ext == ".jpeg")) {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw IoError(input + ": no .png/.jpg/.jpeg images in the folder");
  return files;
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto* sub = app.add_subcommand("eval", "Evaluate a checkpoint on data.val; prints one JSON object");
  auto args = std::make_shared<RunArgs>();
  add_common(sub, *args);
  return [sub, args]() {
    if (!sub->parsed()) return -1;
    const RunConfig config = load_run_config(args->config, args->overrides);
    const c10::Device device = core::parse_device(config.train.device);
    core::set_num_threads(static_cast<int>(config.train.threads));
    auto task = load_task(config, args->checkpoint, device);
    data::DataLoader loader(task->dataset("val"),
                            data::LoaderOptions(config.train.batch_size)
                                .workers(config.train.workers)
                                .transform(task->transforms(/*training=*/false)));
    task->begin_evaluation();
    {
      c10::InferenceMode guard;
      while (auto batch = loader.next()) task->evaluate(train::to_device(*batch, device));
    }
    std::cout << task->end_evaluation().dump() << std::endl;  // the only stdout output
    return kExitOk;
  };
}

Command add_predict(CLI::App& app) {
  auto* sub = app.add_subcommand("predict", "Run a checkpoint on images; writes masks or boxes, and overlays");
  auto args = std::make_shared<RunArgs>();
  add_common(sub, *args);
  sub->add_option("--input", args->input, "An image or a folder of images")->required();
  sub->add_option("--output", args->output, "Output folder (created)")->required();
  return [sub, args]() {
    if (!sub->parsed()) return -1;
    const RunConfig config = load_run_config(args->config, args->overrides);
    const c10::Device device = core::parse_device(config.train.device);
    core::set_num_threads(static_cast<int>(config.train.threads));
    const auto images = list_images(args->input);
    auto task = load_task(config, args->checkpoint, device);
    fs::create_directories(args->output);
    c10::InferenceMode guard;
    for (const auto& path : images) {
      task->predict_image(core::read_image(path), fs::path(path).stem().string(), args->output);
    }
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
    const RunConfig config = load_run_config(args->config, args->overrides);
    auto task = load_task(config, args->checkpoint, c10::Device(c10::kCPU));
    const auto state = io::module_state_dict(task->model());
    io::save_state_dict(state, args->output);
    core::logger()->info("wrote {} tensors of {} to {}", state.size(), args->checkpoint,
                         args->output);
    return kExitOk;
  };
}

}  // namespace ostrov::cli
