#include "catch.h"

#include <memory>
#include <random>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "data/synthetic_sample.h"
#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "ostrov/data/transforms.h"

using namespace ostrov;
using namespace ostrov::data;
using ostrov::test::consistency_problem;
using ostrov::test::rect_sample;
using TransformPtr = std::shared_ptr<const Transform>;

namespace {

constexpr int64_t kObjects = 6;

bool samples_equal(const Sample& a, const Sample& b) {
  auto eq = [](const at::Tensor& x, const at::Tensor& y) {
    if (x.defined() != y.defined()) return false;
    return !x.defined() || (x.sizes() == y.sizes() && at::equal(x, y));
  };
  return eq(a.image, b.image) && eq(a.mask, b.mask) && eq(a.instances, b.instances) &&
         eq(a.boxes, b.boxes) && eq(a.labels, b.labels) && eq(a.iscrowd, b.iscrowd);
}

// Applies `t` to synthetic samples for many seeds; every result must be consistent.
// Returns how many objects were dropped in total (so callers can check drops happen).
int64_t check_many(const Transform& t, int seeds, int64_t H = 48, int64_t W = 64) {
  int64_t dropped = 0;
  for (int seed = 0; seed < seeds; ++seed) {
    std::mt19937_64 rng(1000 + seed);
    const Sample in = rect_sample(seed, H, W, kObjects);
    REQUIRE(consistency_problem(in, kObjects) == "");
    const Sample out = t(in, rng);
    INFO(t.name() << " seed " << seed << " -> image " << out.image.sizes());
    CHECK(consistency_problem(out, kObjects) == "");
    dropped += kObjects - out.boxes.size(0);
    CHECK(out.image_id == in.image_id);
    CHECK(out.source == in.source);
  }
  return dropped;
}

}  // namespace

TEST_CASE("synthetic samples are consistent and the checker catches disagreement",
          "[data][transforms]") {
  Sample s = rect_sample(3, 48, 64, kObjects);
  REQUIRE(consistency_problem(s, kObjects) == "");
  Sample shifted = s;
  shifted.boxes = s.boxes + 2.0;  // boxes no longer enclose their instances
  CHECK(consistency_problem(shifted, kObjects) != "");
  Sample wrong_mask = s;
  wrong_mask.mask = s.mask.clone();
  wrong_mask.mask.select(0, 0).fill_(kObjects + 3);
  CHECK(consistency_problem(wrong_mask, kObjects) != "");
  Sample lost_label = s;
  lost_label.labels = s.labels.slice(0, 1);  // one label fewer than boxes
  CHECK(consistency_problem(lost_label, kObjects) != "");
}

TEST_CASE("each geometric transform keeps boxes, instances and class mask aligned",
          "[data][transforms]") {
  SECTION("resize down, non-integer factor") { check_many(Resize(37, 50), 25); }
  SECTION("resize down strongly: 2 px objects drop") { CHECK(check_many(Resize(17, 23), 25) > 0); }
  SECTION("resize up") { check_many(Resize(100, 130), 10); }
  SECTION("random scale crop") { check_many(RandomScaleCrop(0.5, 2.0, 40, 40), 40); }
  SECTION("ssd random crop") { CHECK(check_many(SSDRandomCrop(), 60) > 0); }
  SECTION("horizontal flip") { check_many(HorizontalFlip(0.5), 20); }
  SECTION("photometric distort") { check_many(PhotometricDistort(), 20); }
  SECTION("expand") { check_many(Expand(), 20); }
  SECTION("pad to multiple") { check_many(PadToMultiple(32), 5); }
  SECTION("normalize") { check_many(Normalize(), 5); }
}

TEST_CASE("random compositions keep targets aligned", "[data][transforms]") {
  // Any order of the exact (integer-pixel) steps plus one resampling step; a second
  // resampling would compound the half-pixel rounding of nearest-neighbour masks.
  std::mt19937_64 pick(99);
  for (int seed = 0; seed < 40; ++seed) {
    std::vector<TransformPtr> steps = {
        std::make_shared<PhotometricDistort>(), std::make_shared<Expand>(3.0, 0.5),
        std::make_shared<SSDRandomCrop>(), std::make_shared<HorizontalFlip>(0.5),
        std::make_shared<PadToMultiple>(8)};
    for (size_t i = steps.size() - 1; i > 0; --i) std::swap(steps[i], steps[pick() % (i + 1)]);
    steps.resize(2 + pick() % 4);
    TransformPtr resample = (pick() % 2) ? TransformPtr(std::make_shared<Resize>(40, 56))
                                         : TransformPtr(std::make_shared<RandomScaleCrop>(0.6, 1.5, 32, 48));
    steps.insert(steps.begin() + static_cast<std::ptrdiff_t>(pick() % (steps.size() + 1)), resample);
    std::string names;
    for (const auto& t : steps) names += t->name() + " ";
    Compose compose(steps);
    std::mt19937_64 rng(seed);
    const Sample out = compose(rect_sample(seed, 48, 64, kObjects), rng);
    INFO("seed " << seed << ": " << names);
    CHECK(consistency_problem(out, kObjects) == "");
  }
}

