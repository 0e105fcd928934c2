#include "catch.h"

#include <ATen/ATen.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "ostrov/core/error.h"
#include "ostrov/core/image.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {
cv::Mat gradient_image(int h, int w) {
  cv::Mat m(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) m.at<cv::Vec3b>(y, x) = cv::Vec3b(x * 7 % 256, y * 13 % 256, (x + y) % 256);
  return m;
}
}  // namespace

TEST_CASE("image_to_tensor gives [3,H,W] float RGB in [0,1] and round-trips exactly", "[core][image]") {
  cv::Mat bgr = gradient_image(5, 7);
  auto t = core::image_to_tensor(bgr);
  REQUIRE(t.sizes() == at::IntArrayRef({3, 5, 7}));
  REQUIRE(t.scalar_type() == at::kFloat);
  // channel 0 is R = BGR[2]
  const auto px = bgr.at<cv::Vec3b>(2, 3);
  CHECK(t[0][2][3].item<float>() == Approx(px[2] / 255.0));
  CHECK(t[2][2][3].item<float>() == Approx(px[0] / 255.0));
  cv::Mat back = core::tensor_to_image(t);
  REQUIRE(back.type() == CV_8UC3);
  CHECK(cv::norm(back, bgr, cv::NORM_INF) == 0.0);
  // [1,3,H,W] accepted, values clamped
  CHECK(cv::norm(core::tensor_to_image((t * 2.0 - 0.5).unsqueeze(0)), bgr, cv::NORM_INF) > 0.0);
}

TEST_CASE("image_to_tensor owns its memory", "[core][image]") {
  at::Tensor t;
  {
    cv::Mat bgr = gradient_image(4, 4);
    t = core::image_to_tensor(bgr);
  }
  cv::Mat other(4, 4, CV_8UC3, cv::Scalar(0, 0, 0));  // likely reuses the freed block
  CHECK(t.max().item<float>() > 0.0f);
}

TEST_CASE("grey images become three equal channels", "[core][image]") {
  cv::Mat grey(3, 3, CV_8UC1, cv::Scalar(51));
  auto t = core::image_to_tensor(grey);
  CHECK(t.sizes() == at::IntArrayRef({3, 3, 3}));
  CHECK(at::allclose(t, at::full({3, 3, 3}, 0.2f)));
}

TEST_CASE("normalize and denormalize are inverse", "[core][image]") {
  auto x = at::rand({2, 3, 4, 5});
  auto n = core::normalize(x);
  CHECK(n[0][0][0][0].item<double>() == Approx((x[0][0][0][0].item<double>() - 0.485) / 0.229));
  CHECK(at::allclose(core::denormalize(n), x, 1e-5, 1e-6));
  CHECK_THROWS_WITH(core::normalize(at::rand({4, 4})), Catch::Contains("[4, 4]"));
  CHECK_THROWS_WITH(core::normalize(x, {0.5, 0.5}), Catch::Contains("3 values"));
}

TEST_CASE("stack_images names the mismatching image", "[core][image]") {
  CHECK(core::stack_images({at::zeros({3, 2, 2}), at::ones({3, 2, 2})}).sizes() ==
        at::IntArrayRef({2, 3, 2, 2}));
  CHECK_THROWS_WITH(core::stack_images({at::zeros({3, 2, 2}), at::ones({3, 2, 3})}),
                    Catch::Contains("image 1"));
}

