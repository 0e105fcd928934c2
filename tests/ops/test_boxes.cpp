#include "catch.h"

#include <ATen/ATen.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/ops/boxes.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

// Same dtype, shape and values; NaN matches NaN.
bool same(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  if (!a.is_floating_point()) return at::equal(a, b);
  return at::logical_or(a.eq(b), at::logical_and(a.isnan(), b.isnan())).all().item<bool>();
}

// Random xyxy boxes with some zero-size and duplicated boxes.
at::Tensor random_boxes(int64_t n, at::ScalarType type, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto xy = at::rand({n, 2}, gen, at::kDouble) * 100;
  auto wh = at::rand({n, 2}, gen, at::kDouble) * 40;
  if (n > 4) {
    wh[1].zero_();                // a point
    wh[2][0] = 0;                 // zero width
    xy[3].copy_(xy[0]);           // a duplicate of box 0
    wh[3].copy_(wh[0]);
  }
  return at::cat({xy, xy + wh}, 1).to(type);
}

const char* const kFormats[] = {"xyxy", "xywh", "cxcywh"};

}  // namespace

TEST_CASE("box_iou of two hand-made boxes", "[ops][boxes]") {
  // [0,0,2,2] and [1,1,3,3]: intersection 1x1 = 1, union 4 + 4 - 1 = 7.
  auto a = at::tensor({0.f, 0.f, 2.f, 2.f}).view({1, 4});
  auto b = at::tensor({1.f, 1.f, 3.f, 3.f, 5.f, 5.f, 6.f, 6.f}).view({2, 4});
  auto iou = ops::box_iou(a, b);
  REQUIRE(iou.sizes() == at::IntArrayRef({1, 2}));
  CHECK(iou[0][0].item<float>() == Approx(1.0 / 7.0));
  CHECK(iou[0][1].item<float>() == 0.0f);
  CHECK(ops::box_iou(b, a).sizes() == at::IntArrayRef({2, 1}));
  CHECK(ops::box_iou(a.to(at::kDouble), b.to(at::kDouble))[0][0].item<double>() == Approx(1.0 / 7.0));
  // Integer boxes give float IoU (torchvision's true division).
  CHECK(ops::box_iou(a.to(at::kInt), b.to(at::kInt)).scalar_type() == at::kFloat);
}

TEST_CASE("box_convert round-trips and matches the hand formulas", "[ops][boxes]") {
  auto xyxy = at::tensor({10.f, 20.f, 30.f, 60.f}).view({1, 4});
  CHECK(at::equal(ops::box_convert(xyxy, "xyxy", "xywh"), at::tensor({10.f, 20.f, 20.f, 40.f}).view({1, 4})));
  CHECK(at::equal(ops::box_convert(xyxy, "xyxy", "cxcywh"), at::tensor({20.f, 40.f, 20.f, 40.f}).view({1, 4})));
  CHECK(at::equal(ops::box_xywh_to_xyxy(ops::box_xyxy_to_xywh(xyxy)), xyxy));
  CHECK(at::equal(ops::box_cxcywh_to_xyxy(ops::box_xyxy_to_cxcywh(xyxy)), xyxy));
  auto copy = ops::box_convert(xyxy, "xyxy", "xyxy");
  CHECK(at::equal(copy, xyxy));
  CHECK(copy.data_ptr() != xyxy.data_ptr());
  CHECK(ops::box_area(xyxy).item<float>() == 800.0f);
  CHECK(at::equal(ops::clip_boxes_to_image(at::tensor({-5.f, 3.f, 50.f, 70.f}).view({1, 4}), 64, 40),
                  at::tensor({0.f, 3.f, 40.f, 64.f}).view({1, 4})));
  auto boxes = at::tensor({0.f, 0.f, 4.f, 10.f, 0.f, 0.f, 10.f, 10.f, 0.f, 0.f, 5.f, 5.f}).view({3, 4});
  CHECK(at::equal(ops::remove_small_boxes(boxes, 5.0), at::tensor({int64_t{1}, int64_t{2}})));
}

