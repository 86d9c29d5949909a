// Block-diagonal Walsh–Hadamard rotation of a linear's input dimension (MR-GPTQ / FP-Quant,
// QuaRot): each run of `block` consecutive input channels is multiplied by the orthonormal
// Sylvester–Hadamard matrix H_B / sqrt(B). Outliers spread over their block, so a microscaling
// block (which shares one scale) sees a flatter distribution.
//
// With R = diag(H_B, ..., H_B) / sqrt(B), orthonormal and symmetric (R = Rᵀ = R⁻¹):
//   y = x Wᵀ = (x R)(W R)ᵀ
// so a linear keeps its function when its weight rows are rotated once, offline, and its input is
// rotated the same way at run time. One function does both (rows of W [out, in] and rows of
// X [tokens, in]); applying it twice gives the input back (within fp32 rounding, ~1e-7).
//
//   mxq::hadamard_rotation r{.block = 32};
//   mxq::rotate_rows(W, r);   // offline: W [out, in]
//   mxq::rotate_rows(X, r);   // online:  X [tokens, in], before the (quantized) product
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>

#include "config.hpp"
#include "matrix_view.hpp"
#include "solver/parallel.hpp"

namespace mxq {

struct hadamard_rotation {
  std::size_t block = 32;  // a power of two; FP-Quant uses 32 (16..128 in the MR-GPTQ paper)
  int threads = 1;         // rows split over threads; results do not depend on it
};

namespace detail::hadamard {

inline void check(const hadamard_rotation& r, std::size_t cols, const char* what) {
  if (r.block < 2 || r.block > 4096 || !std::has_single_bit(r.block))
    throw error(std::string(what) + ": Hadamard block " + std::to_string(r.block) + " is not a power of two in [2, 4096]");
  if (cols % r.block != 0)
    throw error(std::string(what) + ": " + std::to_string(cols) + " columns are not a multiple of the Hadamard block " +
                std::to_string(r.block));
}

// In place: x (B values) <- H_B x / sqrt(B), butterflies in Sylvester order (H_2k = [H H; H -H]).
// The sums run in float, the same order for every row: results do not depend on threads.
inline void fwht(float* x, std::size_t n) noexcept {
  for (std::size_t h = 1; h < n; h *= 2)
    for (std::size_t i = 0; i < n; i += 2 * h)
      for (std::size_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b, x[j + h] = a - b;
      }
  // 1/sqrt(B): a power of two for B = 4^k; otherwise 2^-(k+1) * sqrt(2), rounded once.
  const int lg = std::countr_zero(n);
  const float s = lg % 2 == 0 ? std::ldexp(1.0f, -lg / 2) : static_cast<float>(std::ldexp(std::sqrt(2.0), -(lg + 1) / 2));
  for (std::size_t j = 0; j < n; ++j) x[j] *= s;
}

}  // namespace detail::hadamard

// Rotates each row of `m` (contiguous rows: [out, in] weights or [tokens, in] activations) block
// by block, in place.
inline void rotate_rows(matrix_view<float> m, const hadamard_rotation& r) {
  detail::hadamard::check(r, m.cols, "rotate_rows");
  if (!m.row_contiguous()) throw error("rotate_rows: the matrix rows are not contiguous");
  constexpr std::size_t rows_per_task = 64;
  const std::size_t tasks = (m.rows + rows_per_task - 1) / rows_per_task;
  detail::parallel_for(tasks, detail::resolve_threads(r.threads), [&](std::size_t t) {
    for (std::size_t i = t * rows_per_task; i < std::min(m.rows, (t + 1) * rows_per_task); ++i)
      for (std::size_t c = 0; c < m.cols; c += r.block) detail::hadamard::fwht(m.row(i) + c, r.block);
  });
}

// One vector (a single activation row, a bias-free input), in place.
inline void rotate(std::span<float> x, const hadamard_rotation& r) {
  detail::hadamard::check(r, x.size(), "rotate");
  for (std::size_t c = 0; c < x.size(); c += r.block) detail::hadamard::fwht(x.data() + c, r.block);
}

}  // namespace mxq
