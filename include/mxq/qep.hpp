// QEP, quantization error propagation (Arai & Ichikawa, arXiv 2504.09629; FujitsuResearch/qep):
// before a linear is quantized, its weights are corrected for the error the layers before it
// already made, so that the quantized model's inputs X̂ reproduce the full-precision outputs:
//
//   min_W' || X̂ W'ᵀ - X Wᵀ ||²   =>   W' = W + W · H_δ · H⁻¹,   H = X̂ᵀX̂,  H_δ = (X - X̂)ᵀX̂
//
// (X [tokens, in]: the full-precision model's inputs to this linear; X̂: the quantized model's
// inputs, the same tokens in the same order). The published method damps and scales the
// correction: W' = W + α · W · H_δ · (H + λ I)⁻¹ with λ = damp · mean(diag H); the official
// defaults are α = 0.5 and damp = 1 (100 %), other implementations use damp = 0.01. The
// corrected W' is then quantized as usual (RTN, GPTQ with H from X̂, ...). α = 0 leaves W as it is.
//
//   mxq::qep_accumulator acc(in_features);
//   for (auto& [x, xq] : batches) acc.add(x, xq);     // matrix_view<const float> [k, in] each
//   mxq::qep_correct(W, acc, {.alpha = 0.5f, .damp = 1.0f});   // matrix_view<float> W [out, in]
//   auto q = mxq::gptq<F>(W, H_of_xq);                 // or any quantizer
//
// The two statistics are summed in float over batches (like the GPTQ Hessian, the scale of both
// cancels in H⁻¹H_δ), in column strips of GEMMs over threads; the correction factors H + λI with
// GPTQ's blocked Cholesky and solves row blocks of W·H_δ over threads. Every piece is cut the
// same way whatever the thread count, so the result does not depend on it. Memory: two [in, in]
// float matrices, plus one [in, in] and one [out, in] during the correction.
#pragma once
#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include "config.hpp"
#include "matrix_view.hpp"
#include "solver/factor.hpp"
#include "solver/parallel.hpp"

namespace mxq {

struct qep_options {
  float alpha = 0.5f;  // fraction of the correction applied (0: none)
  float damp = 1.0f;   // λ as a fraction of mean(diag H)
  int threads = 1;     // 0: every core; the result does not depend on it
};

class qep_accumulator {
 public:
  explicit qep_accumulator(std::size_t in_features, int threads = 1)
      : n_(in_features), threads_(detail::resolve_threads(threads)),
        h_(Eigen::MatrixXf::Zero(static_cast<Eigen::Index>(in_features), static_cast<Eigen::Index>(in_features))), hd_(h_) {}

  std::size_t size() const noexcept { return n_; }
  std::size_t tokens() const noexcept { return tokens_; }

  // One batch of the same k tokens: x from the full-precision model, xq from the quantized one.
  void add(matrix_view<const float> x, matrix_view<const float> xq) {
    if (x.cols != n_ || xq.cols != n_ || x.rows != xq.rows)
      throw error("qep_accumulator::add: inputs of " + std::to_string(x.rows) + "x" + std::to_string(x.cols) + " and " +
                  std::to_string(xq.rows) + "x" + std::to_string(xq.cols) + " for " + std::to_string(n_) +
                  " input features (the same tokens from both models)");
    const auto k = static_cast<Eigen::Index>(x.rows), n = static_cast<Eigen::Index>(n_);
    Eigen::MatrixXf xf(k, n), xd(k, n);
    for (Eigen::Index r = 0; r < k; ++r)
      for (Eigen::Index c = 0; c < n; ++c) {
        const float a = x(static_cast<std::size_t>(r), static_cast<std::size_t>(c)),
                    b = xq(static_cast<std::size_t>(r), static_cast<std::size_t>(c));
        if (!std::isfinite(a) || !std::isfinite(b))
          throw error("qep_accumulator::add: row " + std::to_string(tokens_ + static_cast<std::size_t>(r)) + " holds a non-finite value");
        xf(r, c) = b, xd(r, c) = a - b;
      }
    constexpr Eigen::Index strip = 256;  // column strips of both products, over threads
    detail::parallel_for(static_cast<std::size_t>((n + strip - 1) / strip), threads_, [&](std::size_t t) {
      const Eigen::Index c0 = static_cast<Eigen::Index>(t) * strip, w = std::min(strip, n - c0);
      h_.middleCols(c0, w).noalias() += xf.transpose() * xf.middleCols(c0, w);
      hd_.middleCols(c0, w).noalias() += xd.transpose() * xf.middleCols(c0, w);
    });
    tokens_ += x.rows;
  }

