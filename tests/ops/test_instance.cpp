#include "catch.h"

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

#include <ATen/ATen.h>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/ops/instance.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

at::Tensor mask_from_rows(const std::vector<std::vector<int>>& rows) {
  const auto h = static_cast<int64_t>(rows.size()), w = static_cast<int64_t>(rows[0].size());
  auto m = at::zeros({h, w}, at::kByte);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) m[y][x] = rows[y][x];
  return m;
}

std::vector<uint32_t> counts(std::initializer_list<uint32_t> c) { return c; }

// Random masks of several shapes: i.i.d. pixels at several densities and unions of rectangles
// (long runs, so multi-character counts and negative deltas in the string form).
std::vector<at::Tensor> random_masks(uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<at::Tensor> masks;
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{1, 1}, {1, 17}, {23, 1}, {7, 9},
                                                          {40, 31}, {120, 97}};
  for (auto [h, w] : sizes) {
    for (double p : {0.0, 0.03, 0.5, 0.97, 1.0}) {
      std::bernoulli_distribution on(p);
      auto m = at::empty({h, w}, at::kByte);
      auto a = m.accessor<uint8_t, 2>();
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) a[y][x] = on(rng) ? 1 : 0;
      masks.push_back(m);
    }
    auto blobs = at::zeros({h, w}, at::kByte);
    for (int r = 0; r < 4; ++r) {
      const int64_t y0 = std::uniform_int_distribution<int64_t>(0, h - 1)(rng);
      const int64_t x0 = std::uniform_int_distribution<int64_t>(0, w - 1)(rng);
      const int64_t y1 = std::uniform_int_distribution<int64_t>(y0, h - 1)(rng) + 1;
      const int64_t x1 = std::uniform_int_distribution<int64_t>(x0, w - 1)(rng) + 1;
      blobs.slice(0, y0, y1).slice(1, x0, x1).fill_(1);
    }
    masks.push_back(blobs);
  }
  return masks;
}

}  // namespace

TEST_CASE("rle_encode follows pycocotools: column-major, counts start with zeros", "[ops][instance]") {
  // 1 1 0      read column by column: 1 0 0 | 1 1 0 | 0 0 1
  // 0 1 0      -> runs: 0 zeros, 1 one, 2 zeros, 2 ones, 3 zeros, 1 one = [0,1,2,2,3,1]
  // 0 0 1      (row-major would give [0,2,2,1,3,1]); area 4.
  // String: 0,1,2 as is -> "012"; then deltas to counts[i-2]: 2-1=1 -> '1', 3-2=1 -> '1',
  // 1-2=-1 -> low 5 bits 31 (0b11111), rest -1 and bit 4 set so it ends: 31+48 = 'O'.
  const auto a = mask_from_rows({{1, 1, 0}, {0, 1, 0}, {0, 0, 1}});
  const auto rle = ops::rle_encode(a);
  CHECK(rle.height == 3);
  CHECK(rle.width == 3);
  CHECK(rle.counts == counts({0, 1, 2, 2, 3, 1}));
  CHECK(ops::rle_area(rle) == 4);
  CHECK(ops::rle_to_string(rle) == "01211O");

  // 0 1 0      columns 0 1 0 | 1 1 1 | 0 1 0 -> [1,1,1,3,1,1,1]
  // 1 1 1      string: "111", 3-1=2 -> '2', 1-1=0 -> '0', 1-3=-2 -> 30+48 = 'N', 1-1=0 -> '0'
  // 0 1 0
  const auto plus = ops::rle_encode(mask_from_rows({{0, 1, 0}, {1, 1, 1}, {0, 1, 0}}));
  CHECK(plus.counts == counts({1, 1, 1, 3, 1, 1, 1}));
  CHECK(ops::rle_to_string(plus) == "11120N0");

  // All ones 10x10 -> [0,100]; 100 = 3*32 + 4: group 4 with more to come -> 4|32 = 36 -> 'T',
  // then 3 -> '3'.
  const auto ones = ops::rle_encode(at::ones({10, 10}, at::kBool));
  CHECK(ones.counts == counts({0, 100}));
  CHECK(ops::rle_to_string(ones) == "0T3");
  // All zeros -> one count; non-zero values other than 1 count as 1; empty mask -> [0].
  CHECK(ops::rle_encode(at::zeros({2, 2}, at::kFloat)).counts == counts({4}));
  CHECK(ops::rle_encode(at::full({2, 3}, 7, at::kInt)).counts == counts({0, 6}));
  CHECK(ops::rle_encode(at::zeros({0, 5}, at::kByte)).counts == counts({0}));
  CHECK_THROWS_WITH(ops::rle_encode(at::zeros({2, 2, 2})), Catch::Contains("[2, 2, 2]"));
}

