#include "catch.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "ostrov/ops/assignment.h"
#include "support.h"

using namespace ostrov;
using ostrov::test::TempDir;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

at::Tensor matrix(const std::vector<std::vector<double>>& rows) {
  std::vector<double> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return at::tensor(flat, at::kDouble).reshape({static_cast<int64_t>(rows.size()), -1});
}

std::vector<int64_t> to_vector(const at::Tensor& t) {
  const auto c = t.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// A random square matrix with a known optimum: a permutation's entries are 0 and all others
// are in [1, 2), so the optimal total is exactly 0 and the permutation is the only optimum.
at::Tensor planted(int64_t n, std::vector<int64_t>& perm) {
  auto cost = at::rand({n, n}, at::kDouble) + 1.0;
  perm = to_vector(at::randperm(n, at::kLong));
  for (int64_t i = 0; i < n; ++i) cost[i][perm[i]] = 0.0;
  return cost;
}

}  // namespace

TEST_CASE("linear_sum_assignment solves hand-made problems", "[ops][assignment]") {
  // scipy's documentation example: the optimum picks 1 + 2 + 2 = 5 with columns 1, 0, 2.
  {
    auto [rows, cols] = ops::linear_sum_assignment(matrix({{4, 1, 3}, {2, 0, 5}, {3, 2, 2}}));
    CHECK(to_vector(rows) == std::vector<int64_t>{0, 1, 2});
    CHECK(to_vector(cols) == std::vector<int64_t>{1, 0, 2});
    CHECK(rows.scalar_type() == at::kLong);
    CHECK(cols.scalar_type() == at::kLong);
  }
  // maximize: the six permutations (columns of rows 0,1,2) sum to (0,1,2)=4+0+2=6,
  // (0,2,1)=4+5+2=11, (1,0,2)=1+2+2=5, (1,2,0)=1+5+3=9, (2,0,1)=3+2+2=7, (2,1,0)=3+0+3=6,
  // so the maximum is (0,2,1) = 11.
  {
    auto [rows, cols] =
        ops::linear_sum_assignment(matrix({{4, 1, 3}, {2, 0, 5}, {3, 2, 2}}), /*maximize=*/true);
    CHECK(to_vector(rows) == std::vector<int64_t>{0, 1, 2});
    CHECK(to_vector(cols) == std::vector<int64_t>{0, 2, 1});
  }
  // Wide (2x4): row 0 takes col 3 (cost 0), row 1 takes col 1 (cost 1).
  {
    auto [rows, cols] = ops::linear_sum_assignment(matrix({{5, 5, 5, 0}, {5, 1, 9, 0}}));
    CHECK(to_vector(rows) == std::vector<int64_t>{0, 1});
    CHECK(to_vector(cols) == std::vector<int64_t>{3, 1});
  }
  // Tall (4x2): the transposed problem; rows come back sorted: rows 1 and 3 are the cheap ones.
  {
    auto [rows, cols] = ops::linear_sum_assignment(matrix({{5, 5}, {0, 7}, {5, 5}, {9, 1}}));
    CHECK(to_vector(rows) == std::vector<int64_t>{1, 3});
    CHECK(to_vector(cols) == std::vector<int64_t>{0, 1});
  }
  // Tall with the rows' best columns in decreasing order: row 0 -> col 1, row 2 -> col 0.
  {
    auto [rows, cols] = ops::linear_sum_assignment(matrix({{9, 0}, {9, 9}, {0, 9}}));
    CHECK(to_vector(rows) == std::vector<int64_t>{0, 2});
    CHECK(to_vector(cols) == std::vector<int64_t>{1, 0});
  }
  // +inf entries are forbidden pairs, not errors, while a finite assignment exists: 1 + 2.
  {
    auto [rows, cols] = ops::linear_sum_assignment(matrix({{kInf, 1}, {2, kInf}}));
    CHECK(to_vector(cols) == std::vector<int64_t>{1, 0});
  }
  // Integer and float32 inputs are accepted; the input is left untouched.
  {
    auto cost = at::tensor({3, 1, 1, 3}, at::kInt).reshape({2, 2});
    auto [rows, cols] = ops::linear_sum_assignment(cost);
    CHECK(to_vector(cols) == std::vector<int64_t>{1, 0});
    auto f = matrix({{4, 1, 3}, {2, 0, 5}, {3, 2, 2}}).to(at::kFloat);
    auto copy = f.clone();
    CHECK(to_vector(ops::linear_sum_assignment(f, true).second) == std::vector<int64_t>{0, 2, 1});
    CHECK(at::equal(f, copy));
  }
  // Empty matrices give empty results.
  {
    auto [rows, cols] = ops::linear_sum_assignment(at::zeros({0, 5}, at::kDouble));
    CHECK(rows.numel() == 0);
    CHECK(cols.numel() == 0);
    CHECK(ops::linear_sum_assignment(at::zeros({4, 0})).first.numel() == 0);
  }
}

