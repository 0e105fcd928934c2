#include "catch.h"

#include <cmath>
#include <limits>
#include <sstream>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "ostrov/io/state_dict.h"
#include "ostrov/ops/generic.h"
#include "ostrov/ops/nms.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

at::Tensor longs(std::vector<int64_t> v) { return at::tensor(v, at::kLong); }

// The size and first indices of a result, for failure messages.
std::string head(const at::Tensor& t) {
  std::ostringstream out;
  out << t.scalar_type() << t.sizes() << " [";
  const auto c = t.to(at::kLong).contiguous();
  for (int64_t i = 0; i < std::min<int64_t>(c.numel(), 12); ++i) out << c.data_ptr<int64_t>()[i] << " ";
  out << "...]";
  return out.str();
}

struct Case {
  at::Tensor boxes, scores, idxs;
  double threshold = 0.5;
};

// Case i of the parity set: clustered boxes (so that many overlap), with exact score ties,
// duplicated boxes and degenerate (zero-width or point) boxes in most cases; float and
// double; a few cases above 1000 boxes, where batched_nms switches strategy as torchvision.
Case make_case(int i) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + i);
  const auto type = (i % 3 == 2) ? at::kDouble : at::kFloat;
  int64_t n;
  if (i < 3) {
    n = i;  // 0, 1, 2 boxes
  } else if (i >= 190) {
    n = 1001 + at::randint(400, {1}, gen).item<int64_t>();
  } else {
    n = 3 + at::randint(300, {1}, gen).item<int64_t>();
  }
  const int64_t clusters = 1 + i % 7;
  auto centres = at::rand({clusters, 2}, gen, at::kDouble) * 200;
  auto which = at::randint(clusters, {n}, gen);
  auto xy = centres.index_select(0, which) + at::randn({n, 2}, gen, at::kDouble) * 8;
  auto wh = 1 + at::rand({n, 2}, gen, at::kDouble) * 40;
  auto boxes = at::cat({xy, xy + wh}, 1);
  auto scores = at::rand({n}, gen, at::kDouble);
  switch (i % 4) {
    case 1: scores = (scores * 5).floor() / 5; break;  // five score levels: many exact ties
    case 2: scores.fill_(0.5); break;                  // all tied
    case 3: scores = (scores * 40).floor() / 40; break;
    default: break;
  }
  if (n > 4 && i % 2 == 0) {  // duplicated boxes with duplicated scores
    const int64_t copies = n / 5;
    auto src = at::randint(n, {copies}, gen);
    auto dst = at::randint(n, {copies}, gen);
    boxes.index_copy_(0, dst, boxes.index_select(0, src));
    scores.index_copy_(0, dst, scores.index_select(0, src));
  }
  if (n > 6 && i % 5 == 0) {  // degenerate boxes
    boxes[0][2] = boxes[0][0];
    boxes[1].slice(0, 2, 4).copy_(boxes[1].slice(0, 0, 2));
    boxes[2].copy_(boxes[1]);
  }
  static const double thresholds[] = {0.5, 0.0, 0.3, 0.7, 1.0, 0.45};
  Case c;
  c.boxes = boxes.to(type);
  c.scores = scores.to(type);
  c.idxs = at::randint(1 + i % 5, {n}, gen);
  c.threshold = (i % 11 == 10) ? at::rand({1}, gen, at::kDouble).item<double>() : thresholds[i % 6];
  return c;
}

}  // namespace

TEST_CASE("nms keeps the best box of each overlapping group, by decreasing score", "[ops][nms]") {
  // IoU of boxes 0 and 1: intersection 9x9 = 81, union 100 + 100 - 81 = 119, 0.68.
  auto boxes = at::tensor({0.f, 0.f, 10.f, 10.f, 1.f, 1.f, 11.f, 11.f, 20.f, 20.f, 30.f, 30.f}).view({3, 4});
  auto scores = at::tensor({0.8f, 0.9f, 0.7f});
  CHECK(at::equal(ops::nms(boxes, scores, 0.5), longs({1, 2})));
  CHECK(at::equal(ops::nms(boxes, scores, 0.69), longs({1, 0, 2})));
  CHECK(at::equal(ops::nms(boxes.to(at::kDouble), scores.to(at::kDouble), 0.5), longs({1, 2})));
  CHECK(ops::nms(boxes, scores, 0.5).scalar_type() == at::kLong);
}

