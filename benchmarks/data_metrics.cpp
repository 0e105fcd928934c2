// Metric and data-loader workloads.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <ATen/ATen.h>

#include "ostrov/data/fashion_mnist.h"
#include "ostrov/data/folder_dataset.h"
#include "ostrov/data/loader.h"
#include "ostrov/data/scenes.h"
#include "ostrov/data/transforms.h"
#include "ostrov/losses/unet_weights.h"
#include "ostrov/metrics/confusion_matrix.h"
#include "workloads.h"

namespace ostrov::bench {
namespace {

// 100 predicted and target masks of 512x512 with 21 classes (VOC), 5% of target pixels
// ignored (255), accumulated image by image as an evaluation loop does.
void confusion_matrix_100x512(benchmark::State& state) {
  auto prediction = (seeded_rand({100, 512, 512}, 20) * 21).to(at::kLong).clamp_max_(20);
  auto u = seeded_rand({100, 512, 512}, 21);
  auto target = at::where(u < 0.05, at::full({}, 255, at::kLong),
                          (u * 21).to(at::kLong).clamp_max_(20));
  double miou = 0;
  for (auto _ : state) {
    metrics::ConfusionMatrix cm(21);
    for (int64_t i = 0; i < 100; ++i) cm.update(prediction[i], target[i]);
    miou = cm.mean_iou();
  }
  state.counters["miou"] = miou;
}

// The training input pipeline of examples/configs/unet_scenes.json: 64 scenes of 256x256
// written as PNG (the `ostrov make-scenes` format), read by SegmentationFolder, resized to
// 128x128, flipped, normalised, batched by 8 with 1 worker thread (the config's `workers`).
// Time per pass over the 64 images; compare images/s with unet_train's.
void loader_scenes(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ostrov_bench_scenes_" + std::to_string(::getpid()));
  data::write_scenes(data::FashionMnist(data::FashionMnistSplit::kTrain),
                     data::SceneOptions().seed(7), 64, dir.string());
  auto dataset = std::make_shared<data::SegmentationFolder>(dir.string(), 11);
  auto transform = std::make_shared<data::Compose>(std::vector<std::shared_ptr<const data::Transform>>{
      std::make_shared<data::Resize>(128, 128), std::make_shared<data::HorizontalFlip>(0.5),
      std::make_shared<data::Normalize>()});
  data::DataLoader loader(dataset, data::LoaderOptions(8).shuffle(true).workers(1).transform(transform));
  int64_t epoch = 0;
  for (auto _ : state) {
    loader.set_epoch(epoch++);
    for (auto& batch : loader) benchmark::DoNotOptimize(batch.images.data_ptr());
  }
  std::filesystem::remove_all(dir);
  state.counters["images_per_s"] = benchmark::Counter(64.0, benchmark::Counter::kIsIterationInvariantRate);
}

// U-Net's weight map (losses::unet_weight_map) of one training batch, as the unet_border
// recipe computes it every step: 8 instance label images of 128x128, each with 10 objects of
// 30x28 px on a 3 x 4 grid, 2 to 12 px apart (the layout is benchmarks/reference's too).
void unet_weight_map_8x128(benchmark::State& state) {
  auto labels = at::zeros({8, 128, 128}, at::kLong);
  for (int64_t i = 0; i < 8; ++i) {
    for (int64_t k = 0; k < 10; ++k) {
      const int64_t y = (k / 4) * 40 + (i % 3) * 2, x = (k % 4) * 32 + i % 5;
      labels[i].slice(0, y, y + 30).slice(1, x, x + 28).fill_(k + 1);
    }
  }
  double total = 0;
  for (auto _ : state) total = losses::unet_weight_map(labels).sum().item<double>();
  state.counters["sum"] = total;
}

const bool registered = [] {
  add("confusion_matrix_100x512", confusion_matrix_100x512);
  add("unet_weight_map_8x128", unet_weight_map_8x128);
  add("loader_scenes", loader_scenes);
  return true;
}();

}  // namespace
}  // namespace ostrov::bench
