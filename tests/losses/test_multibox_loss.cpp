#include "catch.h"

#include <sstream>
#include <string>

#include <ATen/ATen.h>

#include "losses/gradcheck.h"
#include "ostrov/losses/multibox.h"
#include "support.h"

using namespace ostrov::losses;
using ostrov::test::gradcheck;

namespace {

std::string python_list(const at::Tensor& t) {
  auto c = t.contiguous().to(at::kDouble).view({-1});
  std::ostringstream out;
  out.precision(17);
  out << "[";
  for (int64_t i = 0; i < c.numel(); ++i) out << (i ? "," : "") << c[i].item<double>();
  out << "]";
  return out.str();
}

std::string shape(const at::Tensor& t) {
  std::ostringstream out;
  out << "(";
  for (auto s : t.sizes()) out << s << ",";
  out << ")";
  return out.str();
}

// Random inputs: N images, P priors, C classes; image 1 has no object.
struct Example {
  at::Tensor loc, logits, target_loc, labels;
};

Example example(int64_t n, int64_t p, int64_t c, uint64_t seed) {
  at::manual_seed(seed);
  Example e;
  e.loc = at::randn({n, p, 4}, at::kDouble) * 1.5;  // some offsets beyond beta = 1
  e.logits = at::randn({n, p, c}, at::kDouble) * 2;
  e.target_loc = at::randn({n, p, 4}, at::kDouble);
  e.labels = at::zeros({n, p}, at::kLong);
  auto positive = at::rand({n, p}).lt(0.12);
  e.labels.masked_scatter_(positive, at::randint(1, c, {n, p}, at::kLong).masked_select(positive));
  if (n > 1) e.labels[1].zero_();
  return e;
}

}  // namespace

TEST_CASE("multibox_loss equals torchvision's SSD.compute_loss", "[losses][parity]") {
  auto e = example(3, 60, 5, 7);
  const auto npos = e.labels.gt(0).sum().item<int64_t>();
  REQUIRE(npos > 0);
  for (int64_t i = 0; i < 3; ++i) {  // the parity regime: enough negatives per image
    REQUIRE(3 * e.labels[i].gt(0).sum().item<int64_t>() <= e.labels[i].eq(0).sum().item<int64_t>());
  }
  auto ours = functional::multibox_loss(e.loc, e.logits, e.target_loc, e.labels);

  // torchvision's compute_loss called on a stub: the box coder returns the matched "gt boxes",
  // which are the encoded targets per prior, so its target_regression is our target_loc.
  ostrov::test::TempDir dir;
  std::ostringstream py;
  py << "import types, torch\n"
     << "from torchvision.models.detection.ssd import SSD\n"
     << "loc = torch.tensor(" << python_list(e.loc) << ", dtype=torch.float64).view" << shape(e.loc) << "\n"
     << "logits = torch.tensor(" << python_list(e.logits) << ", dtype=torch.float64).view" << shape(e.logits) << "\n"
     << "tloc = torch.tensor(" << python_list(e.target_loc) << ", dtype=torch.float64).view" << shape(e.target_loc) << "\n"
     << "labels = torch.tensor(" << python_list(e.labels) << ").long().view" << shape(e.labels) << "\n"
     << "class Coder:\n"
     << "    def encode_single(self, boxes, anchors):\n"
     << "        return boxes\n"
     << "stub = types.SimpleNamespace(box_coder=Coder(), neg_to_pos_ratio=3)\n"
     << "n, p = labels.shape\n"
     << "targets = [{'boxes': tloc[i], 'labels': labels[i]} for i in range(n)]\n"
     << "matched = [torch.where(labels[i] > 0, torch.arange(p), torch.full((p,), -1)) for i in range(n)]\n"
     << "anchors = [torch.zeros(p, 4, dtype=torch.float64) for _ in range(n)]\n"
     << "out = SSD.compute_loss(stub, targets, {'bbox_regression': loc, 'cls_logits': logits}, anchors, matched)\n"
     << "print(repr(out['bbox_regression'].item()), repr(out['classification'].item()))\n";
  auto result = ostrov::test::run_python(dir, py.str());
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  std::istringstream in(result.output);
  double bbox = 0, cls = 0;
  in >> bbox >> cls;
  CHECK(ours.location.item<double>() == Approx(bbox).epsilon(1e-5).margin(1e-9));
  CHECK(ours.classification.item<double>() == Approx(cls).epsilon(1e-5).margin(1e-9));
  CHECK(ours.loss.item<double>() == Approx(bbox + cls).epsilon(1e-5));
  // The module with alpha weighs the location term.
  MultiboxLoss module(MultiboxLossOptions().alpha(2.0));
  CHECK(module(e.loc, e.logits, e.target_loc, e.labels).loss.item<double>() ==
        Approx(2 * bbox + cls).epsilon(1e-5));
}

