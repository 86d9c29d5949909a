// Coordinate-descent refinement of quantized codes against a layer's Hessian (the update of
// QuantEase, arXiv 2309.01885, started from GPTQ's codes):
//
//   #include <mxq/refine.hpp>
//   // W [out, in] target weights, H [in, in] = XᵀX (hessian.hpp), and a quantization of W:
//   // packed (mxq::packed_matrix<F>) with its dequantized values deq ([out, in] row-major),
//   // e.g. gptq<F>'s result r.packed / r.dequantized (gptq_options::refine_passes runs this).
//   auto rep = mxq::refine_codes<mxq::mxfp4>(W, H, packed, deq, {.passes = 4, .damp = 0.01 * mean_diag});
//   // rep.loss_before -> rep.loss_after, rep.changed codes; packed and deq updated in place
//
// Every block's scale stays as it is. With the other weights of its row fixed, the loss
// tr((W − Q)(H + damp·I)(W − Q)ᵀ) is a parabola in one weight q_j with its minimum at
// q* = w_j + Σ_{k≠j} H_jk e_k / H_jj (e = w − q), so the grid point nearest to q* is the best
// code for it: each pass visits every weight once, in column order, and the loss never rises.
// GPTQ fixes each column once, against errors only of the columns before it; the passes let the
// earlier columns answer the later ones' errors. Rows are independent (threads split rows in
// fixed chunks; the codes do not depend on the thread count).
#pragma once
#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "format.hpp"
#include "format/block.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quant/element_quant.hpp"
#include "quant/options.hpp"
#include "solver/parallel.hpp"