TEST_CASE("nms suppresses only when IoU is strictly above the threshold", "[ops][nms]") {
  // [0,0,2,1] (area 2) contains [0,0,1,1] (area 1): IoU = 1 / 2 exactly.
  auto boxes = at::tensor({0.f, 0.f, 2.f, 1.f, 0.f, 0.f, 1.f, 1.f}).view({2, 4});
  auto scores = at::tensor({0.9f, 0.1f});
  CHECK(at::equal(ops::nms(boxes, scores, 0.5), longs({0, 1})));
  CHECK(at::equal(ops::nms(boxes, scores, 0.4999), longs({0})));
  // Identical boxes have IoU 1: kept only with a threshold of 1.
  auto same = at::tensor({1.f, 1.f, 4.f, 4.f, 1.f, 1.f, 4.f, 4.f}).view({2, 4});
  CHECK(ops::nms(same, scores, 0.99).numel() == 1);
  CHECK(ops::nms(same, scores, 1.0).numel() == 2);
  // Two zero-area boxes: IoU 0/0 is NaN, which never suppresses.
  auto points = at::tensor({1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f, 1.f}).view({2, 4});
  CHECK(ops::nms(points, scores, 0.0).numel() == 2);
}

TEST_CASE("the strict threshold holds for many candidates and thresholds between floats", "[ops][nms]") {
  // Box 0 = [0,0,16,1] (area 16) and eight disjoint [2k,0,2k+2,1] (area 2) inside it: each
  // has IoU 2 / 16 = 0.125 exactly with box 0 and 0 with the others.
  std::vector<double> v = {0, 0, 16, 1};
  for (int k = 0; k < 8; ++k) v.insert(v.end(), {2.0 * k, 0, 2.0 * k + 2, 1});
  for (const auto type : {at::kFloat, at::kDouble}) {
    INFO(type);
    const auto boxes = at::tensor(v, at::kDouble).view({9, 4}).to(type);
    const auto scores = at::linspace(1, 0.1, 9, at::kDouble).to(type);
    CHECK(ops::nms(boxes, scores, 0.125).numel() == 9);
    CHECK(ops::nms(boxes, scores, 0.125 + 1e-12).numel() == 9);
    // Just below 0.125 in double (0.125 as a float): 0.125 > threshold, so suppressed.
    CHECK(at::equal(ops::nms(boxes, scores, 0.125 - 1e-12), longs({0})));
    CHECK(ops::nms(boxes, scores, std::numeric_limits<double>::infinity()).numel() == 9);
    CHECK(ops::nms(boxes, scores, std::nan("")).numel() == 9);
    CHECK(at::equal(ops::nms(boxes, scores, -std::numeric_limits<double>::infinity()), longs({0})));
  }
}

TEST_CASE("batched_nms never suppresses across categories and sorts by score", "[ops][nms]") {
  auto boxes = at::tensor({0.f, 0.f, 10.f, 10.f, 1.f, 1.f, 11.f, 11.f, 0.f, 0.f, 10.f, 10.f}).view({3, 4});
  auto scores = at::tensor({0.5f, 0.9f, 0.7f});
  CHECK(at::equal(ops::batched_nms(boxes, scores, longs({0, 0, 0}), 0.5), longs({1})));
  CHECK(at::equal(ops::batched_nms(boxes, scores, longs({0, 0, 1}), 0.5), longs({1, 2})));
  CHECK(at::equal(ops::batched_nms(boxes, scores, longs({0, 1, 2}), 0.5), longs({1, 2, 0})));
}

