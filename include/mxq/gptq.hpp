// GPTQ over any block format: mxq::gptq<Format>(W [out, in], H [in, in], options).
//
//   mxq::hessian_accumulator h(in);                  // W, inputs: mxq::matrix_view<const float>
//   h.add(inputs);                                   // calibration rows [tokens, in], any number of batches
//   auto r = mxq::gptq<mxq::mxfp4>(W, h.matrix());   // r.packed, r.dequantized, r.loss, r.damp_fraction
//
// H must be the full symmetric matrix (both triangles are read; hessian_accumulator::matrix() is).
// The algorithm is the reference (IST-DASLab/gptq `fasterquant`): dead inputs (H_ii = 0) get
// H_ii = 1 and a zeroed weight column; H += percdamp·mean(diag H)·I; U = upper Cholesky factor of
// H⁻¹; columns are quantized one at a time, each error (w − q)/U_ii fed back into the columns not
// yet quantized; updates beyond the current lazy batch (128 columns) are applied as one GEMM per
// batch. What mxq adds:
//  * any format (format_type): a block's scale comes from choose_block_params<F> (MX E8M0, NVFP4
//    UE4M3 + tensor scale, INT min-max / symmetric, per group or per row (block_size 0), custom).
//  * variant A (default): a block's scale is chosen when the loop reaches the block's first column,
//    from the block's current error-compensated values in the working copy (intra-batch updates
//    included, not the outer W the reference reads). Lazy batches hold whole blocks.
//  * variant B: static_scales = true chooses every scale up front from the original weights, or
//    `scales` passes the caller's. Per-row formats (block_size 0) are the same in both variants:
//    the only block starts at column 0, before any update.
//  * act-order (descending diag H) keeps each stored block contiguous, see act_order.
//  * scale_rule::mse searches each block's scale for the least squared error weighted per column by
//    1/U_jj² (GPTQ's own per-column loss weight; default), 1/[H_F⁻¹]_jj, diag H (E[x²]) or uniformly.
//  * damping retry: a failed Cholesky retries with 10x the damping (damp_retries times).
//  * U is computed as J·chol(JHJ)⁻¹·J (solver/factor.hpp): one Cholesky and one triangular inverse,
//    no explicit H⁻¹. Rows of W are independent given U, so they are split over threads; each
//    thread keeps its rows transposed (a column contiguous) and works on row tiles that fit cache.
#pragma once
#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "detail/instances.hpp"
#include "detail/eigen_blocking.hpp"
#include "format.hpp"
#include "format/block.hpp"
#include "hessian.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quant/element_quant.hpp"
#include "quant/options.hpp"
#include "quantize.hpp"
#include "refine.hpp"
#include "solver/factor.hpp"
#include "solver/memory.hpp"
#include "solver/parallel.hpp"

