// custom_training_loop — your own training loop from ostrov's parts, no Trainer, no config.
//
// Shows: Fashion-MNIST scenes generated in memory (data::SceneDataset), the threaded
// deterministic DataLoader with joint transforms, a U-Net (Ronneberger et al., MICCAI 2015,
// arXiv:1505.04597), the CE + SoftDice loss, Adam with a cosine schedule, a streaming
// ConfusionMatrix for mIoU, and an atomic checkpoint.
// Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
// Run:  custom_training_loop [--steps N] [--out model.pt]     (--smoke: 2 steps, tiny images)

#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <torch/optim/adam.h>
#include <torch/types.h>

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

  // 1. Data: scenes from the training items, held-out scenes from the test items.
  auto scenes = data::SceneOptions().height(size * 2).width(size * 2);
  auto train_set = std::make_shared<data::SceneDataset>(data::FashionMnist(data::FashionMnistSplit::kTrain), scenes, 512);
  auto val_set = std::make_shared<data::SceneDataset>(data::FashionMnist(data::FashionMnistSplit::kTest), scenes.seed(1), 32);
  auto augment = std::make_shared<data::Compose>(std::vector<std::shared_ptr<const data::Transform>>{
      std::make_shared<data::Resize>(size, size), std::make_shared<data::HorizontalFlip>(0.5),
      std::make_shared<data::Normalize>()});
  auto plain = std::make_shared<data::Compose>(std::vector<std::shared_ptr<const data::Transform>>{
      std::make_shared<data::Resize>(size, size), std::make_shared<data::Normalize>()});
  data::DataLoader train(train_set, data::LoaderOptions(8).shuffle(true).workers(1).transform(augment));
  data::DataLoader val(val_set, data::LoaderOptions(8).transform(plain));

  // 2. Model, loss, optimizer, schedule.
  models::UNet net(models::UNetOptions(data::kSceneNumClasses).depth(3).base_width(16));
  losses::CEDice loss_fn(losses::CEDiceOptions().dice_weight(0.5));
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(3e-3));
  train::ScheduleConfig cosine;
  cosine.name = "cosine";
  train::LrSchedule schedule(cosine, 3e-3, steps);

  // 3. The loop: a new shuffled pass each epoch until `steps` optimizer steps.
  for (int64_t step = 0, epoch = 0; step < steps; ++epoch) {
    train.set_epoch(epoch);
    for (auto& batch : train) {
      if (step == steps) break;
      schedule.apply(optimizer, step);
      optimizer.zero_grad();
      auto loss = loss_fn->forward(net->forward(batch.images), batch.masks);
      loss.backward();
      optimizer.step();
      if (++step % 20 == 0 || step == steps) std::cout << "step " << step << " loss " << loss.item<double>() << "\n";
    }
  }

  // 4. Evaluate on held-out scenes and save.
  net->eval();
  metrics::ConfusionMatrix cm(data::kSceneNumClasses);
  {
    torch::NoGradGuard no_grad;
    for (auto& batch : val) cm.update(net->forward(batch.images).argmax(1), batch.masks);
  }
  std::cout << "held-out mIoU " << cm.mean_iou() << ", pixel accuracy " << cm.pixel_accuracy() << "\n";
  io::save_checkpoint(out, *net, &optimizer, {steps, 0, {{"model", "unet"}}, {{"miou", cm.mean_iou()}}});
  std::cout << "saved " << out << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "custom_training_loop: " << e.what() << "\n";
  return 1;
}