TEST_CASE("nms and batched_nms match torchvision on 200 random cases", "[ops][nms][parity]") {
  TempDir dir;
  constexpr int kCases = 200;
  io::StateDict in;
  std::vector<Case> cases;
  for (int i = 0; i < kCases; ++i) {
    cases.push_back(make_case(i));
    const std::string k = "c" + std::to_string(i) + ".";
    in.insert(k + "boxes", cases.back().boxes);
    in.insert(k + "scores", cases.back().scores);
    in.insert(k + "idxs", cases.back().idxs);
    in.insert(k + "thr", at::scalar_tensor(cases.back().threshold, at::kDouble));
  }
  io::save_state_dict(in, dir / "in.pt");
  const auto r = test::run_python(dir, R"(
import torch, torchvision.ops as ops
inp = torch.load(')" + (dir / "in.pt") + R"(')
out = {}
for i in range()" + std::to_string(kCases) + R"():
    k = 'c%d.' % i
    b, s, t = inp[k + 'boxes'], inp[k + 'scores'], float(inp[k + 'thr'])
    out[k + 'nms'] = ops.nms(b, s, t)
    out[k + 'batched'] = ops.batched_nms(b, s, inp[k + 'idxs'], t)
torch.save(out, ')" + (dir / "out.pt") + R"(')
)");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto ref = io::load_state_dict(dir / "out.pt");
  int nms_equal = 0, batched_equal = 0, ties = 0;
  for (int i = 0; i < kCases; ++i) {
    const auto& c = cases[i];
    const std::string k = "c" + std::to_string(i) + ".";
    INFO("case " << i << ": " << c.boxes.size(0) << " boxes, " << c.boxes.scalar_type()
                 << ", threshold " << c.threshold);
    const auto ours = ops::nms(c.boxes, c.scores, c.threshold);
    const auto ours_batched = ops::batched_nms(c.boxes, c.scores, c.idxs, c.threshold);
    INFO("nms ours " << head(ours) << " torchvision " << head(ref[k + "nms"]));
    INFO("batched ours " << head(ours_batched) << " torchvision " << head(ref[k + "batched"]));
    CHECK(at::equal(ours, ref[k + "nms"]));
    CHECK(at::equal(ours_batched, ref[k + "batched"]));
    nms_equal += at::equal(ours, ref[k + "nms"]) ? 1 : 0;
    batched_equal += at::equal(ours_batched, ref[k + "batched"]) ? 1 : 0;
    ties += (std::get<0>(at::_unique(c.scores)).numel() < c.scores.numel()) ? 1 : 0;
  }
  CHECK(nms_equal == kCases);
  CHECK(batched_equal == kCases);
  CHECK(ties > kCases / 2);  // the set does exercise tied scores
}

TEST_CASE("nms and batched_nms reject wrong inputs with the actual values", "[ops][nms]") {
  const auto boxes = at::rand({5, 4});
  const auto scores = at::rand({5});
  CHECK_THROWS_WITH(ops::nms(at::rand({5, 3}), scores, 0.5), Catch::Contains("[5, 3]"));
  CHECK_THROWS_WITH(ops::nms(at::rand({20}), scores, 0.5), Catch::Contains("[20]"));
  CHECK_THROWS_WITH(ops::nms(boxes, at::rand({5, 1}), 0.5), Catch::Contains("[5, 1]"));
  CHECK_THROWS_WITH(ops::nms(boxes, at::rand({4}), 0.5), Catch::Contains("[5, 4]") && Catch::Contains("[4]"));
  CHECK_THROWS_WITH(ops::nms(boxes, scores.to(at::kDouble), 0.5), Catch::Contains("Double"));
  CHECK_THROWS_WITH(ops::nms(boxes.to(at::kInt), scores.to(at::kInt), 0.5), Catch::Contains("Int"));
  auto nan_scores = scores.clone();
  nan_scores[3] = std::nanf("");
  CHECK_THROWS_WITH(ops::nms(boxes, nan_scores, 0.5), Catch::Contains("NaN at index 3"));
  CHECK_THROWS_WITH(ops::batched_nms(boxes, nan_scores, at::zeros({5}, at::kLong), 0.5),
                    Catch::Contains("NaN"));
  CHECK_THROWS_WITH(ops::batched_nms(boxes, scores, at::zeros({4}, at::kLong), 0.5),
                    Catch::Contains("[4]"));
  CHECK_THROWS_WITH(ops::batched_nms(at::rand({5, 5}), scores, at::zeros({5}, at::kLong), 0.5),
                    Catch::Contains("[5, 5]"));
}

TEST_CASE("nms and batched_nms on empty inputs give empty int64 results", "[ops][nms]") {
  for (const auto type : {at::kFloat, at::kDouble}) {
    const auto boxes = at::zeros({0, 4}, type);
    const auto scores = at::zeros({0}, type);
    const auto kept = ops::nms(boxes, scores, 0.5);
    CHECK(kept.numel() == 0);
    CHECK(kept.scalar_type() == at::kLong);
    const auto batched = ops::batched_nms(boxes, scores, at::zeros({0}, at::kLong), 0.5);
    CHECK(batched.numel() == 0);
    CHECK(batched.scalar_type() == at::kLong);
  }
}

// The ATen-operations implementations (ops::generic), which the public functions run for tensors
// on other devices (CUDA), against the CPU kernels: on the CPU here, so that machines without a
// GPU check the arithmetic of the GPU path.