TEST_CASE("SSD and segmentation pipelines keep targets aligned", "[data][transforms]") {
  Compose ssd({std::make_shared<PhotometricDistort>(), std::make_shared<Expand>(),
               std::make_shared<SSDRandomCrop>(), std::make_shared<HorizontalFlip>(),
               std::make_shared<Resize>(60, 60), std::make_shared<Normalize>()});
  check_many(ssd, 30);
  Compose seg({std::make_shared<RandomScaleCrop>(0.5, 2.0, 36, 36),
               std::make_shared<HorizontalFlip>(), std::make_shared<PadToMultiple>(16),
               std::make_shared<Normalize>()});
  check_many(seg, 30);
}

TEST_CASE("degenerate boxes are dropped with their labels, instances and iscrowd",
          "[data][transforms]") {
  Sample s = rect_sample(0, 40, 40, 2);
  // Object 0: 3 px wide; object 1: 12 px wide. Downscaling by 4 makes object 0 0.75 px wide.
  s.instances.zero_();
  s.mask.zero_();
  s.instances[0].slice(0, 4, 20).slice(1, 4, 7).fill_(1);
  s.instances[1].slice(0, 20, 36).slice(1, 20, 32).fill_(1);
  s.mask.masked_fill_(s.instances[0].to(at::kBool), 1);
  s.mask.masked_fill_(s.instances[1].to(at::kBool), 2);
  s.boxes = test::boxes_from_instances(s.instances);
  s.iscrowd = at::tensor({0, 1}, at::kByte);
  std::mt19937_64 rng(0);
  const Sample out = Resize(10, 10)(s, rng);
  REQUIRE(out.boxes.size(0) == 1);
  CHECK(out.labels.equal(at::tensor({2}, at::kLong)));
  CHECK(out.iscrowd.equal(at::tensor({1}, at::kByte)));
  CHECK(out.instances.size(0) == 1);
  CHECK(out.boxes.equal(at::tensor({5.0f, 5.0f, 8.0f, 9.0f}).view({1, 4})));
  CHECK(consistency_problem(out, 2) == "");

  // sanitize_boxes clips boxes to the image and drops those outside it.
  Sample c = rect_sample(1, 20, 30, 2);
  c.boxes = at::tensor({-5.0f, 2.0f, 10.0f, 25.0f, 31.0f, 2.0f, 40.0f, 9.0f}).view({2, 4});
  const Sample clipped = sanitize_boxes(c);
  REQUIRE(clipped.boxes.size(0) == 1);
  CHECK(clipped.boxes.equal(at::tensor({0.0f, 2.0f, 10.0f, 20.0f}).view({1, 4})));
  CHECK(clipped.labels.equal(at::tensor({1}, at::kLong)));
  CHECK(clipped.instances.size(0) == 1);
}

TEST_CASE("flipping twice is the identity", "[data][transforms]") {
  const Sample s = rect_sample(5, 48, 64, kObjects);
  HorizontalFlip flip(1.0);
  std::mt19937_64 rng(0);
  const Sample once = flip(s, rng);
  CHECK_FALSE(at::equal(once.image, s.image));
  CHECK(once.boxes[0][0].item<float>() == Approx(64.0 - s.boxes[0][2].item<float>()));
  const Sample twice = flip(once, rng);
  CHECK(at::equal(twice.image, s.image));
  CHECK(at::equal(twice.mask, s.mask));
  CHECK(at::equal(twice.instances, s.instances));
  CHECK(at::allclose(twice.boxes, s.boxes));
  CHECK(at::equal(twice.labels, s.labels));
  // p = 0 never flips
  CHECK(samples_equal(HorizontalFlip(0.0)(s, rng), s));
}