  const Eigen::MatrixXf& h() const noexcept { return h_; }        // X̂ᵀX̂
  const Eigen::MatrixXf& h_delta() const noexcept { return hd_; } // (X - X̂)ᵀX̂

 private:
  std::size_t n_, tokens_ = 0;
  int threads_;
  Eigen::MatrixXf h_, hd_;
};

// W [out, in] <- W + α · W · H_δ · (H + λ I)⁻¹, in place.
inline void qep_correct(matrix_view<float> w, const qep_accumulator& acc, const qep_options& opt = {}) {
  if (w.cols != acc.size())
    throw error("qep_correct: a weight of " + std::to_string(w.cols) + " input features for statistics of " + std::to_string(acc.size()));
  if (!(opt.alpha >= 0.0f) || !(opt.damp >= 0.0f) || !std::isfinite(opt.alpha) || !std::isfinite(opt.damp))
    throw error("qep_correct: alpha and damp must be finite and >= 0");
  if (opt.alpha == 0.0f) return;  // exactly the uncorrected weight
  if (acc.tokens() == 0) throw error("qep_correct: no calibration tokens were added");
  const auto n = static_cast<Eigen::Index>(acc.size()), out = static_cast<Eigen::Index>(w.rows);
  const int threads = detail::resolve_threads(opt.threads);
  Eigen::MatrixXf a = acc.h();
  const double lambda = static_cast<double>(opt.damp) * a.diagonal().cast<double>().mean();
  a.diagonal().array() += static_cast<float>(lambda);
  if (!detail::cholesky_lower_inplace(a, threads))
    throw error("qep_correct: H + λI is not positive definite (raise damp; inputs that never vary give a singular H)");
  const Eigen::MatrixXf& f = a;  // the factor in its lower triangle
  // Row blocks of W: Zᵀ = (H + λI)⁻¹ H_δᵀ Wᵀ = L⁻ᵀ L⁻¹ (W H_δ)ᵀ, then W += α Z.
  constexpr Eigen::Index rows_per_task = 64;
  detail::parallel_for(static_cast<std::size_t>((out + rows_per_task - 1) / rows_per_task), threads, [&](std::size_t t) {
    const Eigen::Index r0 = static_cast<Eigen::Index>(t) * rows_per_task, rb = std::min(rows_per_task, out - r0);
    Eigen::MatrixXf wt(n, rb);  // the block's rows, transposed
    for (Eigen::Index r = 0; r < rb; ++r)
      for (Eigen::Index c = 0; c < n; ++c) wt(c, r) = w(static_cast<std::size_t>(r0 + r), static_cast<std::size_t>(c));
    Eigen::MatrixXf zt = acc.h_delta().transpose() * wt;  // (W H_δ)ᵀ
    f.triangularView<Eigen::Lower>().solveInPlace(zt);
    f.transpose().triangularView<Eigen::Upper>().solveInPlace(zt);
    for (Eigen::Index r = 0; r < rb; ++r)
      for (Eigen::Index c = 0; c < n; ++c)
        w(static_cast<std::size_t>(r0 + r), static_cast<std::size_t>(c)) = wt(c, r) + opt.alpha * zt(c, r);
  });
}

}  // namespace mxq