TEST_CASE("generic nms and batched_nms equal the CPU kernels on the 200 random cases",
          "[ops][nms][generic]") {
  int large = 0;
  for (int i = 0; i < 200; ++i) {
    const auto c = make_case(i);
    INFO("case " << i << ": " << c.boxes.size(0) << " boxes, " << c.boxes.scalar_type()
                 << ", threshold " << c.threshold);
    const auto cpu = ops::nms(c.boxes, c.scores, c.threshold);
    const auto via_aten = ops::generic::nms(c.boxes, c.scores, c.threshold);
    INFO("nms cpu " << head(cpu) << " generic " << head(via_aten));
    CHECK(via_aten.scalar_type() == at::kLong);
    CHECK(at::equal(via_aten, cpu));
    const auto cpu_batched = ops::batched_nms(c.boxes, c.scores, c.idxs, c.threshold);
    const auto aten_batched = ops::generic::batched_nms(c.boxes, c.scores, c.idxs, c.threshold);
    INFO("batched cpu " << head(cpu_batched) << " generic " << head(aten_batched));
    if (c.boxes.size(0) <= 1000) {
      CHECK(at::equal(aten_batched, cpu_batched));
    } else {
      // The CPU kernel runs one nms per category here and sorts the kept scores unstably: the
      // same kept boxes and the same score sequence, equal scores possibly in another order.
      ++large;
      CHECK(at::equal(std::get<0>(aten_batched.sort()), std::get<0>(cpu_batched.sort())));
      CHECK(at::equal(c.scores.index_select(0, aten_batched),
                      c.scores.index_select(0, cpu_batched)));
    }
  }
  CHECK(large == 10);  // cases 190 to 199
}

TEST_CASE("generic nms over several row blocks of the IoU matrix equals the CPU kernel",
          "[ops][nms][generic]") {
  // 2100 boxes: the IoU rows come in two blocks (4M elements each), the bitmask rows are 263
  // bytes, and a hundred score levels make many ties.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(77);
  const int64_t n = 2100;
  const auto xy = at::rand({n, 2}, gen, at::kDouble) * 300;
  const auto wh = 1 + at::rand({n, 2}, gen, at::kDouble) * 50;
  const auto boxes = at::cat({xy, xy + wh}, 1);
  const auto scores = (at::rand({n}, gen, at::kDouble) * 100).floor();
  for (const auto type : {at::kFloat, at::kDouble}) {
    for (const double threshold : {0.0, 0.5}) {
      INFO(type << ", threshold " << threshold);
      const auto b = boxes.to(type);
      const auto s = scores.to(type);
      const auto cpu = ops::nms(b, s, threshold);
      const auto via_aten = ops::generic::nms(b, s, threshold);
      INFO("cpu " << head(cpu) << " generic " << head(via_aten));
      CHECK(at::equal(via_aten, cpu));
      CHECK(cpu.numel() > 1);
      CHECK(cpu.numel() < n);
    }
  }
}