namespace mxq {

struct refine_options {
  int passes = 4;            // sweeps over every weight (stops early when one changes nothing)
  double damp = 0.0;         // added to diag H: pass GPTQ's (gptq_result::damp) to refine its objective
  quant_options quant = {};  // rounding of q* to the block's grid (stochastic is refused)
  int threads = 0;           // 0 = every core
};

struct refine_report {
  double loss_before = 0, loss_after = 0;  // tr(ΔW (H + damp·I) ΔWᵀ) / 2 (gptq_result::loss's convention)
  std::size_t changed = 0;                 // codes replaced, over all passes
  int passes_run = 0;                      // passes that changed a code, + the one that found none
};

// W [rows, cols] the target weights, H [cols, cols] symmetric (both triangles read), `packed` and
// `dequantized` ([rows, cols] row-major) the current quantization of W, updated in place. Columns
// with H_jj = 0 (inputs that never fire) are left as they are and count nothing.
template <format_type F, class Layout>
refine_report refine_codes(matrix_view<const float> W, matrix_view<const float> H, packed_matrix<F, Layout>& packed,
                           std::span<float> dequantized, const refine_options& opt = {}) {
  using E = typename F::element;
  using Eigen::Index;
  const std::size_t rows = W.rows, cols = W.cols;
  if (H.rows != cols || H.cols != cols)
    throw error("refine_codes: H is " + std::to_string(H.rows) + "x" + std::to_string(H.cols) + " for " +
                std::to_string(cols) + " input columns");
  if (packed.rows() != rows || packed.cols() != cols || dequantized.size() != rows * cols)
    throw error("refine_codes: the quantized matrix is " + std::to_string(packed.rows()) + "x" +
                std::to_string(packed.cols()) + " (" + std::to_string(dequantized.size()) + " values) for W " +
                std::to_string(rows) + "x" + std::to_string(cols));
  if (opt.quant.rounding == rounding::stochastic)
    throw error("refine_codes: stochastic rounding has no nearest grid point to refine towards");
  if (opt.passes < 0) throw error("refine_codes: passes must be >= 0");
  if (!(opt.damp >= 0.0)) throw error("refine_codes: damp must be >= 0");
  refine_report rep;
  if (rows == 0 || cols == 0) return rep;

  // H (dense, row-major float) with the damping on its diagonal; dead columns' rows and columns 0.
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Index n = static_cast<Index>(cols);
  RowMat Hd(n, n);
  std::vector<char> live(cols);
  for (std::size_t j = 0; j < cols; ++j) live[j] = H(j, j) > 0.0f;
  for (std::size_t i = 0; i < cols; ++i)
    for (std::size_t j = 0; j < cols; ++j)
      Hd(static_cast<Index>(i), static_cast<Index>(j)) = live[i] && live[j] ? H(i, j) : 0.0f;
  for (std::size_t j = 0; j < cols; ++j)
    if (live[j]) Hd(static_cast<Index>(j), static_cast<Index>(j)) += static_cast<float>(opt.damp);

  const std::size_t blen = packed.block_length(), bpr = packed.blocks_per_row();
  constexpr std::size_t chunk_rows = 32;  // fixed: never a function of the thread count
  const std::size_t chunks = (rows + chunk_rows - 1) / chunk_rows;
  std::vector<refine_report> part(chunks);
  detail::parallel_for(chunks, detail::resolve_threads(opt.threads), [&](std::size_t ch) {
    const std::size_t r0 = ch * chunk_rows, nr = std::min(chunk_rows, rows - r0);
    const Index nri = static_cast<Index>(nr);
    RowMat Ew(nri, n);  // e = w − q (dead columns 0)
    for (std::size_t i = 0; i < nr; ++i)
      for (std::size_t j = 0; j < cols; ++j)
        Ew(static_cast<Index>(i), static_cast<Index>(j)) =
            live[j] ? W(r0 + i, j) - dequantized[(r0 + i) * cols + j] : 0.0f;
    // G = E·Hd in double: the running Σ_k H_jk e_k of every row, updated by each accepted change.
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> G = (Ew * Hd).template cast<double>();
    std::vector<double> e(nr * cols);
    for (std::size_t i = 0; i < nr; ++i)
      for (std::size_t j = 0; j < cols; ++j) e[i * cols + j] = Ew(static_cast<Index>(i), static_cast<Index>(j));
    auto loss = [&] {
      double s = 0.0;
      for (std::size_t i = 0; i < nr; ++i)
        for (std::size_t j = 0; j < cols; ++j) s += e[i * cols + j] * G(static_cast<Index>(i), static_cast<Index>(j));
      return s / 2.0;
    };
    refine_report& rp = part[ch];
    rp.loss_before = loss();
    std::vector<block_params> bp(nr * bpr);
    for (std::size_t i = 0; i < nr; ++i)
      for (std::size_t b = 0; b < bpr; ++b) bp[i * bpr + b] = packed.params(r0 + i, b);
    std::vector<double> delta(nr);
    for (int pass = 0; pass < opt.passes; ++pass) {
      std::size_t changed = 0;
      // Weight j of every row of the chunk, then j + 1: H's row j is read once per chunk.
      for (std::size_t j = 0; j < cols; ++j) {
        if (!live[j]) continue;
        const double hjj = Hd(static_cast<Index>(j), static_cast<Index>(j));
        bool any = false;
        for (std::size_t i = 0; i < nr; ++i) {
          delta[i] = 0.0;
          const block_params& p = bp[i * bpr + j / blen];
          if (p.nan) continue;
          const std::size_t at = (r0 + i) * cols + j;
          const double ej = e[i * cols + j];
          const double others = G(static_cast<Index>(i), static_cast<Index>(j)) - hjj * ej;
          const float w = W(r0 + i, j);
          const double target = static_cast<double>(w) + others / hjj;
          const std::uint8_t code = encode_element<E>(static_cast<float>(target), p, opt.quant);
          const float q = decode_element<E>(code, p);
          if (q == dequantized[at]) continue;
          const double enew = static_cast<double>(w - q);
          // Accept only a strict decrease of the row's loss (rounding of q* can tie).
          const double d = enew - ej;
          if (!(d * (2.0 * others + hjj * (enew + ej)) < 0.0)) continue;
          delta[i] = d;
          e[i * cols + j] = enew;
          dequantized[at] = q;
          packed.set_code(r0 + i, j, code);
          any = true;
          ++changed;
        }
        if (!any) continue;
        const float* hrow = Hd.data() + static_cast<std::ptrdiff_t>(j) * n;
        for (std::size_t i = 0; i < nr; ++i) {
          if (delta[i] == 0.0) continue;
          double* g = G.data() + static_cast<std::ptrdiff_t>(i) * n;
          const double d = delta[i];
          for (Index k = 0; k < n; ++k) g[k] += d * static_cast<double>(hrow[k]);
        }
      }
      rp.changed += changed;
      rp.passes_run = pass + 1;
      if (changed == 0) break;
    }
    rp.loss_after = loss();
  });
  for (const refine_report& p : part) {
    rep.loss_before += p.loss_before;
    rep.loss_after += p.loss_after;
    rep.changed += p.changed;
    rep.passes_run = std::max(rep.passes_run, p.passes_run);
  }
  return rep;
}

}  // namespace mxq
