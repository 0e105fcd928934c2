#include "catch.h"

#include <filesystem>
#include <thread>

#include <ATen/ATen.h>

#include "ostrov/core/error.h"
#include "ostrov/data/fashion_mnist.h"
#include "ostrov/data/scenes.h"
#include "ostrov/io/json.h"
#include "ostrov/ops/instance.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;
namespace fs = std::filesystem;

namespace {

const data::FashionMnist& items() {
  static const data::FashionMnist m(data::FashionMnistSplit::kTest);
  return m;
}

data::SceneOptions small_options() {
  return data::SceneOptions().height(64).width(80).min_items(2).max_items(4).min_scale(16).max_scale(
      32);
}

bool same(const data::Sample& a, const data::Sample& b) {
  return at::equal(a.image, b.image) && at::equal(a.mask, b.mask) &&
         at::equal(a.instances, b.instances) && at::equal(a.boxes, b.boxes) &&
         at::equal(a.labels, b.labels);
}

// Checks everything a scene promises about itself.
void check_consistent(const data::Sample& s, const data::SceneOptions& o) {
  const int64_t h = o.height(), w = o.width();
  REQUIRE(s.image.sizes() == at::IntArrayRef({3, h, w}));
  REQUIRE(s.image.scalar_type() == at::kFloat);
  REQUIRE(s.mask.sizes() == at::IntArrayRef({h, w}));
  REQUIRE(s.mask.scalar_type() == at::kLong);
  const int64_t k = s.labels.size(0);
  REQUIRE(s.instances.sizes() == at::IntArrayRef({k, h, w}));
  REQUIRE(s.instances.scalar_type() == at::kByte);
  REQUIRE(s.boxes.sizes() == at::IntArrayRef({k, 4}));
  REQUIRE(s.boxes.scalar_type() == at::kFloat);
  REQUIRE(s.labels.scalar_type() == at::kLong);
  REQUIRE(s.iscrowd.sizes() == at::IntArrayRef({k}));
  CHECK(s.iscrowd.sum().item<int64_t>() == 0);
  CHECK(s.original_height == h);
  CHECK(s.original_width == w);
  CHECK(k <= o.max_items());
  CHECK(s.image.min().item<float>() >= 0.0f);
  CHECK(s.image.max().item<float>() <= 1.0f);
  // Exact multiples of 1/255 (lossless through PNG).
  CHECK(at::equal((s.image * 255.0f).round() / 255.0f, s.image));
  if (k == 0) return;
  CHECK(s.labels.min().item<int64_t>() >= 1);
  CHECK(s.labels.max().item<int64_t>() <= 10);
  // Disjoint instances, each with enough pixels.
  CHECK(s.instances.to(at::kLong).sum(0).max().item<int64_t>() <= 1);
  CHECK(s.instances.to(at::kLong).sum({1, 2}).min().item<int64_t>() >= o.min_visible_pixels());
  // Boxes are masks_to_boxes of the instances.
  CHECK(at::equal(s.boxes, ops::masks_to_boxes(s.instances)));
  // The class mask is the union of the instances painted with their labels.
  auto painted = (s.instances.to(at::kLong) * s.labels.view({k, 1, 1})).sum(0);
  CHECK(at::equal(painted, s.mask));
  // Coloured: somewhere inside the items the RGB channels differ.
  auto inside = s.mask > 0;
  auto spread = (s.image.amax(0) - s.image.amin(0)).masked_select(inside);
  CHECK(spread.max().item<float>() > 0.1f);
}

}  // namespace

TEST_CASE("make_scene is deterministic in (seed, index) and varies with both", "[data][scenes]") {
  const auto o = small_options().seed(7);
  const auto a = data::make_scene(items(), o, 3);
  const auto b = data::make_scene(items(), o, 3);
  CHECK(same(a, b));
  CHECK(a.image_id == 3);
  CHECK(a.source.empty());
  CHECK_FALSE(at::equal(a.image, data::make_scene(items(), o, 4).image));
  CHECK_FALSE(at::equal(a.image, data::make_scene(items(), small_options().seed(8), 3).image));

  // Independent of call order and thread: scenes made concurrently equal the sequential ones.
  std::vector<data::Sample> sequential;
  for (uint64_t i = 0; i < 6; ++i) sequential.push_back(data::make_scene(items(), o, i));
  std::vector<data::Sample> threaded(6);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 5 - t; i >= 0; i -= 2) threaded[i] = data::make_scene(items(), o, i);
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < 6; ++i) CHECK(same(sequential[i], threaded[i]));
}

