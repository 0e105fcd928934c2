// detect_objects — run a trained detector (or instance model) checkpoint on one image.
//
// Shows: tasks::Predictor for boxes: each detection in the image's own pixels with the
// dataset's category id, its class name and score, and the boxes drawn over the image.
// Run:  detect_objects runs/ssd/best.pt scene.png [boxes.png] [--min-score 0.3]

#include <iostream>
#include <string>

#include <ostrov/ostrov.h>

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: detect_objects CHECKPOINT IMAGE [OUT.png] [--min-score S]\n";
    return 2;
  }
  std::string out = "detections.png";
  double min_score = 0.3;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--min-score" && i + 1 < argc) min_score = std::stod(argv[++i]);
    else out = a;
  }
  const auto predictor = ostrov::tasks::Predictor::load(argv[1], "auto");
  const cv::Mat image = ostrov::core::read_image(argv[2]);
  const auto result = predictor.predict(image);  // best first

  for (int64_t k = 0; k < result.boxes.size(0); ++k) {
    if (result.scores[k].item<double>() < min_score) break;
    const auto b = result.boxes[k];
    std::cout << result.names[k] << " (category " << result.labels[k].item<int64_t>() << ") "
              << result.scores[k].item<double>() << " at [" << b[0].item<float>() << ", "
              << b[1].item<float>() << ", " << b[2].item<float>() << ", " << b[3].item<float>() << "]\n";
  }
  ostrov::core::write_image(out, predictor.overlay(image, result));
  std::cout << result.boxes.size(0) << " detections; wrote " << out << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "detect_objects: " << e.what() << "\n";
  return 1;
}
