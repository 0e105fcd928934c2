#include "catch.h"

#include <ATen/ATen.h>

#include "losses/gradcheck.h"
#include "ostrov/losses/style.h"

using namespace ostrov::losses;
using ostrov::test::gradcheck;

TEST_CASE("gram_matrix, style, content and total variation by hand", "[losses]") {
  // F = [[1, 2], [3, 4]] as 2 channels of a 1x2 image: F F^T = [[5, 11], [11, 25]], / (2*1*2).
  auto f = at::tensor({1.0, 2.0, 3.0, 4.0}, at::kDouble).view({1, 2, 1, 2});
  auto g = functional::gram_matrix(f);
  REQUIRE(g.sizes() == at::IntArrayRef({1, 2, 2}));
  CHECK(at::allclose(g[0], at::tensor({5.0, 11.0, 11.0, 25.0}, at::kDouble).view({2, 2}) / 4));
  // Style against a zero Gram: ||G||^2 = (25 + 121 + 121 + 625) / 16 = 892/16, weighted by 2.
  auto zero = at::zeros({2, 2}, at::kDouble);
  CHECK(functional::style_loss({f}, {zero}, {2.0}).item<double>() == Approx(2 * 892.0 / 16));
  StyleLoss style(std::vector<at::Tensor>{g[0]});
  CHECK(style->forward({f}).item<double>() == Approx(0.0).margin(1e-12));
  CHECK(style->named_buffers().size() == 1);
  // Content: sum of squares 1 + 4 + 9 + 16 against zeros.
  ContentLoss content(at::zeros({1, 2, 1, 2}, at::kDouble));
  CHECK(content(f).item<double>() == Approx(30.0));
  // TV of [[1, 2], [4, 8]]: vertical 3, 6; horizontal 1, 4 -> squares 62, absolute 14.
  auto x = at::tensor({1.0, 2.0, 4.0, 8.0}, at::kDouble).view({1, 1, 2, 2});
  CHECK(functional::total_variation(x).item<double>() == Approx(62.0));
  TotalVariation tv1(TotalVariationOptions().power(1));
  CHECK(tv1(x).item<double>() == Approx(14.0));
  // A batch averages over images.
  CHECK(functional::total_variation(at::cat({x, at::zeros_like(x)})).item<double>() == Approx(31.0));
  CHECK_THROWS_WITH(functional::style_loss({f}, {at::zeros({3, 3})}),
                    Catch::Contains("[3, 3]") && Catch::Contains("[1, 2, 1, 2]"));
  CHECK_THROWS_WITH(functional::content_loss(f, at::zeros({1, 2, 2, 2})),
                    Catch::Contains("[1, 2, 2, 2]") && Catch::Contains("[1, 2, 1, 2]"));
}

TEST_CASE("gradcheck: style, content and total variation", "[losses][gradcheck]") {
  at::manual_seed(6);
  auto a = at::randn({2, 3, 3, 4}, at::kDouble);
  auto b = at::randn({2, 4, 2, 2}, at::kDouble);
  auto ga = functional::gram_matrix(at::randn({1, 3, 3, 4}, at::kDouble))[0];
  auto gb = functional::gram_matrix(at::randn({1, 4, 2, 2}, at::kDouble))[0];
  auto r = gradcheck([&](const at::Tensor& v) {
    return functional::style_loss({v, b}, {ga, gb}, {1.0, 0.5});
  }, a);
  CHECK(r.report == "");
  auto target = at::randn({1, 3, 3, 4}, at::kDouble);
  r = gradcheck([&](const at::Tensor& v) { return functional::content_loss(v, target); }, a);
  CHECK(r.report == "");
  r = gradcheck([&](const at::Tensor& v) { return functional::total_variation(v); }, a);
  CHECK(r.report == "");
  r = gradcheck([&](const at::Tensor& v) { return functional::total_variation(v, 1); }, a);
  CHECK(r.report == "");
}