TEST_CASE("rle_from_string decodes hand-derived counts strings", "[ops][instance]") {
  // 1x100 with counts [50,40,5,5]:
  //  50 = 0b1'10010: group 18 has bit 4 set, so another group follows: 18|32 = 50 -> 'b', 1 -> '1'
  //  40 = 0b1'01000: 8 with more (x=1) -> 8|32 = 40 -> 'X', then '1'
  //  5 -> '5' (i=2, no delta)
  //  5 - 40 = -35: low 5 bits 29 (-35 = -64 + 29), rest -2 != -1 -> 29|32 = 61 -> 'm';
  //  -2: low 5 bits 30, rest -1 and bit 4 set -> ends: 30+48 = 'N'
  const auto rle = ops::rle_from_string("b1X15mN", 1, 100);
  CHECK(rle.counts == counts({50, 40, 5, 5}));
  CHECK(ops::rle_area(rle) == 45);
  const auto m = ops::rle_decode(rle);
  REQUIRE(m.sizes() == at::IntArrayRef({1, 100}));
  REQUIRE(m.scalar_type() == at::kByte);
  CHECK(m.slice(1, 0, 50).sum().item<int64_t>() == 0);
  CHECK(m.slice(1, 50, 90).sum().item<int64_t>() == 40);
  CHECK(m.slice(1, 90, 95).sum().item<int64_t>() == 0);
  CHECK(m.slice(1, 95, 100).sum().item<int64_t>() == 5);
  CHECK(ops::rle_to_string(rle) == "b1X15mN");

  // The column-major 3x3 example above, decoded back.
  CHECK(at::equal(ops::rle_decode(ops::rle_from_string("01211O", 3, 3)),
                  mask_from_rows({{1, 1, 0}, {0, 1, 0}, {0, 0, 1}})));
  // An empty string is a 0-pixel mask.
  CHECK(ops::rle_from_string("", 0, 4).counts.empty());
}

TEST_CASE("RLE round trips on random masks", "[ops][instance]") {
  int checked = 0;
  for (const auto& mask : random_masks(7)) {
    INFO("mask " << checked << " of size " << mask.sizes());
    const auto rle = ops::rle_encode(mask);
    CHECK(rle.height == mask.size(0));
    CHECK(rle.width == mask.size(1));
    CHECK(ops::rle_area(rle) == mask.sum().item<int64_t>());
    CHECK(at::equal(ops::rle_decode(rle), mask));
    const std::string s = ops::rle_to_string(rle);
    const auto back = ops::rle_from_string(s, rle.height, rle.width);
    CHECK(back.counts == rle.counts);
    CHECK(ops::rle_to_string(back) == s);
    // bool and float masks encode the same
    CHECK(ops::rle_encode(mask.to(at::kBool)).counts == rle.counts);
    CHECK(ops::rle_encode(mask.to(at::kFloat)).counts == rle.counts);
    ++checked;
  }
  CHECK(checked == 36);
}