TEST_CASE("scenes are consistent: boxes from masks, class mask = union of instances",
          "[data][scenes]") {
  for (auto bg : {data::SceneBackground::kNoise, data::SceneBackground::kTexture,
                  data::SceneBackground::kPlain}) {
    const auto o = small_options().background(bg).seed(11);
    for (uint64_t i = 0; i < 8; ++i) {
      INFO("background " << data::to_string(bg) << " scene " << i);
      check_consistent(data::make_scene(items(), o, i), o);
    }
  }
  // Default options (256x256, 2..6 items of 40..96 px).
  const data::SceneOptions defaults;
  const auto s = data::make_scene(items(), defaults, 0);
  check_consistent(s, defaults);
  CHECK(s.labels.size(0) >= 2);
}

TEST_CASE("scene backgrounds differ in kind", "[data][scenes]") {
  auto background_values = [](data::SceneBackground bg) {
    const auto o = small_options().background(bg).seed(5);
    const auto s = data::make_scene(items(), o, 0);
    auto bgmask = (s.mask == 0).unsqueeze(0).expand({3, -1, -1});
    return std::get<0>(at::_unique(s.image.masked_select(bgmask).view({3, -1}).sum(0))).numel();
  };
  CHECK(background_values(data::SceneBackground::kPlain) == 1);
  CHECK(background_values(data::SceneBackground::kNoise) > 20);
  CHECK(background_values(data::SceneBackground::kTexture) > 20);
  CHECK(data::scene_background_from_string("texture") == data::SceneBackground::kTexture);
  CHECK_THROWS_AS(data::scene_background_from_string("clouds"), ConfigError);
  CHECK_THROWS_WITH(data::scene_background_from_string("clouds"), Catch::Contains("clouds"));
}

TEST_CASE("scene options: count, no overlap, no touching, and errors", "[data][scenes]") {
  // Plenty of room: exactly the number of items asked for.
  const auto roomy = data::SceneOptions()
                         .height(128)
                         .width(128)
                         .min_items(3)
                         .max_items(3)
                         .min_scale(20)
                         .max_scale(28)
                         .max_overlap(0.0)
                         .allow_touching(false)
                         .seed(2);
  for (uint64_t i = 0; i < 5; ++i) {
    const auto s = data::make_scene(items(), roomy, i);
    check_consistent(s, roomy);
    REQUIRE(s.labels.size(0) == 3);
    // No instance touches another: each one grown by one pixel misses all the others.
    auto inst = s.instances.to(at::kFloat).unsqueeze(1);
    auto grown = at::max_pool2d(inst, {3, 3}, {1, 1}, {1, 1}).squeeze(1) > 0;
    for (int64_t a = 0; a < 3; ++a) {
      for (int64_t b = 0; b < 3; ++b) {
        if (a != b) CHECK((grown[a] & (s.instances[b] > 0)).sum().item<int64_t>() == 0);
      }
    }
  }
  // Overlap allowed: some later item covers part of an earlier one, yet every instance keeps
  // min_visible_pixels (checked in check_consistent).
  const auto crowded = small_options().max_overlap(0.8).min_items(6).max_items(6).seed(3);
  for (uint64_t i = 0; i < 4; ++i) check_consistent(data::make_scene(items(), crowded, i), crowded);

  CHECK_THROWS_AS(data::make_scene(items(), small_options().min_items(5).max_items(3), 0),
                  ConfigError);
  CHECK_THROWS_WITH(data::make_scene(items(), small_options().min_items(5).max_items(3), 0),
                    Catch::Contains("max_items 3"));
  CHECK_THROWS_WITH(data::make_scene(items(), small_options().max_overlap(1.5), 0),
                    Catch::Contains("max_overlap"));
  CHECK_THROWS_WITH(data::make_scene(items(), small_options().height(0), 0),
                    Catch::Contains("size"));
  // Items larger than the canvas are capped to it.
  const auto tiny = data::SceneOptions().height(20).width(24).min_items(1).max_items(1);
  check_consistent(data::make_scene(items(), tiny, 0), tiny);
}

TEST_CASE("SceneDataset serves make_scene", "[data][scenes]") {
  const auto o = small_options().seed(9);
  data::SceneDataset dataset(items(), o, 5);
  const data::Dataset& base = dataset;
  CHECK(base.size() == 5);
  CHECK(same(base.get(4), data::make_scene(items(), o, 4)));
  CHECK_THROWS_WITH(base.get(5), Catch::Contains("5"));
  CHECK(data::scene_class_names().size() == data::kSceneNumClasses);
  CHECK(data::scene_class_names()[1] == "T-shirt/top");
}

