#include "catch.h"

#include <set>

#include <ATen/ATen.h>
#include <opencv2/core.hpp>

#include "ostrov/core/image.h"
#include "ostrov/data/scenes.h"
#include "ostrov/data/visualize.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

cv::Mat grey_image(int h, int w, int value = 100) {
  return cv::Mat(h, w, CV_8UC3, cv::Scalar(value, value, value));
}

int channel_distance(cv::Vec3b a, cv::Vec3b b) {
  return std::abs(a[0] - b[0]) + std::abs(a[1] - b[1]) + std::abs(a[2] - b[2]);
}

}  // namespace

TEST_CASE("the palette is fixed and distinct", "[data][visualize]") {
  CHECK(data::class_color(0) == cv::Vec3b(0, 0, 0));
  CHECK(data::class_color(1) == cv::Vec3b(75, 25, 230));  // table entry 1 is RGB (230,25,75)
  CHECK(data::class_color(255) == cv::Vec3b(220, 220, 220));
  CHECK(data::class_color(37) == data::class_color(37));
  std::set<std::tuple<int, int, int>> seen;
  for (int c = 0; c < 64; ++c) {
    const auto v = data::class_color(c);
    seen.emplace(v[0], v[1], v[2]);
  }
  CHECK(seen.size() == 64);
  for (int k = 0; k < 32; ++k) {
    INFO("instance " << k);
    CHECK(channel_distance(data::instance_color(k), data::instance_color(k + 1)) > 60);
  }
}

TEST_CASE("overlay_mask blends class colours over labelled pixels only", "[data][visualize]") {
  const cv::Mat image = grey_image(4, 5);
  at::Tensor mask = at::zeros({4, 5}, at::kLong);
  mask[1][2] = 1;
  mask[3][4] = 255;
  const cv::Mat out = data::overlay_mask(image, mask, 0.5);
  REQUIRE(out.size() == image.size());
  CHECK(out.at<cv::Vec3b>(0, 0) == cv::Vec3b(100, 100, 100));
  const cv::Vec3b c = data::class_color(1);
  const cv::Vec3b got = out.at<cv::Vec3b>(1, 2);
  for (int ch = 0; ch < 3; ++ch) CHECK(std::abs(got[ch] - (100 + c[ch]) / 2.0) <= 1.0);
  CHECK(out.at<cv::Vec3b>(3, 4) != cv::Vec3b(100, 100, 100));
  CHECK(image.at<cv::Vec3b>(1, 2) == cv::Vec3b(100, 100, 100));  // input untouched
  CHECK(cv::norm(data::overlay_mask(image, mask, 0.0), image, cv::NORM_INF) == 0.0);

  const cv::Mat colours = data::colorize_mask(mask);
  CHECK(colours.at<cv::Vec3b>(1, 2) == c);
  CHECK(colours.at<cv::Vec3b>(0, 0) == cv::Vec3b(0, 0, 0));

  CHECK_THROWS_WITH(data::overlay_mask(image, at::zeros({4, 6}, at::kLong)),
                    Catch::Contains("[4, 6]"));
  CHECK_THROWS_WITH(data::overlay_mask(image, at::full({4, 5}, 300, at::kLong)),
                    Catch::Contains("300"));
}

TEST_CASE("overlay_instances colours each instance and outlines it", "[data][visualize]") {
  const cv::Mat image = grey_image(10, 12);
  at::Tensor instances = at::zeros({2, 10, 12}, at::kByte);
  instances[0].slice(0, 1, 5).slice(1, 1, 6).fill_(1);
  instances[1].slice(0, 5, 9).slice(1, 6, 11).fill_(1);
  const cv::Mat out = data::overlay_instances(image, instances, 0.5);
  CHECK(out.at<cv::Vec3b>(0, 0) == cv::Vec3b(100, 100, 100));
  CHECK(out.at<cv::Vec3b>(1, 1) == data::instance_color(0));  // outline: full colour
  CHECK(out.at<cv::Vec3b>(5, 6) == data::instance_color(1));
  const cv::Vec3b inside0 = out.at<cv::Vec3b>(3, 3), inside1 = out.at<cv::Vec3b>(7, 8);
  CHECK(inside0 != cv::Vec3b(100, 100, 100));
  CHECK(inside1 != cv::Vec3b(100, 100, 100));
  CHECK(inside0 != inside1);
  CHECK_THROWS_WITH(data::overlay_instances(image, at::zeros({2, 10}, at::kByte)),
                    Catch::Contains("[2, 10]"));
}

TEST_CASE("draw_boxes draws boxes in class colours with captions", "[data][visualize]") {
  const cv::Mat image = grey_image(60, 80);
  const auto boxes = at::tensor({10.0f, 20.0f, 40.0f, 50.0f}).view({1, 4});
  const auto labels = at::tensor({int64_t{3}});
  const cv::Mat plain = data::draw_boxes(image, boxes, labels);
  CHECK(plain.at<cv::Vec3b>(20, 25) == data::class_color(3));  // top edge
  CHECK(plain.at<cv::Vec3b>(49, 25) == data::class_color(3));  // bottom edge (y2 exclusive)
  CHECK(plain.at<cv::Vec3b>(35, 25) == cv::Vec3b(100, 100, 100));  // inside
  CHECK(plain.at<cv::Vec3b>(50, 25) == cv::Vec3b(100, 100, 100));  // below
  // Caption above the box: the caption's background fills the row above the top edge.
  CHECK(plain.at<cv::Vec3b>(15, 10) == data::class_color(3));

  const cv::Mat named = data::draw_boxes(image, boxes, labels, at::tensor({0.5f}),
                                         {"bg", "a", "b", "coat"});
  const cv::Mat other = data::draw_boxes(image, boxes, labels, at::tensor({0.9f}),
                                         {"bg", "a", "b", "coat"});
  CHECK(cv::norm(named, other, cv::NORM_INF) > 0.0);  // the score is printed
  CHECK(cv::norm(named, plain, cv::NORM_INF) > 0.0);
  CHECK(cv::norm(image, grey_image(60, 80), cv::NORM_INF) == 0.0);
  CHECK_THROWS_WITH(data::draw_boxes(image, at::zeros({2, 3})), Catch::Contains("[2, 3]"));
  CHECK_THROWS_WITH(data::draw_boxes(image, boxes, at::tensor({int64_t{1}, int64_t{2}})),
                    Catch::Contains("labels"));
}

TEST_CASE("visualize_sample pictures a scene and saves as PNG", "[data][visualize]") {
  static const data::FashionMnist items(data::FashionMnistSplit::kTest);
  const auto o = data::SceneOptions().height(64).width(64).min_scale(16).max_scale(28).seed(2);
  const auto scene = data::make_scene(items, o, 0);
  const cv::Mat picture = data::visualize_sample(scene, data::scene_class_names());
  REQUIRE(picture.rows == 64);
  REQUIRE(picture.cols == 64);
  CHECK(cv::norm(picture, core::tensor_to_image(scene.image), cv::NORM_INF) > 0.0);
  TempDir dir;
  core::write_image(dir / "scene.png", picture);
  CHECK(cv::norm(core::read_image(dir / "scene.png"), picture, cv::NORM_INF) == 0.0);
  // Without instances the class mask is overlaid.
  data::Sample semantic;
  semantic.image = scene.image;
  semantic.mask = scene.mask;
  const cv::Mat mask_picture = data::visualize_sample(semantic);
  CHECK(cv::norm(mask_picture, data::overlay_mask(core::tensor_to_image(scene.image), scene.mask),
                 cv::NORM_INF) == 0.0);
}
