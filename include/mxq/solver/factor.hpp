// Dense factorizations behind GPTQ: a (threaded) blocked Cholesky and the upper Cholesky factor of
// H⁻¹ obtained without forming H⁻¹.
//
// GPTQ needs U upper triangular with H⁻¹ = UᵀU (the reference: chol(H) -> cholesky_inverse ->
// chol(upper), three O(n³) steps). With J the order-reversing permutation, factor the reversed
// matrix JHJ = L̃L̃ᵀ; then H⁻¹ = J L̃⁻ᵀ L̃⁻¹ J, so U = J L̃⁻¹ J: one Cholesky (n³/3) plus one
// triangular inverse (n³/3), and J·X·J of a column-major square matrix is just its storage reversed.
#pragma once
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "parallel.hpp"

namespace mxq::detail {

// In-place lower Cholesky of the lower triangle of A (the strict upper triangle is scratch and
// ends up undefined). Returns false if a pivot is not positive and finite, or if a pivot² falls
// below `min_pivot` (numerically indefinite).
inline bool cholesky_lower_inplace(Eigen::Ref<Eigen::MatrixXf> A, int threads, double min_pivot = 0.0) {
  using Eigen::Index;
  const Index n = A.rows();
  auto pivots_ok = [&](Index k0, Index kb) {
    for (Index i = k0; i < k0 + kb; ++i) {
      const double d = A(i, i);
      if (!(std::isfinite(d) && d > 0.0 && d * d >= min_pivot)) return false;
    }
    return true;
  };
  constexpr Index nb = 256;
  // Blocked whatever the thread count (threads only share out the panel and strip tasks), so the
  // factor is the same for any number of threads.
  if (n < 2 * nb) {
    Eigen::LLT<Eigen::Ref<Eigen::MatrixXf>> llt(A);
    return llt.info() == Eigen::Success && pivots_ok(0, n);
  }
  // Right-looking blocked Cholesky: factor a diagonal block, solve the panel under it (rows split
  // over threads), update the trailing lower triangle in column strips of GEMMs (over threads).
  for (Index k = 0; k < n; k += nb) {
    const Index kb = std::min(nb, n - k), m = n - k - kb;
    {
      Eigen::Ref<Eigen::MatrixXf> d = A.block(k, k, kb, kb);
      Eigen::LLT<Eigen::Ref<Eigen::MatrixXf>> llt(d);
      if (llt.info() != Eigen::Success || !pivots_ok(k, kb)) return false;
    }
    if (m == 0) break;
    constexpr Index rows_per_task = 256;
    const std::size_t panel_tasks = static_cast<std::size_t>((m + rows_per_task - 1) / rows_per_task);
    parallel_for(panel_tasks, threads, [&](std::size_t t) {
      const Index r0 = k + kb + static_cast<Index>(t) * rows_per_task, len = std::min(rows_per_task, n - r0);
      auto panel = A.block(r0, k, len, kb);
      A.block(k, k, kb, kb).triangularView<Eigen::Lower>().transpose().solveInPlace<Eigen::OnTheRight>(panel);
    });
    constexpr Index strip = 128;
    const std::size_t strips = static_cast<std::size_t>((m + strip - 1) / strip);
    parallel_for(strips, threads, [&](std::size_t s) {
      const Index j0 = k + kb + static_cast<Index>(s) * strip, w = std::min(strip, n - j0);
      A.block(j0, j0, n - j0, w).noalias() -= A.block(j0, k, n - j0, kb) * A.block(j0, k, w, kb).transpose();
    });
  }
  return true;
}

// In place: the lower triangle of A (a Cholesky factor L) becomes L⁻¹, the strict upper triangle
// is zeroed. Blocked right-to-left like LAPACK's trtri: with the trailing block already inverted,
// a column panel P under diagonal block D becomes −(L₂₂⁻¹ P) D⁻¹; its rows are independent given a
// copy of P, so they are split over threads (tallest products first).
inline void lower_inverse_inplace(Eigen::Ref<Eigen::MatrixXf> A, int threads) {
  using Eigen::Index;
  const Index n = A.rows();
  constexpr Index nb = 128, rows_per_task = 128;
  Eigen::MatrixXf tmp, dinv;
  for (Index j = ((n - 1) / nb) * nb; j >= 0; j -= nb) {
    const Index jb = std::min(nb, n - j), t = j + jb, m = n - t;
    dinv.setIdentity(jb, jb);
    A.block(j, j, jb, jb).triangularView<Eigen::Lower>().solveInPlace(dinv);
    A.block(j, j, jb, jb).triangularView<Eigen::Lower>() = dinv;
    if (m == 0) continue;
    tmp = A.block(t, j, m, jb);
    const std::size_t tasks = static_cast<std::size_t>((m + rows_per_task - 1) / rows_per_task);
    parallel_for(tasks, threads, [&](std::size_t k) {
      const Index r0 = static_cast<Index>(tasks - 1 - k) * rows_per_task, len = std::min(rows_per_task, m - r0);
      auto out = A.block(t + r0, j, len, jb);
      out.noalias() = A.block(t + r0, t + r0, len, len).triangularView<Eigen::Lower>() * tmp.middleRows(r0, len);
      if (r0 > 0) out.noalias() += A.block(t + r0, t, len, r0) * tmp.topRows(r0);
      Eigen::MatrixXf prod = out * dinv.triangularView<Eigen::Lower>();
      out = -prod;
    });
  }
  A.triangularView<Eigen::StrictlyUpper>().setZero();
}

// J·X·J for a square column-major matrix: element (i, j) -> (n-1-i, n-1-j) is its storage reversed.
inline void reverse_both_orders(Eigen::MatrixXf& X) { std::reverse(X.data(), X.data() + X.size()); }

}  // namespace mxq::detail
