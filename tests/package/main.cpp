// Uses each component through the installed headers and libraries; given a checkpoint and an
// image, predicts with tasks::Predictor as an application would.
#include <iostream>

#include <ATen/ATen.h>

#include <ostrov/ostrov.h>

int main(int argc, char** argv) {
  ostrov::core::seed_everything(0);
  ostrov::models::AlexNet net;
  const auto params = ostrov::io::module_state_dict(*net).size();
  auto logits = at::randn({1, 3, 4, 4});
  auto target = at::zeros({1, 4, 4}, at::kLong);
  auto loss = ostrov::losses::functional::cross_entropy(logits, target);
  ostrov::metrics::ConfusionMatrix cm(3);
  cm.update(logits.argmax(1), target);
  const auto rf = ostrov::nn::receptive_fields(ostrov::nn::alexnet_layers()).back().receptive_field;
  std::cout << "tensors " << params << " loss " << loss.item<double>() << " acc "
            << cm.pixel_accuracy() << " rf " << rf << "\n";
  if (params != 16 || rf != 195) return 1;
  if (argc == 3) {  // CHECKPOINT IMAGE
    const auto predictor = ostrov::tasks::Predictor::load(argv[1]);
    const cv::Mat image = ostrov::core::read_image(argv[2]);
    const auto result = predictor.predict(image);
    std::cout << "predicted " << predictor.task() << " " << result.mask.cols << "x"
              << result.mask.rows << " with " << predictor.class_names().size() << " classes\n";
    if (predictor.task() != "segmentation" || result.mask.size() != image.size()) return 1;
  }
  return 0;
}
