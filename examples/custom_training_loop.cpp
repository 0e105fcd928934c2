// custom_training_loop — your own training loop from ostrov's parts, no Trainer, no files.
//
// Shows: Fashion-MNIST scenes generated in memory (data::SceneDataset), the threaded
// deterministic DataLoader, and a segmentation task (tasks::SegmentationTask) built from a
// config written in code: its U-Net (Ronneberger et al., MICCAI 2015, arXiv:1505.04597), its
// CE + SoftDice loss, its transforms and its mIoU evaluation. Adam with a cosine schedule drives
// the loop; the checkpoint saved with the task's resolved config is self-contained, so a
// tasks::Predictor reads it back and segments a held-out scene.
// Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
// Run:  custom_training_loop [--steps N] [--out model.pt]     (--smoke: 2 steps, tiny images)

#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/types.h>

#include <opencv2/core.hpp>
#include <ostrov/ostrov.h>

int main(int argc, char** argv) try {
  using namespace ostrov;
  int64_t steps = 200, size = 128;
  std::string out = "custom_loop.pt";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--smoke") { steps = 2; size = 32; }
    else if (a == "--steps" && i + 1 < argc) steps = std::stoll(argv[++i]);
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else { std::cerr << "usage: custom_training_loop [--steps N] [--out FILE] [--smoke]\n"; return 2; }
  }
  core::set_num_threads();
  core::seed_everything(0);

  // 1. The task: model, loss, transforms and metrics from a config written in code.
  const auto config = tasks::parse_run_config(
      {{"task", "segmentation"},
       {"model", {{"name", "unet"}, {"depth", 3}, {"base_width", 16}}},
       {"data", {{"num_classes", data::kSceneNumClasses}, {"image_size", {size, size}},
                 {"class_names", data::scene_class_names()}}},
       {"loss", {{"name", "ce_dice"}, {"dice_weight", 0.5}}}},
      "custom_training_loop");
  tasks::SegmentationTask task(config, torch::kCPU);

  // 2. Data: scenes from the training items, held-out scenes from the test items.
  auto scenes = data::SceneOptions().height(size * 2).width(size * 2);
  const data::FashionMnist held_out(data::FashionMnistSplit::kTest);
  auto train_set = std::make_shared<data::SceneDataset>(data::FashionMnist(data::FashionMnistSplit::kTrain), scenes, 512);
  auto val_set = std::make_shared<data::SceneDataset>(held_out, scenes.seed(1), 32);
  data::DataLoader train(train_set, data::LoaderOptions(8).shuffle(true).workers(1).transform(task.transforms(true)));
  data::DataLoader val(val_set, data::LoaderOptions(8).transform(task.transforms(false)));

  // 3. Optimizer and schedule.
  torch::optim::Adam optimizer(task.model().parameters(), torch::optim::AdamOptions(3e-3));
  train::ScheduleConfig cosine;
  cosine.name = "cosine";
  train::LrSchedule schedule(cosine, 3e-3, steps);

  // 4. The loop: a new shuffled pass each epoch until `steps` optimizer steps.
  task.model().train();
  for (int64_t step = 0, epoch = 0; step < steps; ++epoch) {
    train.set_epoch(epoch);
    for (auto& batch : train) {
      if (step == steps) break;
      schedule.apply(optimizer, step);
      optimizer.zero_grad();
      auto loss = task.loss(batch);
      loss.backward();
      optimizer.step();
      if (++step % 20 == 0 || step == steps) std::cout << "step " << step << " loss " << loss.item<double>() << "\n";
    }
  }

  // 5. Evaluate on held-out scenes and save with the resolved config.
  task.model().eval();
  task.begin_evaluation();
  {
    torch::NoGradGuard no_grad;
    for (auto& batch : val) task.evaluate(batch);
  }
  const auto metrics = task.end_evaluation();
  std::cout << "held-out mIoU " << metrics["miou"] << ", pixel accuracy " << metrics["pixel_accuracy"] << "\n";
  io::save_checkpoint(out, task.model(), &optimizer, {steps, 0, task.resolved_config(), metrics});
  std::cout << "saved " << out << "\n";

  // 6. The checkpoint alone is enough to segment a new scene at its own size.
  const auto predictor = tasks::Predictor::load(out);
  const cv::Mat scene = core::tensor_to_image(data::make_scene(held_out, scenes.seed(7), 0).image);
  const auto mask = predictor.predict(scene).mask;
  std::cout << "a held-out " << scene.cols << "x" << scene.rows << " scene: "
            << 100.0 * cv::countNonZero(mask) / mask.total() << "% of its pixels are clothing\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "custom_training_loop: " << e.what() << "\n";
  return 1;
}
