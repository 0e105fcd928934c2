// Uses each component through the installed headers and libraries.
#include <iostream>

#include <ATen/ATen.h>

#include <ostrov/ostrov.h>

int main() {
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
  return (params == 16 && rf == 195) ? 0 : 1;
}