TEST_CASE("rle_encode counts equal numpy's column-major runs", "[ops][instance]") {
  // Independent reference: numpy flattens in Fortran order and finds the run boundaries.
  TempDir dir;
  const auto masks = random_masks(11);
  std::ostringstream expected_cmd;
  for (size_t i = 0; i < masks.size(); ++i) {
    const auto m = masks[i].contiguous();
    test::write_bytes(dir / ("m" + std::to_string(i) + ".bin"),
                      std::string(reinterpret_cast<const char*>(m.data_ptr<uint8_t>()), m.numel()));
  }
  std::string script = R"(
import numpy as np
d = ')" + dir.path().string() + R"('
shapes = [)";
  for (const auto& m : masks) script += "(" + std::to_string(m.size(0)) + "," + std::to_string(m.size(1)) + "),";
  script += R"(]
for i, (h, w) in enumerate(shapes):
    m = np.fromfile(d + '/m%d.bin' % i, dtype=np.uint8).reshape(h, w)
    f = np.concatenate([[0], m.flatten(order='F').astype(np.int64), [2]])
    edges = np.flatnonzero(np.diff(f) != 0)
    runs = np.diff(np.concatenate([[0], edges]))  # a leading 1 gives a first run of 0 zeros
    print(' '.join(str(int(r)) for r in runs))
)";
  const auto r = test::run_python(dir, script);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.output);
  std::string line;
  size_t i = 0;
  for (; i < masks.size() && std::getline(lines, line); ++i) {
    std::istringstream fields(line);
    std::vector<uint32_t> expected;
    uint32_t v;
    while (fields >> v) expected.push_back(v);
    INFO("mask " << i << " of size " << masks[i].sizes());
    CHECK(ops::rle_encode(masks[i]).counts == expected);
  }
  CHECK(i == masks.size());
}

TEST_CASE("RLE strings of large counts and negative deltas round trip", "[ops][instance]") {
  // 4e9 needs 7 groups; the last two deltas are large and negative. Sizes multiply to the sums,
  // no mask is decoded.
  ops::Rle big{65536, 65536, {4000000000u, 294967296u}};
  auto back = ops::rle_from_string(ops::rle_to_string(big), 65536, 65536);
  CHECK(back.counts == big.counts);
  ops::Rle deltas{1, 0, {1, 2147483648u, 3, 5, 2147483000u, 7}};
  uint64_t total = 0;
  for (auto c : deltas.counts) total += c;
  deltas.width = static_cast<int64_t>(total);
  back = ops::rle_from_string(ops::rle_to_string(deltas), 1, deltas.width);
  CHECK(back.counts == deltas.counts);
  CHECK(ops::rle_area(deltas) == 2147483648LL + 5 + 7);
}

TEST_CASE("RLE errors are DataErrors with the numbers", "[ops][instance]") {
  ops::Rle short_rle{3, 3, {1, 2, 5}};  // sums to 8, not 9
  CHECK_THROWS_AS(ops::rle_decode(short_rle), DataError);
  CHECK_THROWS_WITH(ops::rle_decode(short_rle),
                    Catch::Contains("sum to 8") && Catch::Contains("3x3") && Catch::Contains("9"));
  ops::Rle long_rle{2, 2, {1, 2, 5}};
  CHECK_THROWS_WITH(ops::rle_decode(long_rle), Catch::Contains("sum to 8") && Catch::Contains("4 pixels"));
  // "3" is one count of 3 for a 2x2 mask.
  CHECK_THROWS_AS(ops::rle_from_string("3", 2, 2), DataError);
  CHECK_THROWS_WITH(ops::rle_from_string("3", 2, 2), Catch::Contains("sum to 3") && Catch::Contains("4"));
  // 'T' has the continuation bit set and nothing follows.
  CHECK_THROWS_AS(ops::rle_from_string("0T", 10, 10), DataError);
  CHECK_THROWS_WITH(ops::rle_from_string("0T", 10, 10), Catch::Contains("ends inside count 1"));
  // '~' (126) is outside '0'..'o'.
  CHECK_THROWS_WITH(ops::rle_from_string("0~", 1, 1), Catch::Contains("position 1"));
  // 'N' alone = -2: a negative count.
  CHECK_THROWS_WITH(ops::rle_from_string("0N", 1, 1), Catch::Contains("is -2"));
  // Deltas that lead below zero: 'M' = 29 = 0b11101 -> -3, plus counts[1] = 1 -> -2.
  CHECK_THROWS_AS(ops::rle_from_string("111M", 1, 1), DataError);
}