TEST_CASE("multibox_loss: hand-checked mining, images without objects, ignored priors", "[losses]") {
  // One image, 5 priors, 2 classes; prior 0 positive. Background CE of prior i is
  // log(1 + e^{z1-z0}); with z1-z0 = 3, 1, 2, -1 on priors 1..4 the hardest negatives are
  // priors 1, 3, 2 (neg:pos = 3:1 keeps 3 of the 4).
  auto logits = at::zeros({1, 5, 2}, at::kDouble);
  logits[0][0][1] = 2.0;  // positive, class 1: CE = log(1 + e^{-2})
  logits[0][1][1] = 3.0;
  logits[0][2][1] = 1.0;
  logits[0][3][1] = 2.0;
  logits[0][4][1] = -1.0;
  auto labels = at::tensor({1, 0, 0, 0, 0}, at::kLong).view({1, 5});
  auto loc = at::zeros({1, 5, 4}, at::kDouble);
  auto tloc = at::zeros({1, 5, 4}, at::kDouble);
  tloc[0][0][0] = 0.5;  // smooth-L1: 0.5 * 0.5^2 = 0.125
  tloc[0][0][1] = 3.0;  // 3 - 0.5 = 2.5
  tloc[0][1][0] = 9.0;  // a negative prior: never regressed
  auto sp = [](double z) { return std::log1p(std::exp(z)); };
  auto out = functional::multibox_loss(loc, logits, tloc, labels);
  CHECK(out.location.item<double>() == Approx(2.625));
  CHECK(out.classification.item<double>() == Approx(sp(-2) + sp(3) + sp(2) + sp(1)));
  // Prior 3 ignored (label -1): the negatives left are 1, 2, 4, all kept.
  auto ignored = labels.clone();
  ignored[0][3] = -1;
  out = functional::multibox_loss(loc, logits, tloc, ignored);
  CHECK(out.classification.item<double>() == Approx(sp(-2) + sp(3) + sp(1) + sp(-1)));
  // No object at all: torchvision's default gives 0 (no negatives, divided by max(1, 0)),
  // min_negatives = 2 trains on the two hardest background priors, divided by 1.
  auto none = at::zeros({1, 5}, at::kLong);
  out = functional::multibox_loss(loc, logits, tloc, none);
  CHECK(out.loss.item<double>() == 0.0);
  out = functional::multibox_loss(loc, logits, tloc, none, MultiboxLossOptions().min_negatives(2));
  CHECK(std::isfinite(out.loss.item<double>()));
  CHECK(out.classification.item<double>() == Approx(sp(3) + sp(2)));
  // More negatives asked than exist: only true negatives count.
  out = functional::multibox_loss(loc, logits, tloc, labels, MultiboxLossOptions().neg_pos_ratio(10));
  CHECK(out.classification.item<double>() == Approx(sp(-2) + sp(3) + sp(1) + sp(2) + sp(-1)));
}

TEST_CASE("multibox_loss rejects bad input and passes gradcheck", "[losses][gradcheck]") {
  auto e = example(2, 12, 3, 3);
  e.labels[0][0] = 1;  // at least one positive
  CHECK_THROWS_WITH(functional::multibox_loss(e.loc.narrow(1, 0, 5), e.logits, e.target_loc, e.labels),
                    Catch::Contains("[2, 5, 4]") && Catch::Contains("[2, 12, 3]"));
  auto bad = e.labels.clone();
  bad[1][4] = 3;
  CHECK_THROWS_WITH(functional::multibox_loss(e.loc, e.logits, e.target_loc, bad),
                    Catch::Contains("target label 3"));
  auto nan = e.logits.clone();
  nan[0][0][0] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(functional::multibox_loss(e.loc, nan, e.target_loc, e.labels),
                    Catch::Contains("NaN"));
  auto r = gradcheck([&](const at::Tensor& v) {
    return functional::multibox_loss(v, e.logits, e.target_loc, e.labels).loss;
  }, e.loc);
  CHECK(r.report == "");
  r = gradcheck([&](const at::Tensor& v) {
    return functional::multibox_loss(e.loc, v, e.target_loc, e.labels).loss;
  }, e.logits);
  CHECK(r.report == "");
}