TEST_CASE("linear_sum_assignment finds planted optima", "[ops][assignment]") {
  at::manual_seed(7);
  for (int64_t n : {1, 2, 5, 17, 64}) {
    std::vector<int64_t> perm;
    const auto cost = planted(n, perm);
    auto [rows, cols] = ops::linear_sum_assignment(cost);
    CHECK(to_vector(cols) == perm);
    // Transposed: column j of cost.t() is row j of cost; rows of the answer are perm's inverse.
    auto [rows_t, cols_t] = ops::linear_sum_assignment(cost.t());
    for (int64_t i = 0; i < n; ++i) CHECK(to_vector(cols_t)[perm[i]] == i);
  }
}

TEST_CASE("linear_sum_assignment rejects NaN, -inf and infeasible matrices", "[ops][assignment]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(ops::linear_sum_assignment(matrix({{1, nan}, {2, 3}})),
                    Catch::Contains("invalid numeric entries") && Catch::Contains("[0, 1]"));
  CHECK_THROWS_WITH(ops::linear_sum_assignment(matrix({{1, 2}, {-kInf, 3}})),
                    Catch::Contains("invalid numeric entries") && Catch::Contains("[1, 0]"));
  // +inf becomes -inf when maximising (as scipy).
  CHECK_THROWS_WITH(ops::linear_sum_assignment(matrix({{1, kInf}, {2, 3}}), true),
                    Catch::Contains("invalid numeric entries"));
  // NaN in a tall matrix: reported at the caller's indices.
  CHECK_THROWS_WITH(ops::linear_sum_assignment(matrix({{1, 2}, {3, 4}, {5, nan}})),
                    Catch::Contains("[2, 1]"));
  // A row of only +inf cannot be assigned.
  CHECK_THROWS_WITH(ops::linear_sum_assignment(matrix({{1, 2, 3}, {kInf, kInf, kInf}})),
                    Catch::Contains("cost matrix is infeasible"));
  // A column of only +inf in a square matrix.
  CHECK_THROWS_WITH(ops::linear_sum_assignment(matrix({{1, kInf}, {2, kInf}})),
                    Catch::Contains("cost matrix is infeasible"));
  // A column of only +inf in a tall matrix (every column must be used there).
  CHECK_THROWS_WITH(ops::linear_sum_assignment(matrix({{1, kInf}, {2, kInf}, {3, kInf}})),
                    Catch::Contains("cost matrix is infeasible"));
  // Wide 2x3 whose two rows can only use column 0: infeasible.
  CHECK_THROWS_WITH(ops::linear_sum_assignment(matrix({{1, kInf, kInf}, {2, kInf, kInf}})),
                    Catch::Contains("cost matrix is infeasible"));
  // A column of only +inf in a wide matrix is fine (that column stays unused).
  CHECK(to_vector(ops::linear_sum_assignment(matrix({{kInf, 1, 2}, {kInf, 3, 1}})).second) ==
        std::vector<int64_t>{1, 2});
  CHECK_THROWS_WITH(ops::linear_sum_assignment(at::zeros({3})), Catch::Contains("[N,M]"));
}