TEST_CASE("polygons_to_mask: rectangles give the documented pixels", "[ops][instance]") {
  // Integer corners (1,2)-(5,6): OpenCV fills and outlines the rectangle, so columns 1..5 and
  // rows 2..6 inclusive, 5x5 = 25 pixels (pycocotools would give 4x4).
  auto m = ops::polygons_to_mask({{1, 2, 5, 2, 5, 6, 1, 6}}, 8, 10);
  REQUIRE(m.sizes() == at::IntArrayRef({8, 10}));
  REQUIRE(m.scalar_type() == at::kByte);
  auto expected = at::zeros({8, 10}, at::kByte);
  expected.slice(0, 2, 7).slice(1, 1, 6).fill_(1);
  CHECK(at::equal(m, expected));

  // Fractional corners (1.3,2.2)-(4.6,5.7): pixel centres x+0.5 in [1.3,4.6] are columns 1..4,
  // y+0.5 in [2.2,5.7] rows 2..5; the outline's vertices (moved by -0.5 and rounded:
  // (0.8,1.7) -> (1,2), (4.1,5.2) -> (4,5)) add nothing. Without the -0.5 shift the rounded
  // corners would be (1,2)-(5,6) and this would fail.
  m = ops::polygons_to_mask({{1.3, 2.2, 4.6, 2.2, 4.6, 5.7, 1.3, 5.7}}, 8, 10);
  expected.zero_();
  expected.slice(0, 2, 6).slice(1, 1, 5).fill_(1);
  CHECK(at::equal(m, expected));

  // Clipped at the image border; winding order does not matter.
  m = ops::polygons_to_mask({{-3, -3, -3, 4, 20, 4, 20, -3}}, 6, 5);
  expected = at::zeros({6, 5}, at::kByte);
  expected.slice(0, 0, 5).fill_(1);
  CHECK(at::equal(m, expected));
  // No polygons -> empty mask.
  CHECK(ops::polygons_to_mask({}, 3, 4).sum().item<int64_t>() == 0);
}

TEST_CASE("polygons_to_mask: triangles stay within a pixel of the exact shape", "[ops][instance]") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> coord(-8.0, 56.0);
  for (int t = 0; t < 80; ++t) {
    std::vector<double> poly;
    std::vector<cv::Point2f> contour;
    std::ostringstream text;
    for (int i = 0; i < 3; ++i) {
      const double x = coord(rng), y = coord(rng);
      poly.insert(poly.end(), {x, y});
      contour.emplace_back(static_cast<float>(x), static_cast<float>(y));
      text << " (" << x << "," << y << ")";
    }
    const double area = std::abs(cv::contourArea(contour));
    if (area < 1.0) continue;
    INFO("triangle " << t << ":" << text.str());
    auto mask = ops::polygons_to_mask({poly}, 48, 48);
    auto a = mask.accessor<uint8_t, 2>();
    for (int y = 0; y < 48; ++y) {
      for (int x = 0; x < 48; ++x) {
        // signed distance of the pixel centre (COCO frame) to the outline, positive inside
        const double d = cv::pointPolygonTest(contour, cv::Point2f(x + 0.5f, y + 0.5f), true);
        if (d > 0.5) CHECK(a[y][x] == 1);
        if (d < -1.25) CHECK(a[y][x] == 0);
      }
    }
    // Area: within one pixel along the boundary, and grown (OpenCV includes the outline).
    // Only triangles wholly inside the image compare with the analytic area; the others check
    // the exact clipping through the distances above (OpenCV's own clipping is ~1.7 px off).
    const auto r = cv::boundingRect(contour);
    if (r.x >= 0 && r.y >= 0 && r.x + r.width <= 48 && r.y + r.height <= 48) {
      const double perimeter = cv::arcLength(contour, true);
      const auto pixels = static_cast<double>(mask.sum().item<int64_t>());
      CHECK(std::abs(pixels - area) <= perimeter);
      CHECK(pixels >= area);
    }
  }
}