TEST_CASE("transforms are deterministic for an engine seed", "[data][transforms]") {
  Compose ssd({std::make_shared<PhotometricDistort>(), std::make_shared<Expand>(),
               std::make_shared<SSDRandomCrop>(), std::make_shared<HorizontalFlip>(),
               std::make_shared<Resize>(50, 50)});
  const Sample s = rect_sample(7, 48, 64, kObjects);
  int differing = 0;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    std::mt19937_64 a(seed), b(seed), c(seed + 100);
    const Sample ra = ssd(s, a), rb = ssd(s, b), rc = ssd(s, c);
    CHECK(samples_equal(ra, rb));
    differing += samples_equal(ra, rc) ? 0 : 1;
  }
  CHECK(differing >= 6);
  // The input is not modified (transforms never write into the caller's tensors).
  CHECK(samples_equal(s, rect_sample(7, 48, 64, kObjects)));
}

TEST_CASE("Resize: bilinear image as torchvision, exact box scaling", "[data][transforms]") {
  Sample s = rect_sample(2, 8, 8, 1);
  std::mt19937_64 rng(0);
  const Sample out = Resize(4, 16)(s, rng);
  CHECK(out.image.sizes() == at::IntArrayRef({3, 4, 16}));
  CHECK(out.mask.sizes() == at::IntArrayRef({4, 16}));
  // align_corners=false bilinear downscale by 2 in y averages rows 2i and 2i+1; upscale by 2 in
  // x at column 1 samples source x = 0.25 -> 0.75*col0 + 0.25*col1.
  const auto img = s.image;
  const auto expected = 0.5 * (0.75 * img[0][2][0] + 0.25 * img[0][2][1]) +
                        0.5 * (0.75 * img[0][3][0] + 0.25 * img[0][3][1]);
  CHECK(out.image[0][1][1].item<double>() == Approx(expected.item<double>()).margin(1e-6));
  const auto scale = at::tensor({2.0f, 0.5f, 2.0f, 0.5f});
  CHECK(at::allclose(out.boxes, s.boxes * scale));
}

