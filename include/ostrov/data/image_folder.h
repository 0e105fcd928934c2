#pragma once
// Classification folders, torchvision's ImageFolder layout: root/<class>/<name>.{png,jpg,jpeg}.
// The classes are the sub-folders in name order; class index c is the c-th of them.

#include <cstdint>
#include <string>
#include <vector>

#include "ostrov/data/dataset.h"

namespace ostrov::data {

/// One image per sample, labelled by the folder it sits in.
///
/// The constructor lists root's sub-folders (hidden ones skipped) and their images (sorted by
/// class, then file name); ostrov::IoError when root is missing, ostrov::DataError naming root
/// when it has no class folder or no image at all. A class folder without images keeps its
/// class index (so the indices of two splits agree) and is named in a warning; files with
/// other extensions are skipped with one warning. Images are read in get(), which throws
/// ostrov::IoError naming an unreadable or truncated file.
class ImageFolder : public Dataset {
 public:
  /// Lists the classes and images under `root` (see the class description for the errors).
  explicit ImageFolder(const std::string& root);

  int64_t size() const override { return static_cast<int64_t>(paths_.size()); }
  /// image [3,H,W] float RGB in [0,1]; labels [1] int64 = the class index in 0..K-1 (no
  /// background class: the image is the object); image_id = index, source = image path,
  /// original_height/width = H/W; mask, instances and boxes undefined.
  Sample get(int64_t index) const override;

  /// The class names of a folder without listing the images: root's sub-folders (hidden ones
  /// skipped) in name order. ostrov::IoError when root is missing.
  static std::vector<std::string> list_classes(const std::string& root);

  /// The class (sub-folder) names; class index c is classes()[c].
  const std::vector<std::string>& classes() const { return classes_; }
  /// Number of classes K, class folders without images included.
  int64_t num_classes() const { return static_cast<int64_t>(classes_.size()); }
  /// Image file of sample `index` (c10::Error when `index` is out of range).
  const std::string& image_path(int64_t index) const;
  /// Class index (0..K-1) of sample `index` (c10::Error when `index` is out of range).
  int64_t label(int64_t index) const;
  /// The root folder, as given to the constructor.
  const std::string& root() const { return root_; }

 private:
  std::string root_;
  std::vector<std::string> classes_;
  std::vector<std::string> paths_;
  std::vector<int64_t> labels_;
};

}  // namespace ostrov::data