namespace mxq {

// Column processing order.
//  none      - natural order.
//  blockwise - (default choice for act-order) block-aware ordering in the style of GPTQModel's GAR:
//              columns sorted by descending diag H inside each block, and whole blocks ordered by
//              their largest diag H. Every block stays a contiguous run of the processing order, so
//              dynamic (variant A) scales still see the whole block at its first column and the
//              stored layout needs no g_idx. For per-row formats (block_size 0) it is the full
//              descending order.
//  global    - full descending diag H order (IST --act-order). A block's columns are then scattered
//              over the processing order, so scales are necessarily static (variant B, chosen up
//              front in the original layout); requesting it forces static scales.
enum class act_order { none, blockwise, global };

// Per-column importance used by scale_rule::mse. hseq is the default: on the code-llama layers it
// ties hinv for dynamic block scales and is far better for per-row (static) scales, e.g. INT4
// per-channel down_proj 2.47e-3 vs 3.47e-3 (hinv) and 2.62e-3 (hdiag); see benchmarks/RESULTS.md.
enum class mse_weighting {
  hseq,     // 1/U_jj² = 1/[H_F⁻¹]_jj, F = column j and the columns after it: the weight GPTQ's own
            // loss gives column j's error
  hinv,     // 1/[H_F⁻¹]_jj with F = the columns from the block's first one on (static scales: all)
  hdiag,    // diag H ∝ E[x_j²] (llama.cpp imatrix / llm-compressor imatrix_mse)
  uniform,  // plain squared error
};

struct gptq_options {
  quant_options quant = {};        // rounding and scale rule (mse = per-block scale search)
  double percdamp = 0.01;          // damping = percdamp · mean(diag H)
  int damp_retries = 4;            // on Cholesky failure retry with 10x the damping, this many times
  bool rtn_fallback = false;       // if every retry fails: plain RTN instead of an error
  std::size_t block_size = 128;    // lazy batch (rounded up to whole format blocks)
  act_order order = act_order::none;
  bool static_scales = false;      // variant B: scales from the original (dead-zeroed) weights
  std::span<const block_params> scales = {};   // caller's static scales, [rows x blocks_per_row]
  std::optional<tensor_params> tensor = {};    // NVFP4 tensor scale (default: from W; pass one to share it)
  mse_weighting mse_weights = mse_weighting::hseq;
  int threads = 0;                 // 0 = all hardware threads (stochastic rounding: always 1)
  // Coordinate-descent passes over the finished codes against the same damped H (refine.hpp): each
  // lowers GPTQ's own loss with the scales kept; 0 = the reference algorithm.
  int refine_passes = 0;
};

struct gptq_timings {
  double prepare_s = 0, cholesky_s = 0, inverse_s = 0, loop_s = 0, refine_s = 0;
  double total() const noexcept { return prepare_s + cholesky_s + inverse_s + loop_s + refine_s; }
};

template <format_type F, class Layout = lsb_first_layout>
struct gptq_result {
  packed_matrix<F, Layout> packed;
  std::vector<float> dequantized;      // [rows, cols] row-major, original column order
  std::size_t rows = 0, cols = 0;
  double loss = 0;                     // Σ (w − q)²/U_ii² / 2 (the reference's printed error);
                                       // equals tr(ΔW H_damped ΔWᵀ)/2
  double damp_fraction = 0;            // percdamp actually used (percdamp · 10^retries)
  double damp = 0;                     // the value added to diag H
  int damp_retries = 0;
  bool rtn_fallback = false;           // true when the factorization failed and RTN was used
  bool static_scales = false;          // variant B was used
  std::vector<std::size_t> dead_columns;
  std::vector<std::size_t> order;      // original column index processed at each step
  refine_report refine;                // what gptq_options::refine_passes did (loss: after it)
  gptq_timings timings;

