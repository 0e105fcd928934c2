// load_torchvision_weights — run a torchvision classifier from C++ with no Python at run time.
//
// Shows: ostrov::io::load_weights reading the file that Python's
// `torch.save(model.state_dict(), "resnet18.pth")` writes (torchvision's own checkpoint format,
// an OrderedDict that torch::pickle_load rejects), into ostrov::models::ResNet / AlexNet whose
// parameter names equal torchvision's; ImageNet normalisation; inference mode.
//
// Data: any image (OpenCV reads PNG/JPEG). Weights: a torchvision state_dict file, e.g.
//   /usr/bin/python3 -c "import torch, torchvision as tv
//   torch.save(tv.models.resnet18(weights='DEFAULT').state_dict(), 'resnet18.pth')"
// on a machine with the ImageNet weights, or weights=None for random ones (what `make demo` does).
//
// Run: load_torchvision_weights --arch resnet18 --weights resnet18.pth --image cat.png [--top 5]

#include <iostream>
#include <string>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <opencv2/imgproc.hpp>

#include <ostrov/ostrov.h>

namespace {

void usage() {
  std::cerr << "usage: load_torchvision_weights --arch alexnet|resnet18|resnet34|resnet50|resnet101\n"
               "       --weights FILE.pth --image IMG [--top K]\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string arch = "resnet18", weights, image_path;
  int top = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--arch" && has_value) arch = argv[++i];
    else if (a == "--weights" && has_value) weights = argv[++i];
    else if (a == "--image" && has_value) image_path = argv[++i];
    else if (a == "--top" && has_value) top = std::stoi(argv[++i]);
    else { usage(); return 2; }
  }
  if (weights.empty() || image_path.empty()) { usage(); return 2; }
  try {
    ostrov::core::set_num_threads();
    std::shared_ptr<torch::nn::Module> module;
    std::function<at::Tensor(const at::Tensor&)> forward;
    if (arch == "alexnet") {
      ostrov::models::AlexNet net;
      module = net.ptr();
      forward = [net](const at::Tensor& x) mutable { return net->forward(x); };
    } else if (arch.rfind("resnet", 0) == 0) {
      ostrov::models::ResNet net(ostrov::models::ResNetOptions(std::stoi(arch.substr(6))));
      module = net.ptr();
      forward = [net](const at::Tensor& x) mutable { return net->forward(x); };
    } else {
      usage();
      return 2;
    }
    ostrov::io::load_weights(*module, weights);  // strict: every name and shape must match
    module->eval();

    cv::Mat bgr = ostrov::core::read_image(image_path);
    cv::resize(bgr, bgr, cv::Size(224, 224), 0, 0, cv::INTER_AREA);
    auto x = ostrov::core::normalize(ostrov::core::image_to_tensor(bgr)).unsqueeze(0);

    c10::InferenceMode guard;
    auto probs = at::softmax(forward(x), 1)[0];
    auto [p, idx] = probs.topk(top);
    std::cout << arch << " on " << image_path << ": top-" << top << " ImageNet classes\n";
    for (int k = 0; k < top; ++k) {
      std::cout << "  class " << idx[k].item<int64_t>() << "  p=" << p[k].item<double>() << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "load_torchvision_weights: " << e.what() << "\n";
    return 1;
  }
}
