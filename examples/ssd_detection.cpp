// ssd_detection — train and evaluate a light SSD (Liu et al., ECCV 2016, arXiv:1512.02325) in
// your own loop: detection from ostrov's parts, no Trainer, no config.
//
// Shows: Fashion-MNIST scenes in memory (data::SceneDataset) with their boxes, SSD's joint
// augmentation, models::SSD (ResNet-18 light variant), training targets from a matcher
// (threshold as torchvision's SSD, or the optimal one-to-one Hungarian assignment), the
// multibox loss with 3:1 hard-negative mining, post-processing (softmax, per-class NMS), VOC
// and COCO mAP (metrics::DetectionAP), and a picture of the detections.
// Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
// Run:  ssd_detection [--steps N] [--matcher threshold|hungarian] [--out boxes.png]
//       (--smoke: 3 steps on 64x64 scenes)

#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/optim/adam.h>
#include <torch/types.h>

#include <ostrov/ostrov.h>

int main(int argc, char** argv) try {
  using namespace ostrov;
  int64_t steps = 300, size = 256;
  std::string matcher = "threshold", out = "ssd_boxes.png";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--smoke") { steps = 3; size = 64; }
    else if (a == "--steps" && i + 1 < argc) steps = std::stoll(argv[++i]);
    else if (a == "--matcher" && i + 1 < argc) matcher = argv[++i];
    else if (a == "--out" && i + 1 < argc) out = argv[++i];
    else {
      std::cerr << "usage: ssd_detection [--steps N] [--matcher threshold|hungarian] [--out PNG] [--smoke]\n";
      return 2;
    }
  }
  core::set_num_threads();
  core::seed_everything(0);

  // 1. Scenes with 3-8 items; held-out scenes from Fashion-MNIST's test items.
  auto scenes = data::SceneOptions().height(size).width(size).min_items(3).max_items(8)
                    .min_scale(size * 40 / 256).max_scale(size * 96 / 256);
  auto train_set = std::make_shared<data::SceneDataset>(
      data::FashionMnist(data::FashionMnistSplit::kTrain), scenes, 1024);
  auto val_set = std::make_shared<data::SceneDataset>(
      data::FashionMnist(data::FashionMnistSplit::kTest), scenes.seed(1), 32);

  // 2. The light SSD; its own normalisation follows the augmentation.
  models::SSD net(models::SSDOptions::light(data::kSceneNumClasses, size));
  const auto& o = net->options;
  auto normalize = std::make_shared<data::Normalize>(o.image_mean(), o.image_std());
  auto augment = std::make_shared<data::Compose>(std::vector<std::shared_ptr<const data::Transform>>{
      std::make_shared<data::PhotometricDistort>(), std::make_shared<data::HorizontalFlip>(0.5),
      normalize});
  data::DataLoader train(train_set, data::LoaderOptions(8).shuffle(true).drop_last(true).workers(1).transform(augment));
  data::DataLoader val(val_set, data::LoaderOptions(8).transform(normalize));

  // 3. Targets, loss, optimizer.
  const auto targets = models::SSDTargetOptions().matcher(matcher).num_classes(data::kSceneNumClasses);
  losses::MultiboxLoss multibox;
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(1e-3));
  for (int64_t step = 0, epoch = 0; step < steps; ++epoch) {
    train.set_epoch(epoch);
    for (auto& batch : train) {
      if (step == steps) break;
      auto prediction = net->forward(batch.images);
      auto t = models::ssd_targets(batch.boxes, batch.labels, prediction.priors, targets);
      auto loss = multibox->forward(prediction.locations, prediction.scores, t.locations, t.labels);
      optimizer.zero_grad();
      loss.loss.backward();
      optimizer.step();
      if (++step % 20 == 0 || step == steps) {
        std::cout << "step " << step << " loss " << loss.loss.item<double>() << " (location "
                  << loss.location.item<double>() << ", classes " << loss.classification.item<double>() << ")\n";
      }
    }
  }

  // 4. Held-out mAP, and the first scene's detections drawn.
  net->eval();
  metrics::DetectionAP ap;
  c10::InferenceMode guard;
  for (auto& batch : val) {
    const auto detections = net->postprocess(net->forward(batch.images));
    for (int64_t i = 0; i < batch.size(); ++i) {
      ap.update({detections[i].boxes, {}, detections[i].scores, detections[i].labels},
                {batch.boxes[i], {}, batch.labels[i], {}});
    }
  }
  const auto r = ap.compute();
  std::cout << "held-out mAP@0.5 (VOC) " << r.voc_map50 << ", COCO mAP " << r.map << "\n";
  const auto scene = val_set->get(0);
  const auto x = core::normalize(scene.image, o.image_mean(), o.image_std()).unsqueeze(0);
  auto detections = net->postprocess(net->forward(x))[0];
  const auto keep = detections.scores > 0.3;
  const cv::Mat picture = core::tensor_to_image(scene.image);
  core::write_image(out, data::draw_boxes(picture, detections.boxes.index({keep}),
                                          detections.labels.index({keep}),
                                          detections.scores.index({keep}), data::scene_class_names()));
  std::cout << "wrote " << out << " (detections with score > 0.3)\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "ssd_detection: " << e.what() << "\n";
  return 1;
}