TEST_CASE("polygons_to_mask: union, self-intersection, contours round trip, errors", "[ops][instance]") {
  // Two overlapping squares: the union, the overlap is not cut out (as it would be with one
  // fillPoly call and the even-odd rule). Each is 5x5 inclusive (0..4, 2..6), overlap 3x3 (2..4).
  auto u = ops::polygons_to_mask({{0, 0, 4, 0, 4, 4, 0, 4}, {2, 2, 6, 2, 6, 6, 2, 6}}, 8, 8);
  CHECK(u.sum().item<int64_t>() == 25 + 25 - 9);
  CHECK(u[3][3].item<int>() == 1);

  // A bow-tie (self-intersecting): no crash; the left (0,0),(5,5),(0,10) and right
  // (10,0),(5,5),(10,10) triangles, 25 each, perimeter 10 + 2*7.07 each.
  auto bow = ops::polygons_to_mask({{0, 0, 10, 10, 10, 0, 0, 10}}, 12, 12);
  const auto area = bow.sum().item<int64_t>();
  CHECK(area >= 50);
  CHECK(area <= 50 + 2 * (10 + 2 * 7.08));
  CHECK(bow[5][1].item<int>() == 1);  // left triangle
  CHECK(bow[5][8].item<int>() == 1);  // right triangle
  CHECK(bow[1][5].item<int>() == 0);  // between the diagonals, above the crossing
  CHECK(bow[8][5].item<int>() == 0);  // below it
  // Degenerate (collinear) polygons are drawn as lines, not rejected.
  CHECK(ops::polygons_to_mask({{0, 0, 5, 5, 10, 10}}, 12, 12).sum().item<int64_t>() > 0);

  // Contours found by OpenCV (vertices at pixel indices) rasterise back to their pixels.
  cv::Mat shapes = cv::Mat::zeros(40, 50, CV_8UC1);
  cv::circle(shapes, {14, 15}, 9, cv::Scalar(1), cv::FILLED);
  cv::fillConvexPoly(shapes, std::vector<cv::Point>{{30, 5}, {46, 12}, {38, 33}}, cv::Scalar(1));
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(shapes, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  REQUIRE(contours.size() == 2);
  std::vector<std::vector<double>> polygons;
  for (const auto& c : contours) {
    std::vector<double> p;
    for (const auto& pt : c) p.insert(p.end(), {static_cast<double>(pt.x), static_cast<double>(pt.y)});
    polygons.push_back(p);
  }
  auto back = ops::polygons_to_mask(polygons, 40, 50);
  auto original = at::from_blob(shapes.data, {40, 50}, at::kByte).clone();
  CHECK(original.sum().item<int64_t>() > 400);
  CHECK(at::equal(back, original));

  CHECK_THROWS_AS(ops::polygons_to_mask({{0, 0, 4, 0}}, 5, 5), DataError);
  CHECK_THROWS_WITH(ops::polygons_to_mask({{0, 0, 4, 0, 4, 4}, {0, 0, 4, 0}}, 5, 5),
                    Catch::Contains("polygon 1") && Catch::Contains("2 points"));
  CHECK_THROWS_WITH(ops::polygons_to_mask({{0, 0, 4, 0, 4}}, 5, 5), Catch::Contains("5 coordinates"));
  CHECK_THROWS_WITH(ops::polygons_to_mask({{0, 0, 4, std::nan(""), 4, 4}}, 5, 5),
                    Catch::Contains("point 1"));
  CHECK_THROWS_AS(ops::polygons_to_mask({{0, 0, 4, INFINITY, 4, 4}}, 5, 5), DataError);
  // Far-away vertices are clipped, not rejected: this triangle covers the whole image.
  CHECK(ops::polygons_to_mask({{-1e9, -1e9, 1e9, -1e9, 0, 1e9}}, 5, 6).sum().item<int64_t>() == 30);
}

TEST_CASE("connected_components counts and numbers components", "[ops][instance]") {
  // Components (8-connected): A top-left L, B right column pair, C diagonal chain (2,2)-(3,3)-(3,4),
  // D single pixel bottom-left, E bottom-right pair -> 5. With 4-connectivity C splits in two -> 6.
  const auto mask = mask_from_rows({{1, 1, 0, 0, 0, 0, 1},
                                    {1, 0, 0, 0, 0, 0, 1},
                                    {0, 0, 1, 0, 0, 0, 0},
                                    {0, 0, 0, 1, 1, 0, 0},
                                    {0, 0, 0, 0, 0, 0, 0},
                                    {1, 0, 0, 0, 0, 1, 1}});
  int64_t n = -1;
  auto labels = ops::connected_components(mask, &n);
  CHECK(n == 5);
  REQUIRE(labels.scalar_type() == at::kInt);
  // numbered by first pixel in row-major order
  const auto expected8 = mask_from_rows({{1, 1, 0, 0, 0, 0, 2},
                                         {1, 0, 0, 0, 0, 0, 2},
                                         {0, 0, 3, 0, 0, 0, 0},
                                         {0, 0, 0, 3, 3, 0, 0},
                                         {0, 0, 0, 0, 0, 0, 0},
                                         {4, 0, 0, 0, 0, 5, 5}});
  CHECK(at::equal(labels, expected8.to(at::kInt)));

  labels = ops::connected_components(mask.to(at::kBool), &n, 4);
  CHECK(n == 6);
  const auto expected4 = mask_from_rows({{1, 1, 0, 0, 0, 0, 2},
                                         {1, 0, 0, 0, 0, 0, 2},
                                         {0, 0, 3, 0, 0, 0, 0},
                                         {0, 0, 0, 4, 4, 0, 0},
                                         {0, 0, 0, 0, 0, 0, 0},
                                         {5, 0, 0, 0, 0, 6, 6}});
  CHECK(at::equal(labels, expected4.to(at::kInt)));

  CHECK(ops::connected_components(at::zeros({3, 3})).sum().item<int64_t>() == 0);
  ops::connected_components(at::zeros({3, 3}), &n);
  CHECK(n == 0);
  CHECK_THROWS_WITH(ops::connected_components(mask, nullptr, 6), Catch::Contains("got 6"));
  CHECK_THROWS_WITH(ops::connected_components(at::zeros({1, 3, 3})), Catch::Contains("[1, 3, 3]"));
}

TEST_CASE("masks_to_boxes gives exclusive x2,y2 and zeros for empty masks", "[ops][instance]") {
  auto masks = at::zeros({3, 6, 8}, at::kByte);
  masks[0][1][2] = 1;  // x=2, y=1
  masks[0][3][5] = 1;  // x=5, y=3
  masks[2].fill_(1);
  auto boxes = ops::masks_to_boxes(masks);
  REQUIRE(boxes.sizes() == at::IntArrayRef({3, 4}));
  REQUIRE(boxes.scalar_type() == at::kFloat);
  CHECK(at::equal(boxes[0], at::tensor({2.0f, 1.0f, 6.0f, 4.0f})));
  CHECK(at::equal(boxes[1], at::zeros({4})));
  CHECK(at::equal(boxes[2], at::tensor({0.0f, 0.0f, 8.0f, 6.0f})));
  CHECK(ops::masks_to_boxes(at::zeros({0, 4, 4}, at::kBool)).sizes() == at::IntArrayRef({0, 4}));
  CHECK_THROWS_WITH(ops::masks_to_boxes(at::zeros({4, 4})), Catch::Contains("[4, 4]"));
}

TEST_CASE("paste_masks matches torchvision's paste_masks_in_image", "[ops][instance][parity]") {
  const int64_t k = 7, m = 28, height = 50, width = 70;
  std::mt19937 rng(5);
  auto masks = at::empty({k, m, m}, at::kFloat);
  {
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    auto a = masks.accessor<float, 3>();
    for (int64_t i = 0; i < k; ++i)
      for (int64_t y = 0; y < m; ++y)
        for (int64_t x = 0; x < m; ++x) a[i][y][x] = u(rng);
  }
  // Inside, fractional, partly outside on each side, tiny (w < 1), larger than the image.
  auto boxes = at::tensor({10.3f, 5.7f, 40.2f, 30.9f,    //
                           -8.5f, 20.0f, 15.0f, 49.5f,   //
                           55.1f, -6.2f, 80.7f, 12.3f,   //
                           3.0f, 3.0f, 3.4f, 3.2f,       //
                           -20.0f, -15.0f, 95.0f, 70.0f, //
                           0.0f, 0.0f, 69.0f, 49.0f,     //
                           33.33f, 44.44f, 66.66f, 77.77f})
                   .view({k, 4});
  TempDir dir;
  test::write_bytes(dir / "masks.bin",
                    std::string(reinterpret_cast<const char*>(masks.data_ptr<float>()), masks.nbytes()));
  test::write_bytes(dir / "boxes.bin",
                    std::string(reinterpret_cast<const char*>(boxes.data_ptr<float>()), boxes.nbytes()));
  const auto r = test::run_python(dir, R"(
import os, numpy as np, torch
from torchvision.models.detection.roi_heads import paste_masks_in_image
os.chdir(')" + dir.path().string() + R"(')
masks = torch.from_numpy(np.fromfile('masks.bin', dtype=np.float32).reshape(7, 1, 28, 28))
boxes = torch.from_numpy(np.fromfile('boxes.bin', dtype=np.float32).reshape(7, 4))
for p in (1, 0, 2):
    out = paste_masks_in_image(masks, boxes, (50, 70), padding=p)
    assert out.shape == (7, 1, 50, 70), out.shape
    out[:, 0].contiguous().numpy().tofile('out%d.bin' % p)
)");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  for (int64_t padding : {1, 0, 2}) {
    INFO("padding " << padding);
    const std::string raw = test::read_bytes(dir / ("out" + std::to_string(padding) + ".bin"));
    REQUIRE(raw.size() == static_cast<size_t>(k * height * width * 4));
    auto expected = at::empty({k, height, width}, at::kFloat);
    std::memcpy(expected.data_ptr<float>(), raw.data(), raw.size());
    auto ours = padding == 1 ? ops::paste_masks(masks, boxes, height, width)
                             : ops::paste_masks(masks, boxes, height, width, padding);
    REQUIRE(ours.sizes() == expected.sizes());
    const double diff = (ours - expected).abs().max().item<double>();
    CHECK(diff <= 1e-5);
    CHECK(expected.abs().sum().item<double>() > 100.0);  // the reference is not all zeros
  }
  // [K,1,M,M] accepted, same result.
  CHECK(at::equal(ops::paste_masks(masks.unsqueeze(1), boxes, height, width),
                  ops::paste_masks(masks, boxes, height, width)));
}