  matrix_view<const float> view() const noexcept { return {dequantized.data(), rows, cols}; }
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Processing plan: order, format-block runs ("segments") and lazy batches, all in positions.
struct gptq_plan {
  std::vector<std::size_t> order;          // position -> original column
  std::vector<std::size_t> seg_len;        // at a segment's first position: its length, else 0
  std::vector<std::pair<std::size_t, std::size_t>> batches;  // [begin, end) positions
};

inline gptq_plan make_gptq_plan(std::size_t cols, std::size_t blen, const std::vector<double>& diag, act_order order,
                                bool dynamic, std::size_t lazy) {
  gptq_plan p;
  const std::size_t nblocks = (cols + blen - 1) / blen;
  auto by_diag = [&](std::size_t a, std::size_t b) { return diag[a] > diag[b]; };
  p.order.resize(cols);
  std::iota(p.order.begin(), p.order.end(), std::size_t{0});
  if (order == act_order::global) {
    std::stable_sort(p.order.begin(), p.order.end(), by_diag);
  } else if (order == act_order::blockwise) {
    std::vector<std::size_t> blocks(nblocks);
    std::iota(blocks.begin(), blocks.end(), std::size_t{0});
    std::vector<double> bmax(nblocks, -1.0);
    for (std::size_t c = 0; c < cols; ++c) bmax[c / blen] = std::max(bmax[c / blen], diag[c]);
    std::stable_sort(blocks.begin(), blocks.end(), [&](std::size_t a, std::size_t b) { return bmax[a] > bmax[b]; });
    std::size_t pos = 0;
    for (std::size_t b : blocks) {
      const std::size_t c0 = b * blen, c1 = std::min(cols, c0 + blen);
      std::iota(p.order.begin() + static_cast<std::ptrdiff_t>(pos),
                p.order.begin() + static_cast<std::ptrdiff_t>(pos + c1 - c0), c0);
      std::stable_sort(p.order.begin() + static_cast<std::ptrdiff_t>(pos),
                       p.order.begin() + static_cast<std::ptrdiff_t>(pos + c1 - c0), by_diag);
      pos += c1 - c0;
    }
  }
  p.seg_len.assign(cols, 0);
  if (dynamic) {
    // Blocks are contiguous runs of the order; a batch is whole blocks, at least `lazy` columns.
    std::size_t pos = 0, batch_begin = 0;
    while (pos < cols) {
      const std::size_t b = p.order[pos] / blen;
      std::size_t len = 1;
      while (pos + len < cols && p.order[pos + len] / blen == b) ++len;
      p.seg_len[pos] = len;
      pos += len;
      if (pos - batch_begin >= lazy || pos == cols) {
        p.batches.emplace_back(batch_begin, pos);
        batch_begin = pos;
      }
    }
  } else {
    for (std::size_t b = 0; b < cols; b += lazy) p.batches.emplace_back(b, std::min(cols, b + lazy));
  }
  return p;
}

struct gptq_factor_result {
  Eigen::MatrixXf U;  // upper, H_damped⁻¹ = UᵀU, in processing order
  double damp_fraction = 0, damp = 0;
  int retries = 0;
  bool ok = false;
  double cholesky_s = 0, inverse_s = 0;
};

// U for H permuted into `order`, with dead diagonal entries set to 1 and the damping retry loop.
inline gptq_factor_result gptq_factor(matrix_view<const float> H, const std::vector<std::size_t>& order,
                                      const std::vector<double>& diag, double percdamp, int retries, int threads) {
  using Eigen::Index;
  const std::size_t n = order.size();
  const Index ni = static_cast<Index>(n);
  gptq_factor_result f;
  double mean_diag = 0.0;
  for (double d : diag) mean_diag += d;
  mean_diag /= static_cast<double>(std::max<std::size_t>(n, 1));
  Eigen::MatrixXf A(ni, ni);  // becomes U in place
  advise_huge_pages(A.data(), A.size() * sizeof(float));
  double frac = percdamp;
  for (int attempt = 0; attempt <= retries; ++attempt) {
    const double damp = frac * mean_diag;
    auto t0 = std::chrono::steady_clock::now();
    // A = J P H Pᵀ J (lower triangle): A(i, j) = H(order[n-1-i], order[n-1-j]); rows of H read
    // contiguously (H is symmetric).
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t b = order[n - 1 - j];
      const float* hrow = &H(b, 0);
      float* acol = A.data() + static_cast<std::ptrdiff_t>(j * n);
      if (H.col_stride == 1) {
        for (std::size_t i = j + 1; i < n; ++i) acol[i] = hrow[order[n - 1 - i]];
      } else {
        for (std::size_t i = j + 1; i < n; ++i) acol[i] = H(b, order[n - 1 - i]);
      }
      acol[j] = static_cast<float>(diag[b] + damp);
    }
    // PSD H + damp·I has every pivot² >= damp; far below that, H was numerically indefinite.
    const bool chol_ok = detail::cholesky_lower_inplace(A, threads, 1e-3 * damp);
    f.cholesky_s += seconds_since(t0);
    if (chol_ok) {
      t0 = std::chrono::steady_clock::now();
      detail::lower_inverse_inplace(A, threads);
      detail::reverse_both_orders(A);
      f.inverse_s += seconds_since(t0);
      if (A.allFinite()) {
        f.U = std::move(A);
        f.ok = true;
        f.damp_fraction = frac;
        f.damp = damp;
        f.retries = attempt;
        return f;
      }
    }
    frac = frac > 0.0 ? frac * 10.0 : 0.01;
  }
  f.retries = retries;
  return f;
}

}  // namespace detail

