#pragma once
// Scenes composed from real Fashion-MNIST items: K items, each resized, tinted and pasted onto
// a noise, texture or plain background, giving an RGB image with a class mask, instance masks
// and boxes. They are the demo and test data of the segmentation, detection and instance
// models, and `ostrov make-scenes` writes them as a COCO + segmentation-folder split.
//
// A scene depends only on (options, seed, scene index): each scene draws from its own
// std::mt19937_64 seeded from (seed, index) with portable draws, so scenes come out the same
// in any order, on any thread, on every run.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "ostrov/data/dataset.h"
#include "ostrov/data/fashion_mnist.h"
#include "ostrov/data/sample.h"

namespace ostrov::data {

/// What fills the canvas behind the items.
enum class SceneBackground {
  kNoise,    ///< a dark random colour with per-pixel uniform noise
  kTexture,  ///< smooth random colour blobs with stripes and a little noise
  kPlain,    ///< one dark random colour
};

/// Parses "noise", "texture" or "plain"; ostrov::ConfigError naming the string otherwise.
SceneBackground scene_background_from_string(const std::string& name);
/// "noise", "texture" or "plain".
std::string to_string(SceneBackground background);

/// Options of make_scene.
///
/// ```
/// auto options = ostrov::data::SceneOptions().height(128).width(128).max_items(4).seed(7);
/// ```
struct SceneOptions {
  /// Canvas size in pixels.
  TORCH_ARG(int64_t, height) = 256;
  /// Canvas width in pixels (height and width must be in 1..16384).
  TORCH_ARG(int64_t, width) = 256;
  /// The number of items is drawn uniformly from [min_items, max_items]; an item that finds no
  /// allowed place within `max_attempts` positions is left out, so a crowded canvas may hold
  /// fewer.
  TORCH_ARG(int64_t, min_items) = 2;
  /// Most items drawn per scene (min_items <= max_items <= 10000).
  TORCH_ARG(int64_t, max_items) = 6;
  /// Side of a pasted item in pixels (the 28x28 item is resized to s x s with INTER_LINEAR),
  /// drawn uniformly from [min_scale, max_scale] and capped at the canvas size.
  TORCH_ARG(int64_t, min_scale) = 40;
  /// Largest side of a pasted item in pixels (>= min_scale).
  TORCH_ARG(int64_t, max_scale) = 96;
  /// Largest IoU allowed between a new item's mask and the mask of any item placed before it
  /// (full masks, before occlusion). 0 = no overlap.
  TORCH_ARG(double, max_overlap) = 0.2;
  /// When false, an item's mask may not touch (8-neighbourhood) or overlap an earlier one.
  TORCH_ARG(bool, allow_touching) = true;
  /// What fills the canvas behind the items.
  TORCH_ARG(SceneBackground, background) = SceneBackground::kNoise;
  /// A pixel of a resized item belongs to the object when its intensity (0..255) is above this.
  TORCH_ARG(int64_t, threshold) = 20;
  /// Items are pasted in order, later ones occluding earlier ones. A placement that would leave
  /// an earlier item with fewer visible pixels than this is rejected (tried elsewhere), and an
  /// item whose own mask is smaller is redrawn, so every instance keeps at least this many.
  TORCH_ARG(int64_t, min_visible_pixels) = 24;
  /// Positions tried per item before it is left out.
  TORCH_ARG(int64_t, max_attempts) = 50;
  /// Scene i draws from an engine seeded from (seed, i): a seed gives one fixed set of scenes.
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Throws ostrov::ConfigError naming the option when `options` is inconsistent
/// (non-positive sizes, min > max, max_overlap outside [0,1], threshold outside [0,254], ...).
void check_scene_options(const SceneOptions& options);

/// Composes scene `scene_index` from `items`. Returns a Sample with
///   image     [3,H,W] float32 RGB in [0,1] (exact multiples of 1/255, so a PNG round trip is
///             lossless),
///   mask      [H,W] int64: 0 background, 1..10 = Fashion-MNIST class + 1 (11 classes),
///   instances [K,H,W] uint8 visible pixels of each item (disjoint, each >= min_visible_pixels),
///   boxes     [K,4] float32 x1,y1,x2,y2 tight around each instance, x2/y2 exclusive
///             (ops::masks_to_boxes of `instances`),
///   labels    [K] int64 class + 1, iscrowd [K] uint8 zeros,
///   image_id = scene_index, source = "", original_height/width = H/W.
/// `mask` equals the union of `instances` painted with `labels`. Thread-safe.
Sample make_scene(const FashionMnist& items, const SceneOptions& options, uint64_t scene_index);

/// Number of classes of a scene's class mask: 10 Fashion-MNIST classes + background.
constexpr int64_t kSceneNumClasses = 11;

/// Class names of scene labels: "background" then FashionMnist::class_names().
const std::vector<std::string>& scene_class_names();

/// `count` generated scenes in memory: get(i) = make_scene(items, options, i).
class SceneDataset : public Dataset {
 public:
  /// Throws ostrov::ConfigError for invalid `options` (check_scene_options) and c10::Error
  /// for a negative `count`.
  SceneDataset(FashionMnist items, SceneOptions options, int64_t count);
  int64_t size() const override { return count_; }
  Sample get(int64_t index) const override;
  /// The options the scenes are made with.
  const SceneOptions& options() const { return options_; }

