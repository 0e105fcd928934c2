// segment_image — run a trained segmentation checkpoint on one image and save the overlay.
//
// Shows: tasks::Predictor, what `ostrov predict` does, in an application. The checkpoint that
// `ostrov train` writes carries the model, its pre-processing and the class names: no config
// and no training data are needed. The mask comes back at the image's own size.
// Run:  segment_image runs/unet/best.pt scene.png [overlay.png]
//       (train one first: README "Quickstart: segmentation")

#include <iostream>

#include <opencv2/core.hpp>
#include <ostrov/ostrov.h>

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: segment_image CHECKPOINT IMAGE [OVERLAY.png]\n";
    return 2;
  }
  const auto predictor = ostrov::tasks::Predictor::load(argv[1], "auto");  // a GPU if there is one
  const cv::Mat image = ostrov::core::read_image(argv[2]);
  const ostrov::tasks::Prediction result = predictor.predict(image);

  // Share of the image each class covers.
  for (size_t c = 0; c < predictor.class_names().size(); ++c) {
    const int pixels = cv::countNonZero(result.mask == static_cast<int>(c));
    if (pixels > 0) {
      std::cout << predictor.class_names()[c] << ": " << 100.0 * pixels / result.mask.total() << "%\n";
    }
  }
  const std::string out = argc > 3 ? argv[3] : "segmented.png";
  ostrov::core::write_image(out, predictor.overlay(image, result));
  std::cout << "wrote " << out << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "segment_image: " << e.what() << "\n";
  return 1;
}