template <format_type F, class Layout = lsb_first_layout>
gptq_result<F, Layout> gptq(matrix_view<const float> W, matrix_view<const float> H, const gptq_options& opt = {}) {
  using E = typename F::element;
  using clock = std::chrono::steady_clock;
  const auto t_start = clock::now();
  pin_eigen_blocking();
  const std::size_t rows = W.rows, cols = W.cols;
  if (H.rows != cols || H.cols != cols)
    throw error("gptq: H is " + std::to_string(H.rows) + "x" + std::to_string(H.cols) + " but W has " +
                std::to_string(cols) + " input columns");
  if (opt.block_size == 0) throw error("gptq: block_size (lazy batch) must be > 0");
  if (!opt.quant.column_weights.empty() && opt.quant.column_weights.size() != cols)
    throw error("gptq: quant_options::column_weights has " + std::to_string(opt.quant.column_weights.size()) +
                " entries for " + std::to_string(cols) + " columns");
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c)
      if (!std::isfinite(W(r, c)))
        throw error("gptq: weight [" + std::to_string(r) + ", " + std::to_string(c) + "] is not finite");
  std::vector<double> diag(cols);
  for (std::size_t c = 0; c < cols; ++c) {
    for (std::size_t k = 0; k < cols; ++k)
      if (!std::isfinite(H(c, k)))
        throw error("gptq: H[" + std::to_string(c) + ", " + std::to_string(k) + "] is not finite");
    diag[c] = H(c, c);
  }

  gptq_result<F, Layout> res;
  res.rows = rows;
  res.cols = cols;
  // Dead inputs (H_ii = 0: the input never fires): H_ii = 1 and the weight column is read as 0.
  std::vector<char> dead(cols, 0);
  for (std::size_t c = 0; c < cols; ++c)
    if (diag[c] == 0.0) {
      res.dead_columns.push_back(c);
      diag[c] = 1.0;
      dead[c] = 1;
    }
  auto w0 = [&](std::size_t r, std::size_t c) { return dead[c] ? 0.0f : W(r, c); };
  {
    quant_options rule_only;  // the rule F must support (column weights are GPTQ's own)
    rule_only.scale_rule = opt.quant.scale_rule;
    detail::check_options<F>(rule_only, cols);
  }
  const tensor_params tensor = opt.tensor ? *opt.tensor : compute_tensor_params<F>(W, opt.quant.scale_rule);  // original weights
  res.packed = packed_matrix<F, Layout>(rows, cols, tensor);
  res.dequantized.reserve(rows * cols);
  detail::advise_huge_pages(res.dequantized.data(), rows * cols * sizeof(float));
  res.dequantized.assign(rows * cols, 0.0f);
  if (rows == 0 || cols == 0) return res;

  const std::size_t blen = block_length<F>(cols);
  const std::size_t bpr = res.packed.blocks_per_row();
  if (!opt.scales.empty() && opt.scales.size() != rows * bpr)
    throw error("gptq: " + std::to_string(opt.scales.size()) + " caller scales for " + std::to_string(rows) + " rows x " +
                std::to_string(bpr) + " blocks");
  const bool is_static = opt.static_scales || !opt.scales.empty() || F::block_size == 0 || opt.order == act_order::global;
  res.static_scales = is_static;
  const int threads = opt.quant.rounding == rounding::stochastic ? 1 : detail::resolve_threads(opt.threads);
  const detail::gptq_plan plan = detail::make_gptq_plan(cols, blen, diag, opt.order, !is_static, opt.block_size);
  res.order = plan.order;
  res.timings.prepare_s = detail::seconds_since(t_start);

  // U (processing order).
  detail::gptq_factor_result fac = detail::gptq_factor(H, plan.order, diag, opt.percdamp, opt.damp_retries, threads);
  res.timings.cholesky_s = fac.cholesky_s;
  res.timings.inverse_s = fac.inverse_s;
  res.damp_retries = fac.retries;
  if (!fac.ok) {
    if (!opt.rtn_fallback)
      throw error("gptq: H + damping is not positive definite even with percdamp " +
                  std::to_string(opt.percdamp) + " x 10^" + std::to_string(opt.damp_retries) +
                  " (set rtn_fallback to quantize with RTN instead)");
    res.rtn_fallback = true;
    fac.U = Eigen::MatrixXf::Identity(static_cast<Eigen::Index>(cols), static_cast<Eigen::Index>(cols));
  }
  res.damp_fraction = fac.damp_fraction;
  res.damp = fac.damp;
  const Eigen::MatrixXf& U = fac.U;
  auto t_loop = clock::now();

  // Per-position MSE weights (only read under scale_rule::mse).
  const bool mse = opt.quant.scale_rule == scale_rule::mse;
  std::vector<float> posw;  // by position, empty = unweighted
  if (mse) {
    if (!opt.quant.column_weights.empty()) {
      posw.resize(cols);
      for (std::size_t p = 0; p < cols; ++p) posw[p] = opt.quant.column_weights[plan.order[p]];
    } else if (opt.mse_weights == mse_weighting::hdiag) {
      posw.resize(cols);
      for (std::size_t p = 0; p < cols; ++p) posw[p] = static_cast<float>(diag[plan.order[p]]);
    } else if (opt.mse_weights == mse_weighting::hinv || opt.mse_weights == mse_weighting::hseq) {
      // [H_F⁻¹]_jj = Σ_{k in F, k <= j} U_kj², F = from the block's first position (static: all).
      posw.resize(cols);
      std::size_t seg0 = 0;
      for (std::size_t p = 0; p < cols; ++p) {
        if (!is_static && plan.seg_len[p] != 0) seg0 = p;
        if (opt.mse_weights == mse_weighting::hseq) seg0 = p;
        double s = 0.0;
        for (std::size_t k = seg0; k <= p; ++k) {
          const double u = U(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(p));
          s += u * u;
        }
        posw[p] = static_cast<float>(s > 0.0 ? 1.0 / s : 0.0);
      }
    }
  }

  // Variant B: every block's parameters up front, in the original layout.
  std::vector<block_params> fixed;
  if (is_static) {
    fixed.resize(rows * bpr);
    if (!opt.scales.empty()) {
      std::copy(opt.scales.begin(), opt.scales.end(), fixed.begin());
    } else {
      std::vector<float> colw;  // original column order
      if (!posw.empty()) {
        colw.resize(cols);
        for (std::size_t p = 0; p < cols; ++p) colw[plan.order[p]] = posw[p];
      }
      detail::parallel_for(rows, threads, [&](std::size_t r) {
        std::vector<float> row(cols);
        for (std::size_t c = 0; c < cols; ++c) row[c] = w0(r, c);
        for (std::size_t b = 0; b < bpr; ++b) {
          const std::size_t c0 = b * blen, len = std::min(blen, cols - c0);
          const std::span<const float> wts = colw.empty() ? std::span<const float>{}
                                                          : std::span<const float>(colw.data() + c0, len);
          fixed[r * bpr + b] = choose_block_params<F>(std::span<const float>(row.data() + c0, len), wts, opt.quant, tensor);
        }
      });
    }
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t b = 0; b < bpr; ++b) res.packed.set_params(r, b, fixed[r * bpr + b]);
  }

  // The column loop over row chunks (independent given U).
  using Eigen::Index;
  // Fixed row chunks (never a function of the thread count): the lazy-batch GEMM below rounds a row
  // by its position in the chunk, so the codes are the same for any number of threads.
  constexpr std::size_t chunk_rows = 128;
  const std::size_t chunks = (rows + chunk_rows - 1) / chunk_rows;
  std::size_t max_batch = 0;
  for (auto [b0, b1] : plan.batches) max_batch = std::max(max_batch, b1 - b0);
  std::vector<double> chunk_loss(chunks, 0.0);
  packed_matrix<F, Layout>& packed = res.packed;
  float* deq = res.dequantized.data();
  const quant_options& qopt = opt.quant;

  detail::parallel_for(chunks, threads, [&](std::size_t ch) {
    const std::size_t r0 = ch * chunk_rows, nr = std::min(chunk_rows, rows - r0);
    const Index nri = static_cast<Index>(nr);
    // Transposed working rows: Wt(i, p) = W[r0 + i, order[p]] (dead columns 0), a column contiguous.
    Eigen::MatrixXf Wt(nri, static_cast<Index>(cols));
    detail::advise_huge_pages(Wt.data(), nr * cols * sizeof(float));
    constexpr std::size_t tp = 64;
    for (std::size_t p0 = 0; p0 < cols; p0 += tp)
      for (std::size_t i = 0; i < nr; ++i)
        for (std::size_t p = p0; p < std::min(cols, p0 + tp); ++p)
          Wt(static_cast<Index>(i), static_cast<Index>(p)) = w0(r0 + i, plan.order[p]);
    Eigen::MatrixXf Err(nri, static_cast<Index>(max_batch));
    Eigen::MatrixXf Ub;
    std::vector<block_params> cur(nr);
    std::vector<float> gather(blen);
    double loss = 0.0;
    constexpr std::size_t tile = 64;  // rows per tile: a 64 x 128 working block stays in L1/L2
    for (auto [i1, i2] : plan.batches) {
      const std::size_t len = i2 - i1;
      const Index leni = static_cast<Index>(len);
      Ub = U.block(static_cast<Index>(i1), static_cast<Index>(i1), leni, leni);
      for (std::size_t t0 = 0; t0 < nr; t0 += tile) {
        const std::size_t t1 = std::min(nr, t0 + tile);
        for (std::size_t p = i1; p < i2; ++p) {
          const std::size_t col = plan.order[p], blk = col / blen;
          if (!is_static && plan.seg_len[p] != 0) {
            const std::size_t sl = plan.seg_len[p];
            const std::span<const float> wts =
                posw.empty() ? std::span<const float>{} : std::span<const float>(posw.data() + p, sl);
            for (std::size_t i = t0; i < t1; ++i) {
              for (std::size_t k = 0; k < sl; ++k) gather[k] = Wt(static_cast<Index>(i), static_cast<Index>(p + k));
              cur[i] = choose_block_params<F>(std::span<const float>(gather.data(), sl), wts, qopt, tensor);
              packed.set_params(r0 + i, blk, cur[i]);
            }
          }
          const Index pl = static_cast<Index>(p - i1);
          const float d = Ub(pl, pl);
          float* w = &Wt(0, static_cast<Index>(p));
          float* e = &Err(0, pl);
          for (std::size_t i = t0; i < t1; ++i) {
            const block_params& bp = is_static ? fixed[(r0 + i) * bpr + blk] : cur[i];
            const std::uint8_t code = encode_element<E>(w[i], bp, qopt);
            const float q = decode_element<E>(code, bp);
            packed.set_code(r0 + i, col, code);
            deq[(r0 + i) * cols + col] = q;
            const float err = (w[i] - q) / d;
            e[i] = err;
            loss += static_cast<double>(err) * err;
          }
          for (std::size_t j = p + 1; j < i2; ++j) {
            const float u = Ub(pl, static_cast<Index>(j - i1));
            float* wj = &Wt(0, static_cast<Index>(j));
            for (std::size_t i = t0; i < t1; ++i) wj[i] -= u * e[i];
          }
        }
      }
      if (i2 < cols) {
        const Index rest = static_cast<Index>(cols - i2);
        Wt.rightCols(rest).noalias() -= Err.leftCols(leni) * U.block(static_cast<Index>(i1), static_cast<Index>(i2), leni, rest);
      }
    }
    chunk_loss[ch] = loss;
  });
  res.loss = std::accumulate(chunk_loss.begin(), chunk_loss.end(), 0.0) / 2.0;
  res.timings.loop_s = detail::seconds_since(t_loop);
  if (opt.refine_passes > 0 && !res.rtn_fallback && opt.quant.rounding != rounding::stochastic) {
    const auto t_refine = clock::now();
    // Against the weights GPTQ quantized (dead columns read as 0, as above).
    std::vector<float> w(rows * cols);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) w[r * cols + c] = w0(r, c);
    refine_options ro;
    ro.passes = opt.refine_passes;
    ro.damp = res.damp;
    ro.quant = opt.quant;
    ro.threads = threads;
    res.refine = refine_codes<F>(matrix_view<const float>(w.data(), rows, cols), H, res.packed, res.dequantized, ro);
    res.loss = res.refine.loss_after;
    res.timings.refine_s = detail::seconds_since(t_refine);
  }
  return res;
}

#if defined(MXQ_EXTERN_TEMPLATES)
#define MXQ_GPTQ_INSTANCE(F, KW) \
  KW template gptq_result<F, lsb_first_layout> gptq<F, lsb_first_layout>(matrix_view<const float>, matrix_view<const float>, const gptq_options&);
MXQ_FOR_EACH_PREDEFINED_FORMAT(MXQ_GPTQ_INSTANCE, extern)
#endif

}  // namespace mxq