TEST_CASE("PhotometricDistort changes colours only, within [0,1]", "[data][transforms]") {
  const Sample s = rect_sample(4, 24, 24, 3);
  // Identity settings except the channel permutation: the result is a permutation of the
  // channels (this exercises the RGB->HSV->RGB round trip).
  PhotometricDistort identity(1.0, 0.0, {1.0, 1.0}, {1.0, 1.0}, 0.0);
  std::mt19937_64 rng(0);
  for (int i = 0; i < 6; ++i) {
    const Sample out = identity(s, rng);
    bool is_permutation = false;
    for (const auto& p : std::vector<std::vector<int64_t>>{
             {0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}) {
      is_permutation |= at::allclose(out.image, s.image.index_select(0, at::tensor(p)), 1e-5, 1e-6);
    }
    CHECK(is_permutation);
  }
  // Saturation factor 0: S = 0 so every channel becomes V = max(R,G,B).
  PhotometricDistort grey(1.0, 0.0, {1.0, 1.0}, {0.0, 0.0}, 0.0);
  const Sample g = grey(s, rng);
  const auto v = std::get<0>(s.image.max(0));
  for (int64_t c = 0; c < 3; ++c) CHECK(at::allclose(g.image[c], v, 1e-5, 1e-6));
  // Defaults: values stay in [0,1], targets untouched, something changes for most seeds.
  PhotometricDistort pd;
  int changed = 0;
  for (int i = 0; i < 10; ++i) {
    const Sample out = pd(s, rng);
    CHECK(out.image.min().item<float>() >= 0.0f);
    CHECK(out.image.max().item<float>() <= 1.0f);
    CHECK(at::equal(out.mask, s.mask));
    CHECK(at::equal(out.boxes, s.boxes));
    changed += at::equal(out.image, s.image) ? 0 : 1;
  }
  CHECK(changed >= 5);
}

TEST_CASE("Expand places the image on a mean-filled canvas", "[data][transforms]") {
  const Sample s = rect_sample(6, 20, 30, 3);
  Expand expand(4.0, 1.0, {0.1, 0.2, 0.3}, 255);
  std::mt19937_64 rng(3);
  const Sample out = expand(s, rng);
  const int64_t h = out.image.size(1), w = out.image.size(2);
  REQUIRE(h >= 20);
  REQUIRE(w >= 30);
  REQUIRE((h > 20 || w > 30));
  // Find the offset from the boxes' shift and check the original sits there.
  const int64_t left = static_cast<int64_t>(out.boxes[0][0].item<float>() - s.boxes[0][0].item<float>());
  const int64_t top = static_cast<int64_t>(out.boxes[0][1].item<float>() - s.boxes[0][1].item<float>());
  CHECK(at::equal(out.image.slice(1, top, top + 20).slice(2, left, left + 30), s.image));
  CHECK(at::equal(out.mask.slice(0, top, top + 20).slice(1, left, left + 30), s.mask));
  CHECK(at::allclose(out.boxes, s.boxes + at::tensor({float(left), float(top), float(left), float(top)})));
  const auto outside = at::ones({h, w}, at::kBool);
  outside.slice(0, top, top + 20).slice(1, left, left + 30).fill_(false);
  CHECK(out.mask.masked_select(outside).eq(255).all().item<bool>());
  CHECK(out.image[1].masked_select(outside).eq(0.2f).all().item<bool>());
  CHECK(out.instances.masked_select(outside.unsqueeze(0).expand_as(out.instances)).eq(0).all().item<bool>());
}

TEST_CASE("PadToMultiple pads bottom-right with fill and ignore", "[data][transforms]") {
  const Sample s = rect_sample(8, 30, 45, 3);
  std::mt19937_64 rng(0);
  const Sample out = PadToMultiple(16, {0.5}, 255)(s, rng);
  CHECK(out.image.sizes() == at::IntArrayRef({3, 32, 48}));
  CHECK(at::equal(out.image.slice(1, 0, 30).slice(2, 0, 45), s.image));
  CHECK(out.image.slice(1, 30).eq(0.5f).all().item<bool>());
  CHECK(out.mask.slice(1, 45).eq(255).all().item<bool>());
  CHECK(at::equal(out.boxes, s.boxes));
  // Already a multiple: unchanged.
  CHECK(samples_equal(PadToMultiple(15)(s, rng), s));
}

TEST_CASE("Normalize matches core::normalize and leaves targets", "[data][transforms]") {
  const Sample s = rect_sample(9, 16, 16, 2);
  std::mt19937_64 rng(0);
  const Sample out = Normalize({0.5, 0.4, 0.3}, {0.2, 0.25, 0.5})(s, rng);
  CHECK(at::allclose(out.image, core::normalize(s.image, {0.5, 0.4, 0.3}, {0.2, 0.25, 0.5})));
  CHECK(at::equal(out.mask, s.mask));
}

TEST_CASE("SSDRandomCrop honours the IoU, scale and aspect constraints", "[data][transforms]") {
  // One box; with min_ious {0.5} every accepted crop contains the box centre and has
  // IoU(box, crop) = inter / (box area + crop area - inter) >= 0.5, where the clipped box
  // after cropping is exactly the intersection (crops are whole pixels).
  Sample s = rect_sample(10, 60, 80, 1);
  s.instances.zero_();
  s.mask.zero_();
  s.instances[0].slice(0, 10, 50).slice(1, 15, 70).fill_(1);
  s.mask.masked_fill_(s.instances[0].to(at::kBool), 1);
  s.boxes = test::boxes_from_instances(s.instances);
  const double box_area = 40.0 * 55.0;
  SSDRandomCrop crop({0.5});
  int cropped = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    std::mt19937_64 rng(seed);
    const Sample out = crop(s, rng);
    const int64_t h = out.image.size(1), w = out.image.size(2);
    CHECK(h >= static_cast<int64_t>(0.3 * 60) - 1);
    CHECK(w >= static_cast<int64_t>(0.3 * 80) - 1);
    const double aspect = static_cast<double>(w) / h;
    CHECK(aspect >= 0.5);
    CHECK(aspect <= 2.0);
    REQUIRE(out.boxes.size(0) == 1);
    const auto b = out.boxes[0];
    const double inter = (b[2] - b[0]).item<double>() * (b[3] - b[1]).item<double>();
    CHECK(inter / (box_area + h * w - inter) >= 0.5);
    CHECK(consistency_problem(out, 1) == "");
    cropped += (h != 60 || w != 80) ? 1 : 0;
  }
  CHECK(cropped >= 30);
  // A minimum IoU >= 1 means "keep the whole image".
  std::mt19937_64 rng(1);
  CHECK(samples_equal(SSDRandomCrop({1.0})(s, rng), s));
}

