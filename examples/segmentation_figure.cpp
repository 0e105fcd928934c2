// segmentation_figure — one picture that shows what a segmentation model gets right and wrong.
//
// Shows: tasks::Predictor on a folder dataset, the class palette of data/visualize.h, and
// drawing with OpenCV. Each row is one image: input | ground truth | prediction | errors (red
// where the prediction differs from the ground truth, the ignore label excepted), with the
// image's pixel accuracy; a legend names the classes in their colours; the run's loss.png
// (`ostrov train` writes it) goes below when given. `make demo` writes build/demo/figure.png
// with it.
// Run:  segmentation_figure CHECKPOINT DATA_ROOT OUT.png [--count N] [--loss-plot loss.png]
//       DATA_ROOT holds images/ and masks/ (the folder format of the README's quickstart).

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <ostrov/ostrov.h>

namespace {

namespace fs = std::filesystem;

constexpr int kCell = 192;   // every panel is drawn kCell x kCell pixels
constexpr int kMargin = 8;
constexpr int kHeader = 28;  // column titles
const cv::Scalar kWhite(255, 255, 255);
const cv::Scalar kText(30, 30, 30);

// Nearest-neighbour scaling keeps class borders sharp.
cv::Mat cell(const cv::Mat& picture) {
  cv::Mat out;
  cv::resize(picture, out, cv::Size(kCell, kCell), 0, 0, cv::INTER_NEAREST);
  return out;
}

void put_text(cv::Mat& canvas, const std::string& text, cv::Point at, double scale = 0.5) {
  cv::putText(canvas, text, at, cv::FONT_HERSHEY_SIMPLEX, scale, kText, 1, cv::LINE_AA);
}

// Legend: a swatch and the name of every class, wrapped into rows of the canvas width.
cv::Mat legend(const std::vector<std::string>& names, int width) {
  const int entry = 150, row = 24;
  const int per_row = std::max(1, (width - 2 * kMargin) / entry);
  const int rows = (static_cast<int>(names.size()) + per_row - 1) / per_row;
  cv::Mat out(rows * row + 2 * kMargin, width, CV_8UC3, kWhite);
  for (size_t c = 0; c < names.size(); ++c) {
    const int x = kMargin + static_cast<int>(c % per_row) * entry;
    const int y = kMargin + static_cast<int>(c / per_row) * row;
    const cv::Vec3b colour = ostrov::data::class_color(static_cast<int64_t>(c));
    cv::rectangle(out, cv::Rect(x, y + 3, 16, 16), cv::Scalar(colour[0], colour[1], colour[2]),
                  cv::FILLED);
    cv::rectangle(out, cv::Rect(x, y + 3, 16, 16), kText, 1);
    put_text(out, names[c], cv::Point(x + 22, y + 16));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<std::string> positional;
  int count = 6;
  std::string loss_plot;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--count" && i + 1 < argc) count = std::stoi(argv[++i]);
    else if (a == "--loss-plot" && i + 1 < argc) loss_plot = argv[++i];
    else positional.push_back(a);
  }
  if (positional.size() != 3 || count < 1) {
    std::cerr << "usage: segmentation_figure CHECKPOINT DATA_ROOT OUT.png [--count N] "
                 "[--loss-plot loss.png]\n";
    return 2;
  }
  const auto predictor = ostrov::tasks::Predictor::load(positional[0], "auto");
  if (predictor.task() != "segmentation") {
    std::cerr << "segmentation_figure: " << positional[0] << " is a " << predictor.task()
              << " checkpoint, not segmentation\n";
    return 2;
  }
  const fs::path root = positional[1];
  std::vector<fs::path> images;
  for (const auto& entry : fs::directory_iterator(root / "images")) {
    if (ostrov::core::is_image_file(entry.path().string())) images.push_back(entry.path());
  }
  std::sort(images.begin(), images.end());
  images.resize(std::min<size_t>(images.size(), static_cast<size_t>(count)));
  if (images.empty()) {
    std::cerr << "segmentation_figure: no images in " << (root / "images") << "\n";
    return 1;
  }

  const std::vector<std::string> titles = {"input", "ground truth", "prediction", "errors"};
  const int columns = static_cast<int>(titles.size());
  const int width = kMargin + columns * (kCell + kMargin);
  const int row_height = kCell + kMargin + 18;  // + a caption line
  cv::Mat grid(kHeader + static_cast<int>(images.size()) * row_height, width, CV_8UC3, kWhite);
  for (int c = 0; c < columns; ++c) {
    put_text(grid, titles[c], cv::Point(kMargin + c * (kCell + kMargin), 20), 0.6);
  }

  int64_t right = 0, counted = 0;
  for (size_t r = 0; r < images.size(); ++r) {
    const cv::Mat image = ostrov::core::read_image(images[r].string());
    const fs::path mask_path = root / "masks" / (images[r].stem().string() + ".png");
    const at::Tensor truth = ostrov::core::read_mask(mask_path.string());
    const at::Tensor predicted = ostrov::core::mat_to_mask(predictor.predict(image).mask);

    // Errors: the input greyed out, wrong pixels red; the ignore label (255) is not counted.
    const at::Tensor valid = truth != 255;
    const at::Tensor wrong = (predicted != truth).logical_and(valid);
    cv::Mat grey, errors;
    cv::cvtColor(image, grey, cv::COLOR_BGR2GRAY);
    cv::cvtColor(grey / 2 + 100, errors, cv::COLOR_GRAY2BGR);
    errors.setTo(cv::Scalar(0, 0, 255), ostrov::core::mask_to_mat(wrong.to(torch::kLong) * 255));

    const int64_t n_valid = valid.sum().item<int64_t>();
    const int64_t n_right = n_valid - wrong.sum().item<int64_t>();
    right += n_right;
    counted += n_valid;

    const std::vector<cv::Mat> panels = {image, ostrov::data::colorize_mask(truth),
                                         ostrov::data::colorize_mask(predicted), errors};
    const int y = kHeader + static_cast<int>(r) * row_height;
    for (int c = 0; c < columns; ++c) {
      cell(panels[c]).copyTo(grid(cv::Rect(kMargin + c * (kCell + kMargin), y, kCell, kCell)));
    }
    const double accuracy = n_valid > 0 ? 100.0 * n_right / n_valid : 100.0;
    put_text(grid, images[r].filename().string() + ": " + cv::format("%.1f", accuracy) +
                       "% of pixels right",
             cv::Point(kMargin, y + kCell + 16), 0.45);
  }

  std::vector<cv::Mat> parts = {grid, legend(predictor.class_names(), width)};
  if (!loss_plot.empty()) {
    cv::Mat plot = ostrov::core::read_image(loss_plot);
    const double s = static_cast<double>(width) / plot.cols;
    cv::resize(plot, plot, cv::Size(width, static_cast<int>(plot.rows * s)), 0, 0, cv::INTER_AREA);
    parts.push_back(plot);
  }
  cv::Mat figure;
  cv::vconcat(parts, figure);
  ostrov::core::write_image(positional[2], figure);
  std::cout << "pixel accuracy over the " << images.size() << " images: "
            << cv::format("%.1f", counted > 0 ? 100.0 * right / counted : 100.0) << "%\n"
            << "wrote " << positional[2] << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "segmentation_figure: " << e.what() << "\n";
  return 1;
}