TEST_CASE("linear_sum_assignment equals scipy on 100 random matrices",
          "[ops][assignment][parity]") {
  TempDir dir;
  // One Python call writes every matrix (float64, C order) and scipy's answer. Kinds: uniform
  // [0,1), integers in [0,5) (many ties: only the total is unique), maximize, and matrices
  // with +inf entries (some infeasible), sizes 1..40 both ways plus 50x8732, 8732x50,
  // 300x8732 and 1000x300.
  const std::string script = "d = \"" + dir.path().string() + "\"\n" + R"PY(
import json, numpy as np
from scipy.optimize import linear_sum_assignment
rng = np.random.default_rng(20240607)
shapes = [(int(rng.integers(1, 41)), int(rng.integers(1, 41))) for _ in range(96)]
shapes += [(50, 8732), (8732, 50), (300, 8732), (1000, 300)]
cases = []
for k, (n, m) in enumerate(shapes):
    kind = ["uniform", "integer", "maximize", "inf"][k % 4] if k < 96 else "uniform"
    c = rng.integers(0, 5, size=(n, m)).astype(np.float64) if kind == "integer" else rng.random((n, m))
    if kind == "inf":
        c[rng.random((n, m)) < [0.3, 0.6, 0.9][(k // 4) % 3]] = np.inf
    c.tofile(f"{d}/m{k}.bin")
    case = {"n": n, "m": m, "maximize": kind == "maximize", "kind": kind}
    try:
        r, cc = linear_sum_assignment(c, maximize=case["maximize"])
        case.update(status="ok", total=float(c[r, cc].sum()), rows=r.tolist(), cols=cc.tolist())
    except ValueError as e:
        case.update(status=str(e))
    cases.append(case)
json.dump(cases, open(f"{d}/cases.json", "w"))
print("done", len(cases))
)PY";
  const auto result = ostrov::test::run_python(dir, script);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const auto cases = nlohmann::json::parse(ostrov::test::read_bytes(dir / "cases.json"));
  REQUIRE(cases.size() == 100);
  int infeasible = 0, tied_differently = 0;
  double largest_s = 0;
  for (size_t k = 0; k < cases.size(); ++k) {
    const auto& c = cases[k];
    const int64_t n = c["n"], m = c["m"];
    const bool maximize = c["maximize"];
    const std::string bytes = ostrov::test::read_bytes(dir / ("m" + std::to_string(k) + ".bin"));
    REQUIRE(bytes.size() == static_cast<size_t>(n * m) * sizeof(double));
    const auto cost = at::from_blob(const_cast<char*>(bytes.data()), {n, m}, at::kDouble).clone();
    INFO("matrix " << k << " " << n << "x" << m << " " << c["kind"].get<std::string>());
    if (c["status"] != "ok") {
      CHECK(c["status"].get<std::string>().find("infeasible") != std::string::npos);
      CHECK_THROWS_WITH(ops::linear_sum_assignment(cost, maximize),
                        Catch::Contains("cost matrix is infeasible"));
      ++infeasible;
      continue;
    }
    const auto start = std::chrono::steady_clock::now();
    auto [rows, cols] = ops::linear_sum_assignment(cost, maximize);
    largest_s = std::max(
        largest_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    const auto r = to_vector(rows);
    const auto cl = to_vector(cols);
    REQUIRE(static_cast<int64_t>(r.size()) == std::min(n, m));
    CHECK(r == c["rows"].get<std::vector<int64_t>>());
    CHECK(std::set<int64_t>(cl.begin(), cl.end()).size() == cl.size());
    double total = 0;
    for (size_t i = 0; i < r.size(); ++i) total += cost[r[i]][cl[i]].item<double>();
    CHECK(std::abs(total - c["total"].get<double>()) <= 1e-9);
    if (cl != c["cols"].get<std::vector<int64_t>>()) ++tied_differently;
    // Continuous costs have a unique optimum: the columns must be scipy's.
    if (c["kind"] == "uniform" || c["kind"] == "maximize") {
      CHECK(cl == c["cols"].get<std::vector<int64_t>>());
    }
  }
  INFO("infeasible cases: " << infeasible << ", tied alternative optima: " << tied_differently
                            << ", slowest solve " << largest_s << " s");
  CHECK(infeasible > 0);
  CHECK(infeasible < 20);
}
