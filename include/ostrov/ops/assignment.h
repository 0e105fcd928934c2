#pragma once
// The linear sum assignment problem (minimum-cost bipartite matching), as
// scipy.optimize.linear_sum_assignment solves it.

#include <utility>

#include <ATen/core/Tensor.h>

namespace ostrov::ops {

/// Solves the linear sum assignment problem for a [N,M] cost matrix (any real dtype, computed
/// in float64 on the CPU): picks min(N,M) pairs (row, column), each row and each column at most
/// once, minimising (or, with `maximize`, maximising) the summed cost.
///
/// Semantics of `scipy.optimize.linear_sum_assignment`: rectangular both ways; returns
/// `{row_ind, col_ind}`, both int64 [min(N,M)] on `cost`'s device, with `row_ind` sorted
/// ascending (0..N-1 when N <= M) and `cost[row_ind[k], col_ind[k]]` the chosen entries.
/// An empty matrix gives two empty tensors.
///
/// Algorithm: the shortest augmenting path method of Jonker & Volgenant in the form of
/// D. F. Crouse, "On implementing 2D rectangular assignment algorithms", IEEE TAES 52(4), 2016
/// (the one scipy uses), O(N^2 M) for N <= M; when N > M the transposed problem is solved.
///
/// Throws c10::Error "matrix contains invalid numeric entries" for NaN (and for -inf, or +inf
/// with `maximize`, as scipy), and "cost matrix is infeasible" when no complete assignment with
/// finite cost exists (e.g. a row of only +inf when N <= M).
std::pair<at::Tensor, at::Tensor> linear_sum_assignment(const at::Tensor& cost,
                                                        bool maximize = false);

}  // namespace ostrov::ops
