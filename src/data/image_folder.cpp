#include "ostrov/data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/core/runtime.h"

namespace fs = std::filesystem;

namespace ostrov::data {

namespace {

bool hidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return name.empty() || name[0] == '.';
}

}  // namespace

std::vector<std::string> ImageFolder::list_classes(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw IoError(root + ": no such folder");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!hidden(entry.path()) && entry.is_directory(ec)) {
      names.push_back(entry.path().filename().string());
    }
  }
  if (ec) throw IoError(root + ": cannot list folder: " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

ImageFolder::ImageFolder(const std::string& root) : root_(root) {
  const std::vector<std::string> names = list_classes(root);
  if (names.empty()) {
    throw DataError(root + ": no class folders (expected " + root +
                    "/<class>/<name>.{png,jpg,jpeg}, one folder per class)");
  }
  std::error_code ec;
  int64_t skipped = 0;
  std::string first_skipped;
  std::vector<std::string> empty;
  for (const auto& name : names) {
    const fs::path dir = fs::path(root) / name;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (hidden(entry.path()) || !entry.is_regular_file(ec)) continue;
      if (core::is_image_file(entry.path().string())) {
        files.push_back(entry.path());
      } else if (skipped++ == 0) {
        first_skipped = entry.path().string();
      }
    }
    if (ec) throw IoError(dir.string() + ": cannot list folder: " + ec.message());
    if (files.empty()) empty.push_back(name);
    std::sort(files.begin(), files.end());
    const auto label = static_cast<int64_t>(classes_.size());
    classes_.push_back(name);
    for (const auto& f : files) {
      paths_.push_back(f.string());
      labels_.push_back(label);
    }
  }
  if (paths_.empty()) {
    throw DataError(root + ": no image (" + core::image_extension_list() + ") in any of its " +
                    std::to_string(names.size()) + " class folders");
  }
  if (!empty.empty()) {
    std::string list;
    for (const auto& name : empty) list += (list.empty() ? "" : ", ") + name;
    core::logger()->warn("{}: {} class folder(s) without images (their class indices are kept): "
                         "{}",
                         root, empty.size(), list);
  }
  if (skipped > 0) {
    core::logger()->warn("{}: skipped {} file(s) that are not images ({}) (first: {})",
                         root, skipped, core::image_extension_list(), first_skipped);
  }
}

const std::string& ImageFolder::image_path(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "ImageFolder: index ", index, " out of range [0,",
              size(), ")");
  return paths_[index];
}

int64_t ImageFolder::label(int64_t index) const {
  image_path(index);  // range check
  return labels_[index];
}

Sample ImageFolder::get(int64_t index) const {
  const std::string& file = image_path(index);
  const cv::Mat image = core::read_image(file);
  Sample sample;
  sample.image = core::image_to_tensor(image);
  sample.labels = at::full({1}, labels_[index], at::kLong);
  sample.image_id = index;
  sample.source = file;
  sample.original_height = image.rows;
  sample.original_width = image.cols;
  return sample;
}

}  // namespace ostrov::data