TEST_CASE("transforms reject samples whose fields do not fit", "[data][transforms]") {
  Sample s = rect_sample(11, 16, 16, 2);
  s.mask = at::zeros({16, 15}, at::kLong);
  std::mt19937_64 rng(0);
  CHECK_THROWS_WITH(Resize(8, 8)(s, rng), Catch::Contains("mask") && Catch::Contains("rect_11.png"));
  Sample t = rect_sample(11, 16, 16, 2);
  t.labels = at::zeros({3}, at::kLong);
  CHECK_THROWS_WITH(HorizontalFlip(1.0)(t, rng), Catch::Contains("labels has 3"));
}

TEST_CASE("build_transforms builds every transform and names bad keys", "[data][transforms]") {
  const auto list = nlohmann::json::parse(R"([
    {"name": "photometric_distort", "p": 0.5, "contrast": [0.6, 1.4], "hue": 10},
    {"name": "expand", "max_ratio": 3, "fill": [0.4, 0.4, 0.4]},
    {"name": "ssd_random_crop", "min_ious": [null, 0.1, 0.5], "trials": 20},
    {"name": "random_scale_crop", "size": [32, 32], "scale": [0.5, 1.5], "fill": 0},
    {"name": "horizontal_flip", "p": 0.5},
    {"name": "resize", "size": [40, 40]},
    {"name": "pad_to_multiple", "multiple": 16},
    {"name": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
  ])");
  auto t = build_transforms(list, "run.json", "data.transforms");
  auto compose = std::dynamic_pointer_cast<Compose>(t);
  REQUIRE(compose);
  std::vector<std::string> names;
  for (const auto& x : compose->transforms()) names.push_back(x->name());
  CHECK(names == std::vector<std::string>{"photometric_distort", "expand", "ssd_random_crop",
                                          "random_scale_crop", "horizontal_flip", "resize",
                                          "pad_to_multiple", "normalize"});
  std::mt19937_64 rng(0);
  const Sample out = (*t)(rect_sample(1), rng);
  CHECK(out.image.sizes() == at::IntArrayRef({3, 48, 48}));
  CHECK(samples_equal((*build_transforms(nullptr, "x"))(rect_sample(1), rng), rect_sample(1)));

  using Catch::Contains;
  auto build = [](const char* text) {
    return build_transforms(nlohmann::json::parse(text), "run.json", "data.transforms");
  };
  CHECK_THROWS_AS(build(R"([{"name": "rezise", "size": [2, 2]}])"), ConfigError);
  CHECK_THROWS_WITH(build(R"([{"name": "resize", "size": [2, 2]}, {"name": "rezise"}])"),
                    Contains("run.json") && Contains("data.transforms[1].name") &&
                        Contains("rezise") && Contains("resize"));
  CHECK_THROWS_WITH(build(R"([{"name": "resize", "sizee": [2, 2], "size": [2, 2]}])"),
                    Contains("run.json") && Contains("data.transforms[0].sizee"));
  CHECK_THROWS_WITH(build(R"([{"name": "resize"}])"),
                    Contains("missing required key data.transforms[0].size"));
  CHECK_THROWS_WITH(build(R"([{"name": "resize", "size": [2]}])"),
                    Contains("data.transforms[0].size") && Contains("[H, W]"));
  CHECK_THROWS_WITH(build(R"([{"size": [2, 2]}])"), Contains("data.transforms[0].name"));
  CHECK_THROWS_WITH(build(R"([{"name": "horizontal_flip", "p": 2}])"),
                    Contains("data.transforms[0]") && Contains("p must be in [0,1]"));
  CHECK_THROWS_WITH(build(R"([{"name": "horizontal_flip", "p": "often"}])"),
                    Contains("data.transforms[0].p") && Contains("number"));
  CHECK_THROWS_WITH(build(R"([{"name": "expand", "fill": [1, 2]}])"),
                    Contains("data.transforms[0].fill"));
  CHECK_THROWS_WITH(build(R"([{"name": "ssd_random_crop", "min_ious": ["x"]}])"),
                    Contains("data.transforms[0].min_ious"));
  CHECK_THROWS_WITH(build(R"({"name": "resize"})"), Contains("data.transforms must be a list"));
  CHECK_THROWS_WITH(build(R"(["resize"])"), Contains("data.transforms[0] must be an object"));
}