TEST_CASE("paste_masks: shapes, a box wholly outside, errors", "[ops][instance]") {
  // A mask of ones in box (10,10)-(19,19): padding 1 on M=8 grows the box by 10/8 about its
  // centre 14.5 -> (8.875, 20.125) -> truncated (8, 20); the 13x13 resize of the zero-bordered
  // 10x10 mask is ~1 in the middle and fades at the border, so > 0.5 covers about the box.
  auto ones = at::ones({1, 8, 8});
  auto pasted = ops::paste_masks(ones, at::tensor({10.0f, 10.0f, 19.0f, 19.0f}).view({1, 4}), 32, 32);
  REQUIRE(pasted.sizes() == at::IntArrayRef({1, 32, 32}));
  CHECK(pasted[0][14][14].item<float>() == Approx(1.0f));
  CHECK(pasted[0].slice(0, 0, 8).sum().item<float>() == 0.0f);
  CHECK(pasted[0].slice(0, 21).sum().item<float>() == 0.0f);
  const auto covered = pasted.gt(0.5).sum().item<int64_t>();
  CHECK(covered >= 81);
  CHECK(covered <= 144);
  // Wholly outside (torchvision raises here): an empty mask.
  auto outside = ops::paste_masks(ones, at::tensor({-40.0f, 3.0f, -20.0f, 9.0f}).view({1, 4}), 16, 16);
  CHECK(outside.sum().item<float>() == 0.0f);
  CHECK(ops::paste_masks(at::zeros({0, 8, 8}), at::zeros({0, 4}), 5, 6).sizes() ==
        at::IntArrayRef({0, 5, 6}));
  CHECK_THROWS_WITH(ops::paste_masks(ones, at::zeros({2, 4}), 5, 5), Catch::Contains("1 masks but 2 boxes"));
  CHECK_THROWS_WITH(ops::paste_masks(at::ones({1, 8, 6}), at::zeros({1, 4}), 5, 5),
                    Catch::Contains("[1, 8, 6]"));
  CHECK_THROWS_WITH(ops::paste_masks(ones, at::zeros({1, 5}), 5, 5), Catch::Contains("[1, 5]"));
}