TEST_CASE("write_scenes gives the same files byte for byte for the same seed", "[data][scenes]") {
  TempDir dir;
  const auto o = small_options().seed(21);
  const auto summary = data::write_scenes(items(), o, 6, dir / "a");
  data::write_scenes(items(), o, 6, dir / "b");
  data::write_scenes(items(), small_options().seed(22), 6, dir / "c");
  CHECK(summary.images == 6);

  std::vector<std::string> files = {"instances.json"};
  for (int i = 0; i < 6; ++i) {
    files.push_back("images/" + data::scene_name(i, 6) + ".png");
    files.push_back("masks/" + data::scene_name(i, 6) + ".png");
  }
  CHECK(data::scene_name(3, 6) == "scene_000003");
  CHECK(data::scene_name(3, 12345678) == "scene_00000003");
  for (const auto& f : files) {
    INFO(f);
    const std::string a = test::read_bytes(dir / ("a/" + f));
    REQUIRE(!a.empty());
    CHECK(a == test::read_bytes(dir / ("b/" + f)));
  }
  CHECK(test::read_bytes(dir / "a/instances.json") != test::read_bytes(dir / "c/instances.json"));
  // Nothing else was written: no staging folders left behind.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 3);
  CHECK(std::distance(fs::directory_iterator(dir / "a/images"), fs::directory_iterator()) == 6);

  // The JSON is COCO with what the scenes hold.
  const auto coco = io::read_json(dir / "a/instances.json");
  REQUIRE(coco["images"].size() == 6);
  REQUIRE(coco["categories"].size() == 10);
  CHECK(coco["categories"][0]["id"] == 1);
  CHECK(coco["categories"][0]["name"] == "T-shirt/top");
  int64_t annotations = 0;
  for (int64_t i = 0; i < 6; ++i) annotations += data::make_scene(items(), o, i).labels.size(0);
  CHECK(summary.annotations == annotations);
  REQUIRE(static_cast<int64_t>(coco["annotations"].size()) == annotations);
  const auto& first = coco["annotations"][0];
  CHECK(first["id"] == 1);
  CHECK(first["iscrowd"] == 0);
  CHECK(first["segmentation"]["counts"].is_string());
  CHECK(first["segmentation"]["size"] == io::Json({64, 80}));
  const auto s0 = data::make_scene(items(), o, 0);
  CHECK(first["area"] == s0.instances[0].sum().item<int64_t>());
  CHECK(first["bbox"][2] == static_cast<int64_t>((s0.boxes[0][2] - s0.boxes[0][0]).item<float>()));

  // Files as an independent reader sees them: PIL reads an 8-bit grey mask equal to the
  // scene's class mask and an RGB image.
  const auto py = test::run_python(dir, "from PIL import Image\nimport numpy as np\n"
                                        "m = Image.open('" + (dir / "a/masks/scene_000000.png") +
                                        "')\ni = Image.open('" + (dir / "a/images/scene_000000.png") +
                                        "')\nprint(m.mode, i.mode, i.size[0], i.size[1], "
                                        "int(np.asarray(m).astype(np.int64).sum()))\n");
  INFO(py.output);
  CHECK(py.output == "L RGB 80 64 " + std::to_string(s0.mask.sum().item<int64_t>()) + "\n");
}

TEST_CASE("write_scenes replaces a previous set but never other folders", "[data][scenes]") {
  TempDir dir;
  const auto o = small_options().seed(1);
  data::write_scenes(items(), o, 3, dir / "set");
  data::write_scenes(items(), o, 2, dir / "set/");  // a previous scene set is replaced
  CHECK(std::distance(fs::directory_iterator(dir / "set/images"), fs::directory_iterator()) == 2);

  fs::create_directories(dir / "mine");
  test::write_bytes(dir / "mine/notes.txt", "keep me");
  CHECK_THROWS_AS(data::write_scenes(items(), o, 2, dir / "mine"), IoError);
  CHECK_THROWS_WITH(data::write_scenes(items(), o, 2, dir / "mine"),
                    Catch::Contains("mine") && Catch::Contains("refusing"));
  CHECK(test::read_bytes(dir / "mine/notes.txt") == "keep me");

  // Bad options fail before anything is written.
  CHECK_THROWS_AS(data::write_scenes(items(), small_options().min_scale(0), 2, dir / "bad"), ConfigError);
  CHECK_FALSE(fs::exists(dir / "bad"));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 2);  // set, mine: no staging folder left
}
