#include "ostrov/ops/assignment.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include <ATen/ATen.h>

namespace ostrov::ops {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Workspace of the shortest augmenting path solver (Crouse 2016, Algorithm 1), for nr <= nc.
struct Solver {
  int64_t nr, nc;
  const double* cost;  // [nr, nc] row-major
  std::vector<double> u, v, shortest;
  std::vector<int64_t> path, col4row, row4col, remaining;
  std::vector<char> sr, sc;

  Solver(int64_t rows, int64_t cols, const double* c)
      : nr(rows),
        nc(cols),
        cost(c),
        u(rows, 0.0),
        v(cols, 0.0),
        shortest(cols),
        path(cols, -1),
        col4row(rows, -1),
        row4col(cols, -1),
        remaining(cols),
        sr(rows),
        sc(cols) {}

  // Dijkstra-like search from free row `i` over reduced costs; returns the free column that
  // ends the shortest augmenting path (or -1 when every remaining column is at +inf).
  int64_t augmenting_path(int64_t i, double& min_val) {
    min_val = 0.0;
    int64_t num_remaining = nc;
    // Columns are visited in reverse order, as scipy does (it decides ties between equal
    // shortest paths, so this keeps the assignment identical to scipy's where it is not unique).
    for (int64_t it = 0; it < nc; ++it) remaining[it] = nc - it - 1;
    std::fill(sr.begin(), sr.end(), 0);
    std::fill(sc.begin(), sc.end(), 0);
    std::fill(shortest.begin(), shortest.end(), kInf);

    int64_t sink = -1;
    while (sink == -1) {
      int64_t index = -1;
      double lowest = kInf;
      sr[i] = 1;
      const double* row = cost + i * nc;
      const double ui = u[i];
      for (int64_t it = 0; it < num_remaining; ++it) {
        const int64_t j = remaining[it];
        const double r = min_val + row[j] - ui - v[j];
        if (r < shortest[j]) {
          path[j] = i;
          shortest[j] = r;
        }
        if (shortest[j] < lowest || (shortest[j] == lowest && row4col[j] == -1)) {
          lowest = shortest[j];
          index = it;
        }
      }
      min_val = lowest;
      if (min_val == kInf) return -1;  // infeasible
      const int64_t j = remaining[index];
      if (row4col[j] == -1) {
        sink = j;
      } else {
        i = row4col[j];
      }
      sc[j] = 1;
      remaining[index] = remaining[--num_remaining];
    }
    return sink;
  }

  bool solve() {
    for (int64_t cur = 0; cur < nr; ++cur) {
      double min_val = 0.0;
      const int64_t sink = augmenting_path(cur, min_val);
      if (sink < 0) return false;
      // Update the dual variables.
      u[cur] += min_val;
      for (int64_t i = 0; i < nr; ++i) {
        if (sr[i] && i != cur) u[i] += min_val - shortest[col4row[i]];
      }
      for (int64_t j = 0; j < nc; ++j) {
        if (sc[j]) v[j] -= min_val - shortest[j];
      }
      // Augment the previous solution along the path.
      int64_t j = sink;
      while (true) {
        const int64_t i = path[j];
        row4col[j] = i;
        std::swap(col4row[i], j);
        if (i == cur) break;
      }
    }
    return true;
  }
};

}  // namespace

std::pair<at::Tensor, at::Tensor> linear_sum_assignment(const at::Tensor& cost, bool maximize) {
  TORCH_CHECK(cost.defined(), "linear_sum_assignment: cost is an undefined tensor");
  TORCH_CHECK(cost.dim() == 2, "linear_sum_assignment: cost should be [N,M], got ", cost.sizes());
  TORCH_CHECK(!cost.is_complex(), "linear_sum_assignment: cost should be real, got ",
              cost.scalar_type());
  const auto out_options = at::TensorOptions().dtype(at::kLong).device(cost.device());
  int64_t nr = cost.size(0);
  int64_t nc = cost.size(1);
  if (nr == 0 || nc == 0) {
    return {at::empty({0}, out_options), at::empty({0}, out_options)};
  }

  // Work on a float64 CPU copy with rows <= columns (transpose otherwise), negated to maximise.
  const bool transpose = nc < nr;
  at::Tensor c = cost.detach().to(at::kCPU, at::kDouble);
  if (transpose) {
    c = c.t();
    std::swap(nr, nc);
  }
  if (maximize) c = -c;
  c = c.contiguous();
  const double* data = c.data_ptr<double>();
  for (int64_t k = 0; k < nr * nc; ++k) {
    TORCH_CHECK(!std::isnan(data[k]) && data[k] != -kInf,
                "linear_sum_assignment: matrix contains invalid numeric entries (NaN",
                maximize ? " or +inf with maximize=true" : " or -inf", ") at [",
                transpose ? k % nc : k / nc, ", ", transpose ? k / nc : k % nc, "]");
  }

  Solver solver(nr, nc, data);
  TORCH_CHECK(solver.solve(), "linear_sum_assignment: cost matrix is infeasible (no complete ",
              "assignment of the ", nr, " ", transpose ? "columns" : "rows", " has a finite cost)");

  at::Tensor rows = at::empty({nr}, at::kLong);
  at::Tensor cols = at::empty({nr}, at::kLong);
  int64_t* a = rows.data_ptr<int64_t>();
  int64_t* b = cols.data_ptr<int64_t>();
  if (transpose) {
    // solver rows are the caller's columns: report the caller's rows in ascending order.
    std::vector<int64_t> order(nr);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int64_t x, int64_t y) { return solver.col4row[x] < solver.col4row[y]; });
    for (int64_t k = 0; k < nr; ++k) {
      a[k] = solver.col4row[order[k]];
      b[k] = order[k];
    }
  } else {
    for (int64_t k = 0; k < nr; ++k) {
      a[k] = k;
      b[k] = solver.col4row[k];
    }
  }
  return {rows.to(cost.device()), cols.to(cost.device())};
}

}  // namespace ostrov::ops
