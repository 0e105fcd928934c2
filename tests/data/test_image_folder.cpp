// ImageFolder (root/<class>/<image>) and write_item_folders, which renders single-item scenes
// in that layout for classification pretraining.
#include "catch.h"

#include <filesystem>
#include <string>

#include <ATen/ATen.h>

#include <opencv2/core.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/fashion_mnist.h"
#include "ostrov/data/image_folder.h"
#include "ostrov/data/scenes.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;
namespace fs = std::filesystem;

namespace {

const data::FashionMnist& items() {
  static const data::FashionMnist m(data::FashionMnistSplit::kTest);
  return m;
}

data::SceneOptions item_options() {
  return data::SceneOptions().height(40).width(40).min_items(1).max_items(1).min_scale(20).max_scale(
      36).seed(5);
}

int64_t count_files(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

}  // namespace

TEST_CASE("write_item_folders puts each single-item scene in its class folder",
          "[data][image_folder]") {
  TempDir dir;
  const auto& names = data::item_folder_names();
  REQUIRE(names.size() == 10);
  CHECK(names[0] == "0_T-shirt_top");
  CHECK(names[9] == "9_Ankle_boot");
  CHECK(data::write_item_folders(items(), item_options(), 30, dir / "set") == 30);
  CHECK(count_files(dir / "set") == 31);  // 30 images + classes.txt
  CHECK(test::read_bytes(dir / "set/classes.txt").rfind("0_T-shirt_top\n1_Trouser\n", 0) == 0);

  data::ImageFolder folder(dir / "set");
  CHECK(folder.size() == 30);
  CHECK(folder.classes() == names);  // the label prefix keeps name order = label order
  for (int64_t i = 0; i < folder.size(); ++i) {
    // The file's scene index -> make_scene's item class (1..10) is the folder's label + 1.
    const std::string stem = fs::path(folder.image_path(i)).stem().string();
    const int64_t scene = std::stoll(stem.substr(6));
    const auto expected = data::make_scene(items(), item_options(), scene).labels;
    REQUIRE(expected.numel() == 1);
    CHECK(folder.label(i) == expected[0].item<int64_t>() - 1);
    CHECK(fs::path(folder.image_path(i)).parent_path().filename() == names[folder.label(i)]);
  }
  const auto s = folder.get(3);
  CHECK(s.image.sizes() == at::IntArrayRef({3, 40, 40}));
  CHECK(s.image.scalar_type() == at::kFloat);
  CHECK(s.labels.sizes() == at::IntArrayRef({1}));
  CHECK(s.labels[0].item<int64_t>() == folder.label(3));
  CHECK(s.source == folder.image_path(3));
  CHECK(s.image_id == 3);
  CHECK_FALSE(s.mask.defined());

  // Same options, same bytes; a previous class-folder set is replaced.
  data::write_item_folders(items(), item_options(), 30, dir / "again");
  CHECK(test::read_bytes(folder.image_path(7)) ==
        test::read_bytes((dir / "again" / fs::relative(folder.image_path(7), dir / "set")).string()));
  data::write_item_folders(items(), item_options(), 12, dir / "set");
  CHECK(count_files(dir / "set") == 13);

  // Never over other folders; more than one item per scene is refused before writing.
  fs::create_directories(dir / "mine");
  test::write_bytes(dir / "mine/notes.txt", "keep me");
  CHECK_THROWS_WITH(data::write_item_folders(items(), item_options(), 2, dir / "mine"),
                    Catch::Contains("mine") && Catch::Contains("refusing"));
  CHECK(test::read_bytes(dir / "mine/notes.txt") == "keep me");
  CHECK_THROWS_AS(data::write_item_folders(items(), item_options().max_items(2), 2, dir / "two"),
                  ConfigError);
  CHECK_FALSE(fs::exists(dir / "two"));
}

TEST_CASE("ImageFolder names the folder or file it cannot use", "[data][image_folder]") {
  TempDir dir;
  CHECK_THROWS_AS(data::ImageFolder(dir / "missing"), IoError);
  fs::create_directories(dir / "empty");
  test::write_bytes(dir / "empty/readme.txt", "no classes here");
  CHECK_THROWS_WITH(data::ImageFolder(dir / "empty"),
                    Catch::Contains("empty") && Catch::Contains("no class folders"));

  data::write_item_folders(items(), item_options(), 10, dir / "set");
  fs::create_directories(dir / "set/.hidden");  // skipped
  test::write_bytes(dir / "set/1_Trouser/notes.txt", "not an image");  // skipped, warned
  test::write_bytes(dir / "set/3_Dress/broken.png", "not a png");
  data::ImageFolder folder(dir / "set");
  CHECK(folder.num_classes() == 10);
  CHECK(data::ImageFolder::list_classes(dir / "set") == folder.classes());
  int64_t broken = -1;
  for (int64_t i = 0; i < folder.size(); ++i) {
    if (fs::path(folder.image_path(i)).filename() == "broken.png") broken = i;
  }
  REQUIRE(broken >= 0);
  CHECK_THROWS_WITH(folder.get(broken), Catch::Contains("broken.png"));

  // A class folder without images keeps its index: the folders after it do not shift.
  fs::create_directories(dir / "set/5_Sandal_extra");
  data::ImageFolder with_empty(dir / "set");
  CHECK(with_empty.num_classes() == 11);
  CHECK(with_empty.classes()[6] == "5_Sandal_extra");
  for (int64_t i = 0; i < with_empty.size(); ++i) {
    CHECK(with_empty.classes()[with_empty.label(i)] ==
          fs::path(with_empty.image_path(i)).parent_path().filename().string());
  }
  fs::create_directories(dir / "bare/a");
  fs::create_directories(dir / "bare/b");
  CHECK_THROWS_WITH(data::ImageFolder(dir / "bare"),
                    Catch::Contains("bare") && Catch::Contains("no image (png, jpg, jpeg, bmp"));
}

TEST_CASE("ImageFolder and is_image_file take torchvision's image extensions, any case",
          "[data][image_folder]") {
  for (const char* name : {"a.png", "b.JPG", "c.jpeg", "d.bmp", "e.tif", "f.TIFF", "g.webp",
                           "h.ppm", "i.pgm"}) {
    CAPTURE(name);
    CHECK(core::is_image_file(name));
  }
  for (const char* name : {"a.gif", "b.txt", "png", "c.png.bak"}) {
    CAPTURE(name);
    CHECK_FALSE(core::is_image_file(name));
  }
  CHECK(core::image_extension_list() == "png, jpg, jpeg, bmp, tif, tiff, webp, ppm, pgm");
  // Every format decodes, by content: a BMP, a TIFF, a WebP (lossless) and a PGM.
  TempDir dir;
  cv::Mat image(12, 10, CV_8UC3, cv::Scalar(10, 200, 30));
  fs::create_directories(dir / "set/cat");
  fs::create_directories(dir / "set/dog");
  core::write_image(dir / "set/cat/a.bmp", image);
  core::write_image(dir / "set/cat/b.tiff", image);
  core::write_image(dir / "set/dog/c.webp", image);
  cv::Mat gray(12, 10, CV_8UC1, cv::Scalar(77));
  core::write_image(dir / "set/dog/d.pgm", gray);
  test::write_bytes(dir / "set/dog/notes.txt", "not an image");
  data::ImageFolder folder(dir / "set");
  REQUIRE(folder.size() == 4);
  for (int64_t i = 0; i < 4; ++i) {
    CAPTURE(folder.image_path(i));
    const auto s = folder.get(i);
    CHECK(s.image.sizes() == at::IntArrayRef({3, 12, 10}));
  }
  CHECK(folder.label(3) == 1);
}
