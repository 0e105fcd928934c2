#include "catch.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/coco_dataset.h"
#include "ostrov/data/scenes.h"
#include "ostrov/io/json.h"
#include "ostrov/ops/instance.h"
#include "support.h"

using namespace ostrov;
using ostrov::io::Json;
using ostrov::test::TempDir;
namespace fs = std::filesystem;

namespace {

const data::FashionMnist& items() {
  static const data::FashionMnist m(data::FashionMnistSplit::kTest);
  return m;
}

// Two images: id 10 "a.png" 4x3 (HxW) and id 20 "b.png" 8x6; categories with ids 7, 3, 12
// (so labels: 3 -> 1, 7 -> 2, 12 -> 3).
Json base_coco() {
  return Json{{"images",
               {{{"id", 10}, {"file_name", "a.png"}, {"height", 4}, {"width", 3}},
                {{"id", 20}, {"file_name", "b.png"}, {"height", 8}, {"width", 6}}}},
              {"categories",
               {{{"id", 7}, {"name", "seven"}},
                {{"id", 3}, {"name", "three"}},
                {{"id", 12}, {"name", "twelve"}}}},
              {"annotations", Json::array()}};
}

void write_images(const TempDir& dir) {
  fs::create_directories(dir.path() / "img");
  cv::Mat a(4, 3, CV_8UC3), b(8, 6, CV_8UC3);
  cv::randu(a, 0, 255);
  cv::randu(b, 0, 255);
  core::write_image(dir / "img/a.png", a);
  core::write_image(dir / "img/b.png", b);
}

data::CocoDataset load(const TempDir& dir, const Json& coco, bool skip = false) {
  io::write_json(dir / "ann.json", coco);
  return data::CocoDataset(dir / "ann.json", dir / "img", data::CocoOptions().skip_invalid(skip));
}

Json annotation(int64_t id, int64_t image_id, int64_t category_id, Json bbox) {
  return Json{{"id", id}, {"image_id", image_id}, {"category_id", category_id},
              {"bbox", std::move(bbox)}, {"iscrowd", 0}};
}

}  // namespace