TEST_CASE("read_image / write_image round trip and errors name the path", "[core][image]") {
  TempDir dir;
  cv::Mat bgr = gradient_image(16, 20);
  const std::string png = dir / "a.png";
  core::write_image(png, bgr);
  CHECK(cv::norm(core::read_image(png), bgr, cv::NORM_INF) == 0.0);

  CHECK_THROWS_AS(core::read_image(dir / "missing.png"), IoError);
  CHECK_THROWS_WITH(core::read_image(dir / "missing.png"), Catch::Contains("missing.png"));

  const std::string text = dir / "text.png";
  test::write_bytes(text, "this is not an image\n");
  CHECK_THROWS_WITH(core::read_image(text), Catch::Contains("text.png"));

  const std::string empty = dir / "empty.png";
  test::write_bytes(empty, "");
  CHECK_THROWS_WITH(core::read_image(empty), Catch::Contains("empty"));

  const std::string bytes = test::read_bytes(png);
  const std::string truncated = dir / "truncated.png";
  test::write_bytes(truncated, bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_WITH(core::read_image(truncated), Catch::Contains("truncated.png"));

  // OpenCV decodes a truncated JPEG without error; ostrov must not.
  const std::string jpg = dir / "b.jpg";
  cv::imwrite(jpg, gradient_image(64, 64));
  CHECK_NOTHROW(core::read_image(jpg));
  const std::string jbytes = test::read_bytes(jpg);
  const std::string tjpg = dir / "truncated.jpg";
  test::write_bytes(tjpg, jbytes.substr(0, jbytes.size() * 2 / 3));
  CHECK_THROWS_WITH(core::read_image(tjpg), Catch::Contains("truncated.jpg"));

  // 16-bit images are refused with the bit depth.
  cv::Mat deep(4, 4, CV_16UC3, cv::Scalar(1000, 2000, 3000));
  cv::imwrite(dir / "deep.png", deep);
  CHECK_THROWS_WITH(core::read_image(dir / "deep.png"), Catch::Contains("16-bit"));

  // A failed write leaves nothing behind.
  CHECK_THROWS_AS(core::write_image(dir / "nofolder/x.png", bgr), IoError);
  CHECK_FALSE(std::filesystem::exists(dir / "nofolder"));
}

TEST_CASE("masks: 8-bit PNG <-> int64 tensor, nearest resize keeps labels", "[core][image]") {
  TempDir dir;
  auto mask = at::randint(0, 5, {9, 11}, at::kLong);
  mask[0][0] = 255;
  const std::string path = dir / "m.png";
  core::write_image(path, core::mask_to_mat(mask));
  auto back = core::read_mask(path);
  CHECK(at::equal(back, mask));

  auto big = core::resize_mask(mask, 18, 22);
  CHECK(big.sizes() == at::IntArrayRef({18, 22}));
  CHECK(at::equal(big.index({at::indexing::Slice(at::indexing::None, at::indexing::None, 2),
                             at::indexing::Slice(at::indexing::None, at::indexing::None, 2)}),
                  mask));
  // Same as OpenCV's INTER_NEAREST for a down-scale.
  cv::Mat cv_small;
  cv::resize(core::mask_to_mat(mask), cv_small, cv::Size(5, 4), 0, 0, cv::INTER_NEAREST);
  CHECK(at::equal(core::resize_mask(mask, 4, 5), core::mat_to_mask(cv_small)));

  CHECK_THROWS_WITH(core::mask_to_mat(at::full({2, 2}, 300, at::kLong)), Catch::Contains("300"));
  cv::imwrite(dir / "rgb.png", gradient_image(4, 4));
  CHECK_THROWS_WITH(core::read_mask(dir / "rgb.png"), Catch::Contains("1 channel"));
}

TEST_CASE("masks: palette PNGs give their palette indices (PASCAL VOC's format)",
          "[core][image]") {
  // PIL writes the masks: 8-bit with PASCAL VOC's colour map (every colour distinct), 4-bit
  // with a palette padded by repeated black (colours alone could not give the indices back),
  // 1-bit, and interlaced.
  TempDir dir;
  const auto py = test::run_python(dir, R"(
import numpy as np
from PIL import Image
def voc():
    cmap = []
    for i in range(256):
        r = g = b = 0; c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j); g |= ((c >> 1) & 1) << (7 - j); b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap += [r, g, b]
    return cmap
m = (np.arange(7 * 13).reshape(7, 13) * 5) % 21
m[0, 0] = 255
m.astype(np.uint8).tofile(")" + (dir / "m8.raw") + R"(")
p = Image.fromarray(m.astype(np.uint8), mode="P"); p.putpalette(voc())
p.save(")" + (dir / "voc.png") + R"(")
p.save(")" + (dir / "interlaced.png") + R"(", interlace=1)
q = Image.fromarray((m % 16).astype(np.uint8), mode="P")
q.putpalette([0, 0, 0] * 3 + [255, 0, 0, 0, 255, 0] + [0, 0, 0] * 11)
q.save(")" + (dir / "m4.png") + R"(", bits=4)
b = Image.fromarray((m % 2).astype(np.uint8), mode="P"); b.putpalette([0, 0, 0, 255, 255, 255])
b.save(")" + (dir / "m1.png") + R"(", bits=1)
)");
  INFO(py.output);
  REQUIRE(py.exit_code == 0);
  for (const char* name : {"voc.png", "interlaced.png", "m4.png", "m1.png"}) {
    REQUIRE(test::read_bytes(dir / name)[25] == 3);  // PNG colour type 3: palette
  }
  const std::string raw = test::read_bytes(dir / "m8.raw");
  REQUIRE(raw.size() == 7 * 13);
  const at::Tensor expected =
      at::from_blob(const_cast<char*>(raw.data()), {7, 13}, at::kByte).to(at::kLong);
  CHECK(at::equal(core::read_mask(dir / "voc.png"), expected));
  CHECK(at::equal(core::read_mask(dir / "interlaced.png"), expected));
  CHECK(at::equal(core::read_mask(dir / "m4.png"), expected.remainder(16)));
  CHECK(at::equal(core::read_mask(dir / "m1.png"), expected.remainder(2)));

  // Damaged pixel data (the file still ends with IEND): an error naming the file, no crash.
  std::string bytes = test::read_bytes(dir / "voc.png");
  const size_t idat = bytes.find("IDAT");
  REQUIRE(idat != std::string::npos);
  for (size_t i = idat + 6; i < idat + 16; ++i) bytes[i] = '\x55';
  test::write_bytes(dir / "bad.png", bytes);
  CHECK_THROWS_WITH(core::read_mask(dir / "bad.png"),
                    Catch::Contains(dir / "bad.png") && Catch::Contains("palette PNG"));
}
