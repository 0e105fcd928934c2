// Model workloads: a training step (forward, loss, backward, SGD step) and inference
// (InferenceMode) of each shipped model, SSD300, a Gatys step, and the GEMM peak.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/optim/sgd.h>

#include "ostrov/core/image.h"
#include "ostrov/io/checkpoint.h"
#include "ostrov/io/weights.h"
#include "ostrov/losses/segmentation.h"
#include "ostrov/losses/multibox.h"
#include "ostrov/losses/style.h"
#include "ostrov/models/build.h"
#include "ostrov/models/detection/ssd.h"
#include "ostrov/models/instance/deep_coloring.h"
#include "ostrov/models/instance/deep_watershed.h"
#include "ostrov/models/detection/faster_rcnn.h"
#include "ostrov/models/instance/ssd_mask.h"
#include "ostrov/models/style/vgg_features.h"
#include "workloads.h"

namespace ostrov::bench {
namespace {

constexpr int64_t kClasses = 11;  // the scenes' background + 10 Fashion-MNIST classes

// Batch and square input size of each segmentation workload (benchmarks/reference/workloads.py
// uses the same).
struct SegmentationWorkload {
  const char* name;
  const char* config;
  int64_t batch;
  int64_t size;
};
constexpr SegmentationWorkload kSegmentation[] = {
    {"unet", "unet_scenes", 8, 128},
    {"fcn8s", "fcn8s_scenes", 4, 224},
    {"fc_densenet56", "fc_densenet56_scenes", 4, 128},
    {"pspnet_r18", "pspnet_r18_scenes", 4, 128},
    {"unet_resnet18", "unet_resnet18_scenes", 8, 128},
};

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

// Counters of a model workload: its parameter count and images/s for `batch` images per
// iteration (run.py checks the count against the reference model's).
void model_counters(benchmark::State& state, const torch::nn::Module& model, int64_t batch) {
  state.counters["params"] = static_cast<double>(count_parameters(model));
  state.counters["images_per_s"] =
      benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
}

at::Tensor segmentation_target(int64_t batch, int64_t size) {
  return (seeded_rand({batch, size, size}, 1) * kClasses).to(at::kLong).clamp_max_(kClasses - 1);
}

void segmentation_train(benchmark::State& state, const SegmentationWorkload& w) {
  auto model = models::build(model_config(w.config), kClasses, w.config);
  model.module->train();
  torch::optim::SGD sgd(model.module->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto x = seeded_rand({w.batch, 3, w.size, w.size}, 0);
  auto target = segmentation_target(w.batch, w.size);
  auto step = [&] {
    sgd.zero_grad();
    auto out = model.forward_with_aux(x);
    auto loss = losses::functional::cross_entropy(out.main, target);
    if (out.aux.defined()) loss = loss + out.aux_weight * losses::functional::cross_entropy(out.aux, target);
    loss.backward();
    sgd.step();
  };
  step();  // warm-up: allocator, oneDNN primitive caches
  for (auto _ : state) step();
  model_counters(state, *model.module, w.batch);
}

void segmentation_infer(benchmark::State& state, const SegmentationWorkload& w) {
  auto model = models::build(model_config(w.config), kClasses, w.config);
  model.module->eval();
  auto x = seeded_rand({w.batch, 3, w.size, w.size}, 0);
  c10::InferenceMode guard;
  benchmark::DoNotOptimize(model.forward(x));
  for (auto _ : state) {
    auto logits = model.forward(x);
    benchmark::DoNotOptimize(logits.data_ptr());
  }
  model_counters(state, *model.module, w.batch);
}

// torchvision's mobile segmentation models, one 512x512 image, as an application would run
// them (no auxiliary head): reference/workloads.py runs torchvision's own models.
void mobile_segmentation_infer(benchmark::State& state, const char* config) {
  auto model_json = model_config(config);
  if (model_json.contains("aux")) model_json["aux"] = false;
  auto model = models::build(model_json, kClasses, config);
  model.module->eval();
  auto x = seeded_rand({1, 3, 512, 512}, 0);
  c10::InferenceMode guard;
  benchmark::DoNotOptimize(model.forward(x));
  for (auto _ : state) {
    auto logits = model.forward(x);
    benchmark::DoNotOptimize(logits.data_ptr());
  }
  model_counters(state, *model.module, 1);
}

// Light SSD: batch 8 at 256x256, targets with 3% positive priors (the loss's cost does not
// depend on which priors are positive).
constexpr int64_t kSSDBatch = 8;

void ssd_light_train(benchmark::State& state) {
  models::SSD net(models::SSDOptions::light(kClasses));
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto x = seeded_rand({kSSDBatch, 3, 256, 256}, 0);
  auto probe = net->forward(x);
  const int64_t priors = probe.locations.size(1);
  auto u = seeded_rand({kSSDBatch, priors}, 2);
  auto labels = at::where(u < 0.03, (u * 1000).to(at::kLong).remainder(kClasses - 1) + 1,
                          at::zeros({}, at::kLong));
  auto target_locations = seeded_rand({kSSDBatch, priors, 4}, 3) - 0.5;
  auto step = [&] {
    sgd.zero_grad();
    auto out = net->forward(x);
    auto loss = losses::functional::multibox_loss(out.locations, out.scores, target_locations, labels);
    loss.loss.backward();
    sgd.step();
  };
  step();
  for (auto _ : state) step();
  model_counters(state, *net, kSSDBatch);
}

void ssd_light_infer(benchmark::State& state) {
  models::SSD net(models::SSDOptions::light(kClasses));
  net->eval();
  auto x = seeded_rand({kSSDBatch, 3, 256, 256}, 0);
  c10::InferenceMode guard;
  for (auto _ : state) {
    auto out = net->forward(x);
    benchmark::DoNotOptimize(out.scores.data_ptr());
  }
  model_counters(state, *net, kSSDBatch);
}

// SSD inference on one 480x640 image: preprocess (resize to the model's size, normalise),
// network, post-processing (decode, per-class NMS), as torchvision's model(images) in eval mode
// does. The environment variable `weights_env` names a torchvision state_dict so both sides
// post-process the same scores (run.py writes one from torch.manual_seed(0)).
void ssd_infer(benchmark::State& state, const models::SSDOptions& options,
               const char* weights_env) {
  models::SSD net(options);
  if (const char* weights = std::getenv(weights_env)) io::load_weights(*net, weights);
  net->eval();
  auto image = pattern_image(480, 640);
  c10::InferenceMode guard;
  auto run = [&] {
    auto x = net->preprocess(image.unsqueeze(0));
    return net->postprocess(net->forward(x), {{480, 640}});
  };
  int64_t detections = static_cast<int64_t>(run()[0].boxes.size(0));
  for (auto _ : state) benchmark::DoNotOptimize(run());
  state.counters["params"] = static_cast<double>(count_parameters(*net));
  state.counters["detections"] = static_cast<double>(detections);
}

// One Gatys evaluation at 256x256: VGG19 features of the image, Gram-matrix style loss at
// conv1_1..conv5_1 and content loss at conv4_2, backward to the image (what each L-BFGS
// function evaluation does).
void gatys_step(benchmark::State& state) {
  models::VGGFeatures vgg(models::VGGFeaturesOptions().depth(19));
  vgg->eval();
  for (auto& p : vgg->parameters()) p.set_requires_grad(false);
  const std::vector<std::string> style_layers = {"conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"};
  std::vector<std::string> layers = style_layers;
  layers.push_back("conv4_2");
  auto content = pattern_image(256, 256).unsqueeze(0);
  auto style = seeded_rand({1, 3, 256, 256}, 5);
  std::vector<at::Tensor> style_targets;
  at::Tensor content_target;
  {
    at::NoGradGuard no_grad;
    auto s = vgg->forward(style, style_layers);
    for (const auto& name : style_layers) style_targets.push_back(losses::functional::gram_matrix(s[name]));
    content_target = vgg->forward(content, {"conv4_2"})["conv4_2"];
  }
  auto image = content.clone().requires_grad_(true);
  auto step = [&] {
    if (image.grad().defined()) image.mutable_grad().zero_();
    auto f = vgg->forward(image, layers);
    std::vector<at::Tensor> feats;
    for (const auto& name : style_layers) feats.push_back(f[name]);
    auto loss = 1e6 * losses::functional::style_loss(feats, style_targets) +
                losses::functional::content_loss(f["conv4_2"], content_target);
    loss.backward();
  };
  step();
  for (auto _ : state) step();
}

// The GEMM peak of this machine: C = A B with float32 2048x2048 matrices (OpenBLAS).
void gemm_2048(benchmark::State& state) {
  auto a = seeded_rand({2048, 2048}, 0);
  auto b = seeded_rand({2048, 2048}, 1);
  auto c = at::mm(a, b);
  for (auto _ : state) {
    at::mm_out(c, a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["gflops"] = benchmark::Counter(2.0 * 2048 * 2048 * 2048 / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// The convolution peak: a 1x1 convolution 1024 -> 1024 channels on [1,1024,64,64] (a GEMM of
// 1024 x 1024 x 4096 run by oneDNN, which LibTorch uses for convolutions).
void conv1x1_peak(benchmark::State& state) {
  auto x = seeded_rand({1, 1024, 64, 64}, 0);
  auto w = seeded_rand({1024, 1024, 1, 1}, 1) - 0.5;
  c10::InferenceMode guard;
  benchmark::DoNotOptimize(at::conv2d(x, w));
  for (auto _ : state) {
    auto y = at::conv2d(x, w);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.counters["gflops"] = benchmark::Counter(2.0 * 1024 * 1024 * 4096 / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// Instance segmentation, one 256x256 image, network + each method's post-processing (argmax +
// components; watershed flooding; detector NMS + RoIAlign + mask head + pasting), with the
// networks of examples/configs/*_scenes.json. ostrov only (torchvision has none of the three
// in this form), so run.py does not pair these; run them with
//   build/bin/ostrov_bench --benchmark_filter=instance_infer
// Post-processing time depends on what the network finds, so OSTROV_BENCH_INSTANCE_DIR may
// name a folder with trained checkpoints <method>.pt (ostrov train's best.pt) and
// OSTROV_BENCH_IMAGE an image (resized to 256x256); otherwise random weights and the pattern.
at::Tensor instance_input() {
  at::Tensor image;
  if (const char* path = std::getenv("OSTROV_BENCH_IMAGE")) {
    image = core::image_to_tensor(core::read_image(path));
    image = at::upsample_bilinear2d(image.unsqueeze(0), {256, 256}, false);
  } else {
    image = pattern_image(256, 256).unsqueeze(0);
  }
  return core::normalize(image);
}

template <class Net>
void instance_infer(benchmark::State& state, Net net, const std::string& method) {
  if (const char* dir = std::getenv("OSTROV_BENCH_INSTANCE_DIR")) {
    io::load_checkpoint(std::string(dir) + "/" + method + ".pt", *net);
  }
  net->eval();
  const auto x = instance_input();
  c10::InferenceMode guard;
  const auto instances = net->predict(x)[0].masks.size(0);
  for (auto _ : state) benchmark::DoNotOptimize(net->predict(x));
  state.counters["params"] = static_cast<double>(count_parameters(*net));
  state.counters["instances"] = static_cast<double>(instances);
}

const bool registered = [] {
  for (const auto& w : kSegmentation) {
    add(std::string(w.name) + "_train", [w](benchmark::State& s) { segmentation_train(s, w); });
    add(std::string(w.name) + "_infer", [w](benchmark::State& s) { segmentation_infer(s, w); });
  }
  add("deeplabv3_mnv3_infer",
      [](benchmark::State& s) { mobile_segmentation_infer(s, "deeplabv3_mnv3_scenes"); });
  add("lraspp_mnv3_infer",
      [](benchmark::State& s) { mobile_segmentation_infer(s, "lraspp_mnv3_scenes"); });
  add("ssd_light_train", ssd_light_train);
  add("ssd_light_infer", ssd_light_infer);
  add("ssd300_infer", [](benchmark::State& s) {
    ssd_infer(s, models::SSDOptions::ssd300_vgg16(91), "OSTROV_BENCH_SSD300_WEIGHTS");
  });
  add("ssdlite320_infer", [](benchmark::State& s) {
    ssd_infer(s, models::SSDOptions::ssdlite320_mobilenet_v3_large(91),
              "OSTROV_BENCH_SSDLITE320_WEIGHTS");
  });
  add("gatys_vgg19_256", gatys_step);
  add("gemm_2048", gemm_2048);
  add("conv1x1_peak", conv1x1_peak);
  add("instance_infer_deep_coloring", [](benchmark::State& s) {
    instance_infer(s, models::DeepColoring(models::DeepColoringOptions()), "deep_coloring");
  });
  add("instance_infer_deep_watershed", [](benchmark::State& s) {
    instance_infer(s, models::DeepWatershed(models::DeepWatershedOptions()), "deep_watershed");
  });
  add("instance_infer_ssd_mask", [](benchmark::State& s) {
    instance_infer(s, models::SSDMask(models::SSDMaskOptions(kClasses).image_size(256)), "ssd_mask");
  });
  add("instance_infer_mask_rcnn", [](benchmark::State& s) {
    // The small preset at 256 px; the input comes normalised (instance_input), as in the task.
    auto o = models::FasterRCNNOptions::maskrcnn_resnet18_fpn_small(kClasses, 256);
    o.transform(o.transform().normalize(false));
    instance_infer(s, models::FasterRCNN(o), "mask_rcnn");
  });
  return true;
}();

}  // namespace
}  // namespace ostrov::bench