TEST_CASE("CocoDataset reads back what write_scenes wrote", "[data][coco]") {
  TempDir dir;
  const auto o = data::SceneOptions().height(48).width(64).min_scale(14).max_scale(24).seed(6);
  const auto summary = data::write_scenes(items(), o, 5, dir / "set");
  data::CocoDataset coco(dir / "set/instances.json", dir / "set/images");
  REQUIRE(coco.size() == 5);
  CHECK(coco.num_annotations() == summary.annotations);
  CHECK(coco.num_skipped() == 0);
  CHECK(coco.num_classes() == data::kSceneNumClasses);
  CHECK(coco.category_names() == data::scene_class_names());
  CHECK(coco.label_to_category_id() ==
        std::vector<int64_t>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  for (int64_t i = 0; i < 5; ++i) {
    INFO("scene " << i);
    const auto scene = data::make_scene(items(), o, i);
    const auto s = coco.get(i);
    CHECK(at::equal(s.image, scene.image));
    CHECK(at::equal(s.mask, scene.mask));
    CHECK(at::equal(s.instances, scene.instances));
    CHECK(at::equal(s.boxes, scene.boxes));
    CHECK(at::equal(s.labels, scene.labels));
    CHECK(at::equal(s.iscrowd, scene.iscrowd));
    CHECK(s.image_id == scene.image_id);
    CHECK(s.source == (fs::path(dir / "set/images") / (data::scene_name(i, 5) + ".png")).string());
  }
  // masks(false), for detection: the same image, boxes and labels, no masks decoded.
  data::CocoDataset boxes_only(dir / "set/instances.json", dir / "set/images",
                               data::CocoOptions().masks(false));
  for (int64_t i = 0; i < 5; ++i) {
    const auto full = coco.get(i);
    const auto s = boxes_only.get(i);
    CHECK(at::equal(s.image, full.image));
    CHECK(at::equal(s.boxes, full.boxes));
    CHECK(at::equal(s.labels, full.labels));
    CHECK(at::equal(s.iscrowd, full.iscrowd));
    CHECK_FALSE(s.mask.defined());
    CHECK_FALSE(s.instances.defined());
  }
}

TEST_CASE("CocoDataset decodes polygons, both RLEs and box-only annotations", "[data][coco]") {
  TempDir dir;
  write_images(dir);
  Json coco = base_coco();
  // Image a (4x3). Uncompressed RLE [2,3,7] read column-major (y fastest): pixels 0,1 are 0,
  // pixels 2,3,4 are 1 -> (y2,x0), (y3,x0), (y0,x1); 7 zeros follow; 2+3+7 = 12 = 4*3.
  Json rle_ann = annotation(1, 10, 3, {0, 0, 2, 4});
  rle_ann["segmentation"] = {{"counts", {2, 3, 7}}, {"size", {4, 3}}};
  rle_ann["iscrowd"] = 1;
  coco["annotations"].push_back(rle_ann);
  // Image b (8x6): a polygon, a compressed RLE on top of it, a box-only annotation.
  Json poly_ann = annotation(2, 20, 7, {1, 1, 3, 4});
  poly_ann["segmentation"] = {{1.0, 1.0, 4.0, 1.0, 4.0, 5.0, 1.0, 5.0}};
  coco["annotations"].push_back(poly_ann);
  at::Tensor square = at::zeros({8, 6}, at::kByte);
  square.slice(0, 2, 4).slice(1, 2, 5).fill_(1);  // rows 2..3, columns 2..4
  const ops::Rle square_rle = ops::rle_encode(square);
  Json string_ann = annotation(3, 20, 12, {2, 2, 3, 2});
  string_ann["segmentation"] = {{"counts", ops::rle_to_string(square_rle)}, {"size", {8, 6}}};
  coco["annotations"].push_back(string_ann);
  coco["annotations"].push_back(annotation(4, 20, 3, {0.5, 6, 2, 2}));  // no segmentation

  const auto dataset = load(dir, coco);
  REQUIRE(dataset.size() == 2);
  CHECK(dataset.num_classes() == 4);
  CHECK(dataset.label_to_category_id() == std::vector<int64_t>({0, 3, 7, 12}));
  CHECK(dataset.category_names() == std::vector<std::string>({"background", "three", "seven", "twelve"}));
  CHECK(dataset.category_id_to_label(12) == 3);
  CHECK_THROWS_WITH(dataset.category_id_to_label(5), Catch::Contains("5"));
  CHECK(dataset.image(1).file_name == "b.png");

  const auto a = dataset.get(0);
  CHECK(a.image_id == 10);
  REQUIRE(a.instances.sizes() == at::IntArrayRef({1, 4, 3}));
  at::Tensor expected_a = at::zeros({4, 3}, at::kByte);
  expected_a[2][0] = 1;
  expected_a[3][0] = 1;
  expected_a[0][1] = 1;
  CHECK(at::equal(a.instances[0], expected_a));
  CHECK(at::equal(a.mask, expected_a.to(at::kLong)));  // label of category 3 is 1
  CHECK(at::equal(a.labels, at::tensor({int64_t{1}})));
  CHECK(at::equal(a.iscrowd, at::tensor({uint8_t{1}})));
  CHECK(at::equal(a.boxes, at::tensor({0.0f, 0.0f, 2.0f, 4.0f}).view({1, 4})));

  const auto b = dataset.get(1);
  REQUIRE(b.instances.sizes() == at::IntArrayRef({3, 8, 6}));
  CHECK(at::equal(b.labels, at::tensor({int64_t{2}, int64_t{3}, int64_t{1}})));
  CHECK(at::equal(b.iscrowd, at::zeros({3}, at::kByte)));
  CHECK(at::equal(b.boxes[0], at::tensor({1.0f, 1.0f, 4.0f, 5.0f})));  // x,y,w,h -> x1,y1,x2,y2
  CHECK(at::equal(b.boxes[3 - 1], at::tensor({0.5f, 6.0f, 2.5f, 8.0f})));
  const auto polygon = ops::polygons_to_mask({{1.0, 1.0, 4.0, 1.0, 4.0, 5.0, 1.0, 5.0}}, 8, 6);
  CHECK(at::equal(b.instances[0], polygon));
  CHECK(at::equal(b.instances[1], square));
  // Box-only: the pixels the box touches, columns 0..2 (x from 0.5 to 2.5), rows 6..7.
  at::Tensor box_mask = at::zeros({8, 6}, at::kByte);
  box_mask.slice(0, 6, 8).slice(1, 0, 3).fill_(1);
  CHECK(at::equal(b.instances[2], box_mask));
  // Semantic mask: later annotations on top.
  at::Tensor semantic = at::zeros({8, 6}, at::kLong);
  semantic.masked_fill_(polygon.to(at::kBool), 2);
  semantic.masked_fill_(square.to(at::kBool), 3);
  semantic.masked_fill_(box_mask.to(at::kBool), 1);
  CHECK(at::equal(b.mask, semantic));
  CHECK(b.mask[3][3].item<int64_t>() == 3);  // inside both polygon and square
}

TEST_CASE("CocoDataset errors name the file and the annotation id", "[data][coco]") {
  TempDir dir;
  write_images(dir);
  const std::string file = dir / "ann.json";

  // One valid annotation plus the bad one: the error names the file and the bad one's id;
  // with skip_invalid the valid one stays and one is counted as skipped.
  auto check_bad = [&](Json bad, const std::string& reason) {
    const int64_t id = bad["id"].get<int64_t>();
    Json coco = base_coco();
    Json good = annotation(1000, 20, 3, {1, 1, 2, 2});
    coco["annotations"] = {good, bad};
    INFO("annotation " << bad.dump() << " expecting " << reason);
    CHECK_THROWS_AS(load(dir, coco), DataError);
    CHECK_THROWS_WITH(load(dir, coco), Catch::Contains(file) &&
                                           Catch::Contains("annotation id " + std::to_string(id)) &&
                                           Catch::Contains(reason));
    const auto skipping = load(dir, coco, /*skip=*/true);
    CHECK(skipping.num_skipped() == 1);
    CHECK(skipping.num_annotations() == 1);
    CHECK(skipping.get(1).labels.size(0) == 1);
  };

  check_bad(annotation(5, 99, 3, {0, 0, 1, 1}), "unknown image id 99");
  check_bad(annotation(6, 10, 42, {0, 0, 1, 1}), "unknown category id 42");
  check_bad(annotation(1000, 10, 3, {0, 0, 1, 1}), "duplicate annotation id");
  check_bad(annotation(7, 10, 3, {0, 0, 0, 2}), "degenerate");
  check_bad(annotation(8, 10, 3, {1, 1, 2, -1}), "degenerate");
  check_bad(annotation(9, 10, 3, {-3, 0, 2, 2}), "negative");
  check_bad(annotation(11, 10, 3, {2, 0, 3, 2}), "outside");  // x + w = 5 > width 3 + 1
  check_bad(annotation(12, 10, 3, {0, 0, 1}), "bbox");
  check_bad(annotation(13, 10, 3, {0, "x", 1, 1}), "bbox");
  {
    Json a = annotation(14, 20, 3, {0, 0, 2, 2});
    a["segmentation"] = {{0.0, 0.0, 2.0, 0.0}};  // two points
    check_bad(a, "invalid polygon 0");
    a["segmentation"] = {{0.0, 0.0, 2.0, 0.0, 2.0}};  // odd count
    check_bad(a, "invalid polygon 0");
    a["segmentation"] = {{0.0, 0.0, 2.0, 0.0, 2.0, "y"}};
    check_bad(a, "invalid polygon 0");
  }
  {
    Json a = annotation(15, 10, 3, {0, 0, 2, 2});
    a["segmentation"] = {{"counts", {2, 3, 6}}, {"size", {4, 3}}};  // 11 != 12
    check_bad(a, "counts sum to 11");
    a["segmentation"] = {{"counts", {2, -3, 13}}, {"size", {4, 3}}};
    check_bad(a, "invalid uncompressed RLE");
    a["segmentation"] = {{"counts", {12}}, {"size", {3, 4}}};
    check_bad(a, "RLE size [3, 4]");
    // A compressed string for a 3x3 mask (9 pixels) given to a 4x3 image.
    const auto nine = ops::rle_to_string(ops::rle_encode(at::ones({3, 3}, at::kByte)));
    a["segmentation"] = {{"counts", nine}, {"size", {4, 3}}};
    check_bad(a, "annotation id 15");
    a["segmentation"] = {{"counts", "\x7f\x7f"}, {"size", {4, 3}}};  // characters outside '0'..'o'
    check_bad(a, "invalid compressed RLE");
  }
  {
    Json a = annotation(16, 10, 3, {0, 0, 1, 1});
    a["iscrowd"] = 2;
    check_bad(a, "iscrowd");
  }

  // skip_invalid counts every skipped annotation.
  Json coco = base_coco();
  coco["annotations"] = {annotation(1, 10, 3, {0, 0, 1, 1}), annotation(2, 99, 3, {0, 0, 1, 1}),
                         annotation(3, 20, 3, {0, 0, 0, 1}), annotation(4, 20, 44, {0, 0, 1, 1}),
                         annotation(5, 20, 7, {0, 0, 1, 1})};
  const auto skipping = load(dir, coco, true);
  CHECK(skipping.num_skipped() == 3);
  CHECK(skipping.num_annotations() == 2);
  CHECK(skipping.get(0).labels.size(0) == 1);
  CHECK(at::equal(skipping.get(1).labels, at::tensor({int64_t{2}})));
  CHECK_THROWS_WITH(load(dir, coco), Catch::Contains("annotation id 2"));
}

TEST_CASE("CocoDataset file-level errors", "[data][coco]") {
  TempDir dir;
  write_images(dir);
  const std::string file = dir / "ann.json";
  CHECK_THROWS_AS(data::CocoDataset(dir / "missing.json", dir / "img"), IoError);
  CHECK_THROWS_WITH(data::CocoDataset(dir / "missing.json", dir / "img"),
                    Catch::Contains("missing.json"));

  test::write_bytes(file, "{\"images\": [\n  {\"id\": 1,}\n]}");
  CHECK_THROWS_AS(data::CocoDataset(file, dir / "img"), DataError);
  CHECK_THROWS_WITH(data::CocoDataset(file, dir / "img"),
                    Catch::Contains(file + ":2:") && Catch::Contains("malformed JSON"));

  Json coco = base_coco();
  coco["images"].push_back({{"id", 10}, {"file_name", "c.png"}, {"height", 4}, {"width", 3}});
  CHECK_THROWS_WITH(load(dir, coco), Catch::Contains(file) && Catch::Contains("duplicate image id 10"));
  // Structural errors are not skipped by skip_invalid.
  CHECK_THROWS_WITH(load(dir, coco, true), Catch::Contains("duplicate image id 10"));

  coco = base_coco();
  coco["categories"].push_back({{"id", 3}, {"name", "again"}});
  CHECK_THROWS_WITH(load(dir, coco), Catch::Contains("duplicate category id 3"));
  coco = base_coco();
  coco.erase("images");
  CHECK_THROWS_WITH(load(dir, coco), Catch::Contains(file) && Catch::Contains("\"images\""));
  coco = base_coco();
  coco["images"][1].erase("width");
  CHECK_THROWS_WITH(load(dir, coco), Catch::Contains("image id 20") && Catch::Contains("width"));
  CHECK_THROWS_WITH(load(dir, Json::array()), Catch::Contains("JSON object"));

  // Image files are checked when read.
  coco = base_coco();
  coco["images"][1]["height"] = 9;
  const auto wrong_size = load(dir, coco);
  CHECK_THROWS_AS(wrong_size.get(1), DataError);
  CHECK_THROWS_WITH(wrong_size.get(1), Catch::Contains("b.png") && Catch::Contains("image id 20"));
  coco = base_coco();
  coco["images"][0]["file_name"] = "gone.png";
  CHECK_THROWS_AS(load(dir, coco).get(0), IoError);
  CHECK_THROWS_WITH(load(dir, coco).get(0), Catch::Contains("gone.png"));
  // An image without annotations has empty targets.
  const auto empty = load(dir, base_coco()).get(1);
  CHECK(empty.instances.sizes() == at::IntArrayRef({0, 8, 6}));
  CHECK(empty.boxes.sizes() == at::IntArrayRef({0, 4}));
  CHECK(empty.mask.sum().item<int64_t>() == 0);
}