TEST_CASE("generic nms keeps the CPU kernel's threshold, ties, degenerate boxes and checks",
          "[ops][nms][generic]") {
  // Box 0 contains eight disjoint boxes, each with IoU 2 / 16 = 0.125 exactly (see above).
  std::vector<double> v = {0, 0, 16, 1};
  for (int k = 0; k < 8; ++k) v.insert(v.end(), {2.0 * k, 0, 2.0 * k + 2, 1});
  const double inf = std::numeric_limits<double>::infinity();
  for (const auto type : {at::kFloat, at::kDouble}) {
    INFO(type);
    const auto boxes = at::tensor(v, at::kDouble).view({9, 4}).to(type);
    const auto scores = at::linspace(1, 0.1, 9, at::kDouble).to(type);
    for (const double threshold : {0.125, 0.125 + 1e-12, 0.125 - 1e-12, 0.0, inf, -inf}) {
      INFO("threshold " << threshold);
      CHECK(at::equal(ops::generic::nms(boxes, scores, threshold),
                      ops::nms(boxes, scores, threshold)));
    }
    CHECK(at::equal(ops::generic::nms(boxes, scores, 0.125 - 1e-12), longs({0})));
    CHECK(ops::generic::nms(boxes, scores, 0.125).numel() == 9);
    CHECK(ops::generic::nms(boxes, scores, std::nan("")).numel() == 9);
    // Equal scores: the lower index is visited first and wins.
    const auto same = at::tensor({1., 1., 4., 4., 1., 1., 4., 4., 1., 1., 4., 4.}, at::kDouble)
                          .view({3, 4})
                          .to(type);
    const auto tied = at::full({3}, 0.5, at::kDouble).to(type);
    CHECK(at::equal(ops::generic::nms(same, tied, 0.5), longs({0})));
    CHECK(at::equal(ops::generic::nms(same, tied, 1.0), longs({0, 1, 2})));
    // Two zero-area boxes: IoU 0/0 is NaN, which never suppresses.
    const auto points = at::ones({2, 4}, type);
    CHECK(at::equal(ops::generic::nms(points, tied.narrow(0, 0, 2), 0.0), longs({0, 1})));
    // One box, no boxes.
    CHECK(at::equal(ops::generic::nms(same.narrow(0, 0, 1), tied.narrow(0, 0, 1), 0.5),
                    longs({0})));
    const auto kept = ops::generic::nms(at::zeros({0, 4}, type), at::zeros({0}, type), 0.5);
    CHECK(kept.numel() == 0);
    CHECK(kept.scalar_type() == at::kLong);
    const auto batched = ops::generic::batched_nms(at::zeros({0, 4}, type), at::zeros({0}, type),
                                                   at::zeros({0}, at::kLong), 0.5);
    CHECK(batched.numel() == 0);
    CHECK(batched.scalar_type() == at::kLong);
  }
  const auto boxes = at::rand({5, 4});
  auto nan_scores = at::rand({5});
  nan_scores[3] = std::nanf("");
  CHECK_THROWS_WITH(ops::generic::nms(boxes, nan_scores, 0.5), Catch::Contains("NaN at index 3"));
  CHECK_THROWS_WITH(ops::generic::batched_nms(boxes, nan_scores, at::zeros({5}, at::kLong), 0.5),
                    Catch::Contains("NaN"));
  CHECK_THROWS_WITH(ops::generic::nms(at::rand({5, 3}), at::rand({5}), 0.5),
                    Catch::Contains("[5, 3]"));
  CHECK_THROWS_WITH(ops::generic::nms(boxes, at::rand({5}, at::kDouble), 0.5),
                    Catch::Contains("Double"));
  CHECK_THROWS_WITH(ops::generic::batched_nms(boxes, at::rand({5}), at::zeros({4}, at::kLong), 0.5),
                    Catch::Contains("[4]"));
}

TEST_CASE("nms and batched_nms on CUDA tensors equal the CPU results", "[ops][nms][cuda]") {
  if (!torch::cuda::is_available()) return;  // the generic tests above cover this path's arithmetic
  for (int i = 0; i < 200; ++i) {
    const auto c = make_case(i);
    INFO("case " << i << ": " << c.boxes.size(0) << " boxes, " << c.boxes.scalar_type()
                 << ", threshold " << c.threshold);
    const auto boxes = c.boxes.cuda();
    const auto scores = c.scores.cuda();
    const auto kept = ops::nms(boxes, scores, c.threshold);
    CHECK(kept.is_cuda());
    CHECK(kept.scalar_type() == at::kLong);
    const auto cpu = ops::nms(c.boxes, c.scores, c.threshold);
    INFO("nms cpu " << head(cpu) << " cuda " << head(kept.cpu()));
    CHECK(at::equal(kept.cpu(), cpu));
    const auto batched = ops::batched_nms(boxes, scores, c.idxs.cuda(), c.threshold);
    CHECK(batched.is_cuda());
    const auto on_host = batched.cpu();
    const auto cpu_batched = ops::batched_nms(c.boxes, c.scores, c.idxs, c.threshold);
    INFO("batched cpu " << head(cpu_batched) << " cuda " << head(on_host));
    if (c.boxes.size(0) <= 1000) {
      CHECK(at::equal(on_host, cpu_batched));
    } else {  // per-category NMS and an unstable sort on the CPU, as the generic test
      CHECK(at::equal(std::get<0>(on_host.sort()), std::get<0>(cpu_batched.sort())));
      CHECK(at::equal(c.scores.index_select(0, on_host), c.scores.index_select(0, cpu_batched)));
    }
  }
  const auto boxes = at::rand({5, 4});
  const auto scores = at::rand({5});
  CHECK_THROWS_WITH(ops::nms(boxes.cuda(), scores, 0.5), Catch::Contains("same device"));
  CHECK_THROWS_WITH(ops::batched_nms(boxes.cuda(), scores.cuda(), at::zeros({5}, at::kLong), 0.5),
                    Catch::Contains("device"));
}
