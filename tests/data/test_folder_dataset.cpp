#include "catch.h"

#include <algorithm>
#include <filesystem>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/folder_dataset.h"
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

cv::Mat picture(int h, int w) {
  cv::Mat m(h, w, CV_8UC3);
  cv::randu(m, 0, 255);
  return m;
}

// A folder with images/<stem>.png and masks/<stem>.png of the given size and label.
void add_pair(const TempDir& dir, const std::string& stem, int h, int w, int label = 1) {
  fs::create_directories(dir.path() / "images");
  fs::create_directories(dir.path() / "masks");
  core::write_image(dir / ("images/" + stem + ".png"), picture(h, w));
  core::write_image(dir / ("masks/" + stem + ".png"), cv::Mat(h, w, CV_8UC1, cv::Scalar(label)));
}

}  // namespace

TEST_CASE("SegmentationFolder reads back what write_scenes wrote", "[data][folder]") {
  TempDir dir;
  const auto o = data::SceneOptions().height(48).width(64).min_scale(14).max_scale(24).seed(4);
  data::write_scenes(items(), o, 5, dir / "set");
  data::SegmentationFolder folder(dir / "set", data::kSceneNumClasses);
  REQUIRE(folder.size() == 5);
  for (int64_t i = 0; i < 5; ++i) {
    const auto scene = data::make_scene(items(), o, i);
    const auto s = folder.get(i);
    INFO("scene " << i);
    CHECK(folder.name(i) == data::scene_name(i, 5));
    CHECK(at::equal(s.image, scene.image));
    CHECK(at::equal(s.mask, scene.mask));
    CHECK(s.image_id == i);
    CHECK(s.source == folder.image_path(i));
    CHECK(s.original_height == 48);
    CHECK(s.original_width == 64);
    CHECK_FALSE(s.instances.defined());
  }
  // num_classes one below the largest label used: the mask holding it is named with the value.
  int64_t top = 0;
  for (int64_t i = 0; i < 5; ++i) top = std::max(top, data::make_scene(items(), o, i).mask.max().item<int64_t>());
  REQUIRE(top >= 2);
  data::SegmentationFolder too_few(dir / "set", top);
  int64_t failing = 0;
  for (int64_t i = 0; i < 5; ++i) {
    if (data::make_scene(items(), o, i).mask.max().item<int64_t>() < top) {
      CHECK_NOTHROW(too_few.get(i));
      continue;
    }
    ++failing;
    CHECK_THROWS_AS(too_few.get(i), DataError);
    CHECK_THROWS_WITH(too_few.get(i), Catch::Contains(too_few.mask_path(i)) &&
                                          Catch::Contains("label " + std::to_string(top)) &&
                                          Catch::Contains("num_classes is " + std::to_string(top)));
  }
  CHECK(failing > 0);
}

TEST_CASE("SegmentationFolder matches by stem and lists unmatched files", "[data][folder]") {
  TempDir dir;
  add_pair(dir, "a", 8, 10);
  core::write_image(dir / "images/b.jpg", picture(8, 10));
  core::write_image(dir / "images/c.JPEG", picture(8, 10));
  core::write_image(dir / "masks/c.png", cv::Mat(8, 10, CV_8UC1, cv::Scalar(0)));
  core::write_image(dir / "masks/d.png", cv::Mat(8, 10, CV_8UC1, cv::Scalar(0)));
  CHECK_THROWS_AS(data::SegmentationFolder(dir.path().string(), 3), DataError);
  CHECK_THROWS_WITH(data::SegmentationFolder(dir.path().string(), 3),
                    Catch::Contains("b.jpg") && Catch::Contains("without a mask") &&
                        Catch::Contains("d.png") && Catch::Contains("without an image") &&
                        !Catch::Contains("a.png"));

  fs::remove(dir / "images/b.jpg");
  fs::remove(dir / "masks/d.png");
  test::write_bytes(dir / "images/notes.txt", "not an image");
  test::write_bytes(dir / "images/.hidden.png", "ignored");
  data::SegmentationFolder folder(dir.path().string(), 3);
  REQUIRE(folder.size() == 2);
  CHECK(folder.name(0) == "a");
  CHECK(folder.name(1) == "c");
  CHECK(folder.get(1).image.sizes() == at::IntArrayRef({3, 8, 10}));

  core::write_image(dir / "images/a.jpg", picture(8, 10));
  CHECK_THROWS_WITH(data::SegmentationFolder(dir.path().string(), 3),
                    Catch::Contains("a.jpg") && Catch::Contains("a.png") &&
                        Catch::Contains("share a name"));
}

