#include "catch.h"

#include <cmath>
#include <string>

#include <ATen/ATen.h>

#include "ostrov/ops/box_coder.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

at::Tensor read_f32(const std::string& path, int64_t cols) {
  const std::string bytes = ostrov::test::read_bytes(path);
  const auto n = static_cast<int64_t>(bytes.size() / sizeof(float));
  return at::from_blob(const_cast<char*>(bytes.data()), {n}, at::kFloat)
      .clone()
      .reshape({-1, cols});
}

void write_f32(const std::string& path, const at::Tensor& t) {
  const auto c = t.to(at::kFloat).contiguous();
  ostrov::test::write_bytes(
      path, std::string(static_cast<const char*>(c.data_ptr()), c.numel() * sizeof(float)));
}

// Random valid x1,y1,x2,y2 boxes: corners in [0, 300), sides in [1, 150).
at::Tensor random_boxes(int64_t n, at::ScalarType dtype = at::kFloat) {
  const auto xy = at::rand({n, 2}, at::kDouble) * 300;
  const auto wh = at::rand({n, 2}, at::kDouble) * 149 + 1;
  return at::cat({xy, xy + wh}, 1).to(dtype);
}

}  // namespace

TEST_CASE("BoxCoder encodes hand-checked offsets", "[ops][box_coder]") {
  ops::BoxCoder coder;  // weights (10, 10, 5, 5)
  const auto prior = at::tensor({0.0, 0.0, 10.0, 10.0}, at::kDouble).reshape({1, 4});
  // Box [0,0,20,20]: centre (10,10) vs (5,5), size 20 vs 10:
  // dx = 10 * 5 / 10 = 5, dw = 5 * log(2) = 3.4657...
  const auto box = at::tensor({0.0, 0.0, 20.0, 20.0}, at::kDouble).reshape({1, 4});
  const auto code = coder.encode(box, prior);
  REQUIRE(code.sizes() == at::IntArrayRef({1, 4}));
  CHECK(code[0][0].item<double>() == Approx(5.0));
  CHECK(code[0][1].item<double>() == Approx(5.0));
  CHECK(code[0][2].item<double>() == Approx(5.0 * std::log(2.0)));
  CHECK(code[0][3].item<double>() == Approx(5.0 * std::log(2.0)));
  // Same as ssd.pytorch's variances: (cx - pcx) / (0.1 pw), log(w / pw) / 0.2.
  CHECK(code[0][0].item<double>() == Approx((10.0 - 5.0) / (0.1 * 10)));
  CHECK(code[0][2].item<double>() == Approx(std::log(20.0 / 10.0) / 0.2));
  // The prior itself encodes to 0.
  CHECK(coder.encode(prior, prior).abs().max().item<double>() == 0.0);
  // Decoding clamps dw, dh at log(1000/16): the width grows at most 62.5x.
  const auto big =
      coder.decode(at::tensor({0.0, 0.0, 100.0, 100.0}, at::kDouble).reshape({1, 4}), prior);
  CHECK(big[0][2].item<double>() - big[0][0].item<double>() == Approx(62.5 * 10));
  CHECK(big[0][3].item<double>() - big[0][1].item<double>() == Approx(62.5 * 10));
}

TEST_CASE("BoxCoder round-trips", "[ops][box_coder]") {
  at::manual_seed(3);
  const auto boxes = random_boxes(500, at::kDouble);
  const auto priors = random_boxes(500, at::kDouble);
  for (const auto& coder : {ops::BoxCoder(), ops::BoxCoder({1.0, 1.0, 1.0, 1.0}),
                            ops::BoxCoder({10.0, 10.0, 5.0, 5.0}, 100.0)}) {
    const auto codes = coder.encode(boxes, priors);
    CHECK(codes.scalar_type() == at::kDouble);
    // Decoding is exact unless a side ratio box/prior reaches the clip exp(bbox_xform_clip)
    // (62.5 by default; sides here are in [1, 150), so a few pairs do).
    const auto ratio = (boxes.slice(1, 2, 4) - boxes.slice(1, 0, 2)) /
                       (priors.slice(1, 2, 4) - priors.slice(1, 0, 2));
    const auto ok = (ratio < std::exp(coder.bbox_xform_clip())).all(1);
    const auto back = coder.decode(codes, priors);
    const auto err = std::get<0>((back - boxes).abs().max(1));
    CHECK(err.masked_select(ok).max().item<double>() < 1e-9);
    if (coder.bbox_xform_clip() > 50) {
      CHECK(ok.all().item<bool>());
    } else {
      CHECK_FALSE(ok.all().item<bool>());  // the clip did bite some pairs
    }
  }
  // float32: round trip to float precision.
  const auto b32 = boxes.to(at::kFloat);
  const auto p32 = priors.to(at::kFloat);
  ops::BoxCoder coder({10.0, 10.0, 5.0, 5.0}, 100.0);
  CHECK((coder.decode(coder.encode(b32, p32), p32) - b32).abs().max().item<double>() < 1e-3);
}

