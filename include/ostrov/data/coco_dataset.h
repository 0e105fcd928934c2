#pragma once
// COCO-format instance annotations (Lin et al. 2014, "Microsoft COCO: Common Objects in
// Context"; the format of cocodataset.org/#format-data): detection boxes, instance masks and a
// semantic mask per image.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "ostrov/data/dataset.h"

namespace ostrov::data {

/// Options of CocoDataset.
struct CocoOptions {
  /// false: the first invalid annotation is an ostrov::DataError. true: invalid annotations
  /// are left out and one warning (ostrov logger) gives their count and the first reason.
  TORCH_ARG(bool, skip_invalid) = false;
  /// false: samples carry only the image, boxes, labels and iscrowd (no class mask, no
  /// instance masks, segmentations not decoded) — what a detector trains on, at a fraction of
  /// the cost. Annotations are validated the same either way.
  TORCH_ARG(bool, masks) = true;
};

/// One entry of the file's "images".
struct CocoImage {
  int64_t id = 0;         ///< COCO image id, unique in the file
  std::string file_name;  ///< image file, relative to the dataset's images folder
  int64_t height = 0;     ///< image height in pixels (> 0; get() checks the file against it)
  int64_t width = 0;      ///< image width in pixels (> 0; get() checks the file against it)
};

/// A COCO instances file with its images folder.
///
/// Reads "images" (id, file_name, height, width), "categories" (id, name) and "annotations"
/// (id, image_id, category_id, bbox [x,y,w,h], segmentation, iscrowd; "area" is not used).
/// Categories get contiguous labels 1..C in ascending category-id order (0 = background); the
/// mapping is kept for writing predictions back with the dataset's own ids. Segmentations may
/// be polygons ([[x0,y0,x1,y1,...], ...]), uncompressed RLE ({"counts": [...], "size": [h,w]})
/// or compressed RLE ({"counts": "...", "size": [h,w]}); an annotation without one (detection
/// data) gets its box filled as mask. Samples keep the file's image and annotation order.
///
/// Errors (ostrov::DataError, each naming the JSON file and the image or annotation id):
/// malformed JSON (with line:column), missing or mistyped fields, duplicate image, category or
/// annotation ids, an annotation for an unknown image or category, a bbox that is not 4 finite
/// numbers, degenerate (w or h <= 0), negative or outside its image by more than 1 px (boxes
/// within that tolerance are clipped), a polygon with an odd count or fewer than 3 points, an RLE
/// whose size is not its image's or whose counts do not sum to h*w, a corrupt RLE string.
/// Annotation errors are skipped instead with skip_invalid. A missing JSON file is an
/// ostrov::IoError; image files are read in get() (ostrov::IoError for missing or truncated
/// files, ostrov::DataError when an image's size differs from its "images" entry).
class CocoDataset : public Dataset {
 public:
  /// Reads and validates `annotations_json` at once; images are read from `images_dir` (joined
  /// with each "file_name") by get().
  CocoDataset(const std::string& annotations_json, const std::string& images_dir,
              CocoOptions options = {});

  /// Number of images (images without annotations included).
  int64_t size() const override;
  /// image [3,H,W] float RGB in [0,1]; instances [K,H,W] uint8; boxes [K,4] float32 x1,y1,x2,y2
  /// (x + w, y + h); labels [K] int64 in 1..C; iscrowd [K] uint8; mask [H,W] int64 with each
  /// annotation's label painted in file order (later ones on top), 0 background; image_id = the
  /// COCO image id; source = the image path; original_height/width = H/W.
  Sample get(int64_t index) const override;

  /// Categories + background.
  int64_t num_classes() const;
  /// label -> COCO category id, index 0 (background) holds 0.
  const std::vector<int64_t>& label_to_category_id() const;
  /// label -> category name, index 0 holds "background".
  const std::vector<std::string>& category_names() const;
  /// COCO category id -> label; ostrov::DataError for an unknown id.
  int64_t category_id_to_label(int64_t category_id) const;
  /// The "images" entry of sample `index`.
  const CocoImage& image(int64_t index) const;
  /// Annotations kept (all of them unless skip_invalid left some out).
  int64_t num_annotations() const;
  /// Annotations left out by skip_invalid.
  int64_t num_skipped() const;
  /// The annotations JSON file, as given to the constructor.
  const std::string& annotations_path() const;
  /// The images folder, as given to the constructor.
  const std::string& images_dir() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;  // shared by copies; never modified after construction
};

}  // namespace ostrov::data