TEST_CASE("SegmentationFolder folder errors", "[data][folder]") {
  TempDir dir;
  CHECK_THROWS_AS(data::SegmentationFolder(dir / "nowhere", 3), IoError);
  CHECK_THROWS_WITH(data::SegmentationFolder(dir / "nowhere", 3), Catch::Contains("nowhere"));
  fs::create_directories(dir.path() / "images");
  CHECK_THROWS_WITH(data::SegmentationFolder(dir.path().string(), 3), Catch::Contains("masks"));
  fs::create_directories(dir.path() / "masks");
  CHECK_THROWS_WITH(data::SegmentationFolder(dir.path().string(), 3),
                    Catch::Contains("no image/mask pairs"));
  add_pair(dir, "x", 4, 4);
  CHECK_THROWS_AS(data::SegmentationFolder(dir.path().string(), 0), ConfigError);
  CHECK_THROWS_AS(data::SegmentationFolder(dir.path().string(), 256), ConfigError);
}

TEST_CASE("SegmentationFolder sample errors name the file", "[data][folder]") {
  TempDir dir;
  add_pair(dir, "good", 6, 7, 2);
  add_pair(dir, "ignore", 6, 7, 255);
  add_pair(dir, "label", 6, 7, 5);
  add_pair(dir, "size", 6, 7);
  core::write_image(dir / "masks/size.png", cv::Mat(6, 8, CV_8UC1, cv::Scalar(0)));
  add_pair(dir, "truncated", 6, 7);
  const std::string bytes = test::read_bytes(dir / "images/truncated.png");
  test::write_bytes(dir / "images/truncated.png", bytes.substr(0, bytes.size() - 20));
  add_pair(dir, "rgbmask", 6, 7);
  core::write_image(dir / "masks/rgbmask.png", picture(6, 7));

  data::SegmentationFolder folder(dir.path().string(), 3);
  REQUIRE(folder.size() == 6);
  auto index = [&](const std::string& stem) {
    for (int64_t i = 0; i < folder.size(); ++i) {
      if (folder.name(i) == stem) return i;
    }
    FAIL("no " << stem);
    return int64_t{-1};
  };
  CHECK(folder.get(index("good")).mask.max().item<int64_t>() == 2);
  CHECK(folder.get(index("ignore")).mask.min().item<int64_t>() == 255);

  CHECK_THROWS_AS(folder.get(index("label")), DataError);
  CHECK_THROWS_WITH(folder.get(index("label")),
                    Catch::Contains("masks/label.png") && Catch::Contains("label 5") &&
                        Catch::Contains("42 pixel"));
  CHECK_THROWS_AS(folder.get(index("size")), DataError);
  CHECK_THROWS_WITH(folder.get(index("size")),
                    Catch::Contains("masks/size.png") && Catch::Contains("8x6") &&
                        Catch::Contains("7x6"));
  CHECK_THROWS_AS(folder.get(index("truncated")), IoError);
  CHECK_THROWS_WITH(folder.get(index("truncated")), Catch::Contains("images/truncated.png"));
  CHECK_THROWS_AS(folder.get(index("rgbmask")), IoError);
  CHECK_THROWS_WITH(folder.get(index("rgbmask")), Catch::Contains("masks/rgbmask.png"));
  CHECK_THROWS_WITH(folder.get(6), Catch::Contains("6"));
}