TEST_CASE("BoxCoder equals torchvision's BoxCoder", "[ops][box_coder][parity]") {
  TempDir dir;
  at::manual_seed(11);
  const auto boxes = random_boxes(1000);
  const auto priors = random_boxes(1000);
  // Codes for decoding: two boxes per prior ([N,8]), dw/dh up to +-30 (beyond the clip).
  const auto codes = (at::rand({1000, 8}) - 0.5) * 60;
  write_f32(dir / "boxes.bin", boxes);
  write_f32(dir / "priors.bin", priors);
  write_f32(dir / "codes.bin", codes);
  const std::string script = "d = \"" + dir.path().string() + "\"\n" + R"PY(
import numpy as np, torch
from torchvision.models.detection._utils import BoxCoder
load = lambda n, c: torch.from_numpy(np.fromfile(f"{d}/{n}.bin", dtype="<f4").reshape(-1, c))
boxes, priors, codes = load("boxes", 4), load("priors", 4), load("codes", 8)
coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))  # as torchvision's SSD
coder.encode_single(boxes, priors).numpy().astype("<f4").tofile(f"{d}/enc.bin")
coder.decode_single(codes, priors).numpy().astype("<f4").tofile(f"{d}/dec.bin")
coder.decode_single(codes[:, :4].double(), priors).numpy().astype("<f4").tofile(f"{d}/dec64.bin")
)PY";
  const auto result = ostrov::test::run_python(dir, script);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  ops::BoxCoder coder;
  const auto enc = coder.encode(boxes, priors);
  const auto ref_enc = read_f32(dir / "enc.bin", 4);
  REQUIRE(ref_enc.sizes() == enc.sizes());
  const double enc_diff = (enc - ref_enc).abs().max().item<double>();
  CHECK(enc_diff <= 1e-6);
  const auto dec = coder.decode(codes, priors);
  const auto ref_dec = read_f32(dir / "dec.bin", 8);
  REQUIRE(ref_dec.sizes() == dec.sizes());
  // Decoded boxes reach ~300 * 62.5 pixels; compare relative to magnitude.
  const double dec_diff = ((dec - ref_dec).abs() / (ref_dec.abs() + 1)).max().item<double>();
  CHECK(dec_diff <= 1e-6);
  // float64 codes with float32 priors: the result is float64.
  const auto dec64 = coder.decode(codes.slice(1, 0, 4).to(at::kDouble), priors);
  CHECK(dec64.scalar_type() == at::kDouble);
  CHECK(((dec64.to(at::kFloat) - read_f32(dir / "dec64.bin", 4)).abs() /
         (dec64.abs().to(at::kFloat) + 1))
            .max()
            .item<double>() <= 1e-6);
  INFO("BoxCoder max |diff| vs torchvision: encode " << enc_diff << ", decode (relative) "
                                                     << dec_diff);
}

TEST_CASE("BoxCoder rejects degenerate boxes and bad shapes", "[ops][box_coder]") {
  ops::BoxCoder coder;
  const auto good =
      at::tensor({0.0, 0.0, 10.0, 10.0, 5.0, 5.0, 8.0, 9.0}, at::kDouble).reshape({2, 4});
  const auto flipped =
      at::tensor({0.0, 0.0, 10.0, 10.0, 5.0, 5.0, 4.0, 9.0}, at::kDouble).reshape({2, 4});
  const auto flat =
      at::tensor({0.0, 0.0, 10.0, 10.0, 5.0, 5.0, 8.0, 5.0}, at::kDouble).reshape({2, 4});
  CHECK_THROWS_WITH(coder.encode(good, flipped),
                    Catch::Contains("prior 1 is degenerate") && Catch::Contains("[5, 5, 4, 9]"));
  CHECK_THROWS_WITH(coder.encode(flipped, good), Catch::Contains("box 1 is degenerate"));
  CHECK_THROWS_WITH(coder.encode(flat, good), Catch::Contains("box 1 is degenerate"));
  CHECK_THROWS_WITH(coder.decode(at::zeros({2, 4}, at::kDouble), flat),
                    Catch::Contains("prior 1 is degenerate"));
  CHECK_THROWS_WITH(coder.encode(good, good.slice(0, 0, 1)), Catch::Contains("same number"));
  CHECK_THROWS_WITH(coder.encode(good.reshape({4, 2}), good), Catch::Contains("[N,4]"));
  CHECK_THROWS_WITH(coder.decode(at::zeros({2, 3}), good), Catch::Contains("[N,4k]"));
  CHECK_THROWS_WITH(ops::BoxCoder({10.0, 0.0, 5.0, 5.0}), Catch::Contains("weights"));
  CHECK_NOTHROW(coder.encode(good, good));
}
