#include "ostrov/data/folder_dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/core/runtime.h"

namespace fs = std::filesystem;

namespace ostrov::data {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// "a, b, c and 4 more"
std::string list_names(const std::vector<std::string>& names, size_t shown = 20) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < shown; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > shown) out += " and " + std::to_string(names.size() - shown) + " more";
  return out;
}

struct Listing {
  std::map<std::string, std::string> by_stem;  // stem -> path
  std::vector<std::string> duplicates;          // file names sharing a stem
  std::vector<std::string> skipped;             // unexpected extensions
};

Listing list_folder(const fs::path& dir, const std::vector<std::string>& extensions) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError(dir.string() + ": no such folder");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    if (file.empty() || file[0] == '.') continue;
    if (!entry.is_regular_file(ec)) continue;
    files.push_back(entry.path());
  }
  if (ec) throw IoError(dir.string() + ": cannot list folder: " + ec.message());
  std::sort(files.begin(), files.end());
  Listing listing;
  for (const auto& path : files) {
    const std::string ext = lower(path.extension().string());
    if (std::find(extensions.begin(), extensions.end(), ext) == extensions.end()) {
      listing.skipped.push_back(path.filename().string());
      continue;
    }
    const std::string stem = path.stem().string();
    auto [it, inserted] = listing.by_stem.emplace(stem, path.string());
    if (!inserted) {
      listing.duplicates.push_back(fs::path(it->second).filename().string() + " and " +
                                   path.filename().string());
    }
  }
  return listing;
}

}  // namespace

SegmentationFolder::SegmentationFolder(const std::string& root, int64_t num_classes)
    : root_(root), num_classes_(num_classes) {
  if (num_classes < 1 || num_classes > 255) {
    throw ConfigError(root + ": num_classes must be in 1..255 (8-bit masks, 255 = ignore), got " +
                      std::to_string(num_classes));
  }
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw IoError(root + ": no such folder");
  const fs::path images_dir = fs::path(root) / "images";
  const fs::path masks_dir = fs::path(root) / "masks";
  const Listing images = list_folder(images_dir, core::image_extensions());
  const Listing masks = list_folder(masks_dir, {".png"});

  if (!images.duplicates.empty()) {
    throw DataError(images_dir.string() + ": several images share a name: " +
                    list_names(images.duplicates));
  }
  std::vector<std::string> no_mask, no_image;
  for (const auto& [stem, path] : images.by_stem) {
    if (masks.by_stem.count(stem) == 0) no_mask.push_back(fs::path(path).filename().string());
  }
  for (const auto& [stem, path] : masks.by_stem) {
    if (images.by_stem.count(stem) == 0) no_image.push_back(fs::path(path).filename().string());
  }
  if (!no_mask.empty() || !no_image.empty()) {
    std::string message = root + ": unmatched files (pairs are images/<name>.{" +
                          core::image_extension_list() + "} + masks/<name>.png):";
    if (!no_mask.empty()) {
      message += " " + std::to_string(no_mask.size()) + " image(s) in " + images_dir.string() +
                 " without a mask: " + list_names(no_mask) + ";";
    }
    if (!no_image.empty()) {
      message += " " + std::to_string(no_image.size()) + " mask(s) in " + masks_dir.string() +
                 " without an image: " + list_names(no_image) + ";";
    }
    message.pop_back();
    throw DataError(message);
  }
  if (images.by_stem.empty()) {
    throw DataError(root + ": no image/mask pairs (expected images/<name>.{" +
                    core::image_extension_list() + "} and masks/<name>.png)");
  }
  std::vector<std::string> skipped = images.skipped;
  for (const auto& s : masks.skipped) skipped.push_back("masks/" + s);
  if (!skipped.empty()) {
    core::logger()->warn("{}: skipped {} file(s) that are neither images ({}) nor .png masks: {}",
                         root, skipped.size(), core::image_extension_list(),
                         list_names(skipped, 5));
  }
  for (const auto& [stem, path] : images.by_stem) {
    names_.push_back(stem);
    image_paths_.push_back(path);
    mask_paths_.push_back(masks.by_stem.at(stem));
  }
}

namespace {
void check_index(int64_t index, int64_t size) {
  TORCH_CHECK(index >= 0 && index < size, "SegmentationFolder: index ", index, " out of range [0,",
              size, ")");
}
}  // namespace

const std::string& SegmentationFolder::name(int64_t index) const {
  check_index(index, size());
  return names_[index];
}

const std::string& SegmentationFolder::image_path(int64_t index) const {
  check_index(index, size());
  return image_paths_[index];
}

const std::string& SegmentationFolder::mask_path(int64_t index) const {
  check_index(index, size());
  return mask_paths_[index];
}

Sample SegmentationFolder::get(int64_t index) const {
  const std::string& image_file = image_path(index);
  const std::string& mask_file = mask_path(index);
  const cv::Mat image = core::read_image(image_file);
  at::Tensor mask = core::read_mask(mask_file);
  if (mask.size(0) != image.rows || mask.size(1) != image.cols) {
    throw DataError(mask_file + ": mask is " + std::to_string(mask.size(1)) + "x" +
                    std::to_string(mask.size(0)) + " (WxH) but its image " + image_file + " is " +
                    std::to_string(image.cols) + "x" + std::to_string(image.rows));
  }
  const at::Tensor bad = (mask >= num_classes_) & (mask != kIgnoreIndex);
  if (bad.any().item<bool>()) {
    const at::Tensor values = mask.masked_select(bad);
    const int64_t value = values.min().item<int64_t>();
    throw DataError(mask_file + ": label " + std::to_string(value) + " (" +
                    std::to_string(values.numel()) + " pixel(s) with labels >= " +
                    std::to_string(num_classes_) + ") but num_classes is " +
                    std::to_string(num_classes_) + "; labels must be < " +
                    std::to_string(num_classes_) + " or 255 (ignore)");
  }
  Sample sample;
  sample.image = core::image_to_tensor(image);
  sample.mask = mask;
  sample.image_id = index;
  sample.source = image_file;
  sample.original_height = image.rows;
  sample.original_width = image.cols;
  return sample;
}

}  // namespace ostrov::data
