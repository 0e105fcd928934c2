#pragma once
// Segmentation folders (docs/architecture.md "Data formats"): root/images/<name>.{png,jpg,jpeg} with
// root/masks/<name>.png, an 8-bit class index per pixel (255 = ignore).

#include <cstdint>
#include <string>
#include <vector>

#include "ostrov/data/dataset.h"

namespace ostrov::data {

/// Image/mask pairs matched by file stem, in name order.
///
/// The constructor lists both folders and throws ostrov::DataError naming the folder and listing
/// the unmatched files (images without a mask, masks without an image, two images with the same
/// stem) and when no pair is found; ostrov::IoError when a folder is missing. Hidden files are
/// skipped; other files with an unexpected extension are skipped with one warning. Files are
/// read in get(), which throws ostrov::IoError for unreadable or truncated files and
/// ostrov::DataError naming the mask file for a mask whose size differs from its image or that
/// holds a label >= num_classes other than 255 (the message gives the value and its count).
class SegmentationFolder : public Dataset {
 public:
  /// Pairs `root`/images with `root`/masks; `num_classes` counts the mask's labels, background
  /// included (ostrov::ConfigError unless in 1..255).
  SegmentationFolder(const std::string& root, int64_t num_classes);

  int64_t size() const override { return static_cast<int64_t>(names_.size()); }
  /// image [3,H,W] float RGB in [0,1], mask [H,W] int64, image_id = index, source = image path,
  /// original_height/width = H/W; instance fields undefined.
  Sample get(int64_t index) const override;

  /// Stem of pair `index` ("scene_000003").
  const std::string& name(int64_t index) const;
  /// Image file of pair `index` (c10::Error when `index` is out of range).
  const std::string& image_path(int64_t index) const;
  /// Mask file of pair `index` (c10::Error when `index` is out of range).
  const std::string& mask_path(int64_t index) const;
  /// Number of classes, as given to the constructor.
  int64_t num_classes() const { return num_classes_; }
  /// The root folder, as given to the constructor.
  const std::string& root() const { return root_; }

  /// The value a mask uses for "ignore this pixel".
  static constexpr int64_t kIgnoreIndex = 255;

 private:
  std::string root_;
  int64_t num_classes_;
  std::vector<std::string> names_;
  std::vector<std::string> image_paths_;
  std::vector<std::string> mask_paths_;
};

}  // namespace ostrov::data