TEST_CASE("box ops match torchvision.ops bit for bit", "[ops][boxes][parity]") {
  TempDir dir;
  io::StateDict in;
  in.insert("f", random_boxes(60, at::kFloat, 1));
  in.insert("d", random_boxes(60, at::kDouble, 2));
  in.insert("i", (random_boxes(30, at::kDouble, 3) - 20).round().to(at::kLong));
  in.insert("h", random_boxes(30, at::kHalf, 4));
  in.insert("b3", random_boxes(10, at::kFloat, 5).view({2, 5, 4}));
  in.insert("g", random_boxes(45, at::kFloat, 6));
  in.insert("gd", random_boxes(45, at::kDouble, 7));
  io::save_state_dict(in, dir / "in.pt");

  const auto r = test::run_python(dir, R"(
import torch, torchvision.ops as ops
inp = torch.load(')" + (dir / "in.pt") + R"(')
out = {}
fmts = ['xyxy', 'xywh', 'cxcywh']
for name in ['f', 'd', 'i', 'b3']:
    for a in fmts:
        for b in fmts:
            out['convert.%s.%s.%s' % (name, a, b)] = ops.box_convert(inp[name], a, b)
    out['clip.' + name] = ops.clip_boxes_to_image(inp[name], (50, 70))
for name in ['f', 'd', 'i', 'h']:
    out['area.' + name] = ops.box_area(inp[name])
    for m in [0.5, 5.0, 17.3]:
        out['small.%s.%g' % (name, m)] = ops.remove_small_boxes(inp[name], m)
for a, b in [('f', 'g'), ('g', 'f'), ('f', 'f'), ('d', 'gd'), ('i', 'i'), ('h', 'h'), ('f', 'gd')]:
    out['iou.%s.%s' % (a, b)] = ops.box_iou(inp[a], inp[b])
torch.save({k: v.contiguous().clone() for k, v in out.items()}, ')" + (dir / "out.pt") + R"(')
)");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto ref = io::load_state_dict(dir / "out.pt");
  size_t checked = 0;
  const auto expect = [&](const std::string& key, const at::Tensor& ours) {
    INFO(key << ": ours " << ours.scalar_type() << ours.sizes());
    const at::Tensor* theirs = ref.find(key);
    REQUIRE(theirs != nullptr);
    CHECK(same(ours, *theirs));
    ++checked;
  };
  for (const std::string name : {"f", "d", "i", "b3"}) {
    for (const std::string a : kFormats) {
      for (const std::string b : kFormats) {
        expect("convert." + name + "." + a + "." + b, ops::box_convert(in[name], a, b));
      }
    }
    expect("clip." + name, ops::clip_boxes_to_image(in[name], 50, 70));
  }
  for (const std::string name : {"f", "d", "i", "h"}) {
    expect("area." + name, ops::box_area(in[name]));
    expect("small." + name + ".0.5", ops::remove_small_boxes(in[name], 0.5));
    expect("small." + name + ".5", ops::remove_small_boxes(in[name], 5.0));
    expect("small." + name + ".17.3", ops::remove_small_boxes(in[name], 17.3));
  }
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"f", "g"}, {"g", "f"}, {"f", "f"}, {"d", "gd"}, {"i", "i"}, {"h", "h"}, {"f", "gd"}}) {
    expect("iou." + a + "." + b, ops::box_iou(in[a], in[b]));
  }
  CHECK(checked == ref.size());
  // The zero-area point box against itself is 0/0, as torchvision.
  CHECK(std::isnan(ops::box_iou(in["f"], in["f"])[1][1].item<float>()));
}

TEST_CASE("box ops reject wrong shapes with the actual sizes", "[ops][boxes]") {
  const auto bad = at::zeros({3, 5});
  CHECK_THROWS_WITH(ops::box_iou(bad, at::zeros({2, 4})), Catch::Contains("[3, 5]") && Catch::Contains("boxes1"));
  CHECK_THROWS_WITH(ops::box_iou(at::zeros({2, 4}), at::zeros({4})), Catch::Contains("[4]") && Catch::Contains("boxes2"));
  CHECK_THROWS_WITH(ops::box_area(at::zeros({2, 2, 4})), Catch::Contains("[2, 2, 4]"));
  CHECK_THROWS_WITH(ops::box_convert(bad, "xyxy", "xywh"), Catch::Contains("[3, 5]"));
  CHECK_THROWS_WITH(ops::box_convert(at::zeros({2, 4}), "xyxy", "yxyx"), Catch::Contains("yxyx"));
  CHECK_THROWS_WITH(ops::clip_boxes_to_image(bad, 10, 10), Catch::Contains("[3, 5]"));
  CHECK_THROWS_WITH(ops::clip_boxes_to_image(at::zeros({1, 4}), -1, 10), Catch::Contains("-1"));
  CHECK_THROWS_WITH(ops::remove_small_boxes(at::zeros({4}), 1.0), Catch::Contains("[4]"));
}

TEST_CASE("box ops on empty inputs give empty outputs", "[ops][boxes]") {
  const auto none = at::zeros({0, 4});
  const auto some = random_boxes(3, at::kFloat, 9);
  CHECK(ops::box_iou(none, some).sizes() == at::IntArrayRef({0, 3}));
  CHECK(ops::box_iou(some, none).sizes() == at::IntArrayRef({3, 0}));
  CHECK(ops::box_iou(none, none).sizes() == at::IntArrayRef({0, 0}));
  CHECK(ops::box_area(none).sizes() == at::IntArrayRef({0}));
  for (const std::string a : kFormats) {
    for (const std::string b : kFormats) CHECK(ops::box_convert(none, a, b).sizes() == at::IntArrayRef({0, 4}));
  }
  CHECK(ops::clip_boxes_to_image(none, 5, 5).sizes() == at::IntArrayRef({0, 4}));
  const auto kept = ops::remove_small_boxes(none, 1.0);
  CHECK(kept.numel() == 0);
  CHECK(kept.scalar_type() == at::kLong);
}