 private:
  FashionMnist items_;
  SceneOptions options_;
  int64_t count_;
};

/// The file stem of scene `index` in a set of `count` scenes: "scene_000042" (zero-padded to
/// at least 6 digits, more when count needs them, so names sort in index order).
std::string scene_name(int64_t index, int64_t count);

/// What write_scenes wrote.
struct SceneSetSummary {
  int64_t images = 0;       ///< scenes (images) written, = count
  int64_t annotations = 0;  ///< instance annotations in instances.json, over all scenes
};

/// Writes scenes 0..count-1 as a split usable both as a segmentation folder and as COCO:
///   out_dir/images/<name>.png   the RGB image
///   out_dir/masks/<name>.png    8-bit class index per pixel (0 background, 1..10)
///   out_dir/instances.json      COCO: images (id = scene index, file_name "<name>.png"),
///                               annotations (ids 1.., bbox x,y,w,h, segmentation as compressed
///                               RLE, area, iscrowd 0), categories ids 1..10 with the
///                               Fashion-MNIST names, and "info" with the options.
/// The same items, options and count give the same files byte for byte. Everything is written
/// into a sibling staging folder that is renamed to out_dir at the end, so an error leaves no
/// partial out_dir. An existing out_dir is replaced only when it is empty or holds exactly a
/// previous scene set (instances.json, images/, masks/); anything else is an ostrov::IoError.
/// Scenes are generated on LibTorch's intra-op threads.
SceneSetSummary write_scenes(const FashionMnist& items, const SceneOptions& options, int64_t count,
                             const std::string& out_dir);

/// The class folders write_item_folders makes, in label order: "0_T-shirt_top", "1_Trouser",
/// ..., "9_Ankle_boot" (the Fashion-MNIST names, '/' and ' ' as '_', prefixed with the label so
/// that ImageFolder's name order is the label order).
const std::vector<std::string>& item_folder_names();

/// Writes `count` single-item scenes as classification folders (ImageFolder's layout):
///   out_dir/<item_folder_names()[label]>/<scene name>.png   the RGB scene
///   out_dir/classes.txt                                      the folder names, one per line
/// for pretraining a backbone on the objects the detection scenes hold. `options` must have
/// min_items = max_items = 1 (ostrov::ConfigError otherwise). Same guarantees as write_scenes:
/// byte-identical output for the same inputs, a staging folder renamed at the end, an existing
/// out_dir replaced only when it holds exactly a previous class-folder set. Returns `count`.
int64_t write_item_folders(const FashionMnist& items, const SceneOptions& options, int64_t count,
                           const std::string& out_dir);

}  // namespace ostrov::data
