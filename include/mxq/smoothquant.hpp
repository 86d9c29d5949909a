// SmoothQuant (Xiao et al.; reference mit-han-lab/smoothquant smooth.py) over any weight format,
// plus the folding helpers shared with AWQ.
//
// A group of linears shares one input X [tokens, in] (q/k/v after input_layernorm; gate/up after
// post_attention_layernorm). Per input channel j
//   s_j = max( max|X_j|^alpha / max(max_i,k |W_i[k, j]|, 1e-5)^(1 - alpha), 1e-5 )
// and the group computes the same function with X / s and W_i * s. The division is folded into the
// op that produces X: the preceding norm's weight (and bias) or the previous linear's output rows
// (and bias); the multiplication goes into every W_i's columns.
//
// alpha defaults to 0.5; smoothquant_search<F> optionally tries a grid of alphas and keeps the one
// with the least group output error ||Q_F(W_i s) Q_A(X / s)^T - W_i X^T||^2 under the weight
// format F and the activation quantizer A (e.g. MXINT8 in blocks of 32 along the channels).
//
//   const mxq::matrix_view<const float> group[] = {Wq, Wk, Wv};           // [out_i, in], sharing X [tokens, in]
//   std::vector<float> s = mxq::smoothquant_scales(mxq::collect_stats(X).max_abs(), group, 0.5f);
//   auto r = mxq::smoothquant_search<mxq::mxint8>(X, group, {.alpha_grid = mxq::default_alpha_grid(),
//                                                            .act = mxq::make_activation_quant<mxq::mxint8>()});
//   for (auto W : weights) mxq::scale_columns(W, r.scales);                // matrix_view<float> W_i *= s
//   mxq::fold_into_norm(gamma, beta, r.scales);                            // norm weight (and bias) /= s
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "detail/eigen_blocking.hpp"
#include "format/block.hpp"
#include "matrix_view.hpp"
#include "quant/options.hpp"
#include "quantize.hpp"
#include "solver/parallel.hpp"
#include "stats.hpp"

namespace mxq {

// ---------------------------------------------------------------------------------------------
// Folding (exact in real arithmetic; in fp32 within a few ulps per value)

// W[:, j] *= s_j (the scaled linears).
inline void scale_columns(matrix_view<float> w, std::span<const float> s) {
  detail::calib::check_scales(s, w.cols, "scale_columns");
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t c = 0; c < w.cols; ++c) w(r, c) *= s[c];
}

// X[:, j] /= s_j (calibration activations, as the folded previous op would produce them).
inline void divide_columns(matrix_view<float> x, std::span<const float> s) {
  detail::calib::check_scales(s, x.cols, "divide_columns");
  for (std::size_t r = 0; r < x.rows; ++r)
    for (std::size_t c = 0; c < x.cols; ++c) x(r, c) /= s[c];
}

// Preceding LayerNorm/RMSNorm: gamma /= s (and beta /= s; pass an empty span for RMSNorm).
inline void fold_into_norm(std::span<float> weight, std::span<float> bias, std::span<const float> s) {
  detail::calib::check_scales(s, weight.size(), "fold_into_norm");
  if (!bias.empty() && bias.size() != weight.size())
    throw error("fold_into_norm: bias has " + std::to_string(bias.size()) + " entries, weight " +
                std::to_string(weight.size()));
  for (std::size_t j = 0; j < s.size(); ++j) {
    weight[j] /= s[j];
    if (!bias.empty()) bias[j] /= s[j];
  }
}

// Previous linear prev [out_prev, in_prev] whose last s.size() output rows produce X (llm-awq
// scale_fc_fc): those rows and their bias entries are divided by s.
inline void fold_into_previous_linear(matrix_view<float> prev, std::span<float> bias, std::span<const float> s) {
  if (s.size() > prev.rows)
    throw error("fold_into_previous_linear: " + std::to_string(s.size()) + " scales but the previous linear has only " +
                std::to_string(prev.rows) + " output rows");
  detail::calib::check_scales(s, s.size(), "fold_into_previous_linear");
  if (!bias.empty() && bias.size() != prev.rows)
    throw error("fold_into_previous_linear: bias has " + std::to_string(bias.size()) + " entries for " +
                std::to_string(prev.rows) + " rows");
  const std::size_t r0 = prev.rows - s.size();
  for (std::size_t j = 0; j < s.size(); ++j) {
    for (std::size_t c = 0; c < prev.cols; ++c) prev(r0 + j, c) /= s[j];
    if (!bias.empty()) bias[r0 + j] /= s[j];
  }
}

// Whether a per-channel scale on next's inputs can be folded into the linear prev that produces
// them: prev's output rows must be next's input columns one to one (llm-awq's scale_fc_fc, used
// for v_proj -> o_proj and up_proj -> down_proj). Under grouped-query attention v_proj has fewer
// rows than o_proj has input channels (each KV head feeds several query heads), so that pair is
// skipped; up_proj [intermediate, hidden] -> down_proj [hidden, intermediate] always folds.
inline bool can_fold_linear_into_linear(matrix_view<const float> prev, matrix_view<const float> next) noexcept {
  return prev.rows == next.cols;
}

// ---------------------------------------------------------------------------------------------
// Output error of a group of linears sharing X, with the weights and inputs rescaled by s.

namespace detail::calib {

// Evaluates sum_i ||Q_F(W_i s) Qa(X / s)^T - W_i X^T||^2 for a candidate scale vector s.
// Without activation quantization the error is sum_i ||(Q_F(W_i s) / s - W_i) X^T||^2, computed
// through the Gram matrix X^T X when the input is narrower than the token count. Output rows are
// processed in chunks (scale, fake-quant with the whole matrix's tensor parameters, difference,
// product) spread over threads; the chunks' sums are added in order, so the result does not
// depend on the thread count.
class linear_group_loss {
 public:
  linear_group_loss(matrix_view<const float> x, std::span<const matrix_view<const float>> w, activation_quant act,
                    std::size_t max_tokens = 0, int threads = 0)
      : act_(std::move(act)), threads_(resolve_threads(threads)) {
    pin_eigen_blocking();
    check_group(w, x.cols, "linear_group_loss");
    x_ = sample_rows(x, max_tokens);
    tokens_ = static_cast<std::size_t>(x_.rows());
    in_ = x.cols;
    use_gram_ = !act_ && in_ < tokens_;
    if (use_gram_) gram_ = x_.transpose() * x_;
    for (auto v : w) {
      w_.push_back(to_eigen(v));
      const row_matrix_f& wi = w_.back();
      out_ += static_cast<std::size_t>(wi.rows());
      colmax_.push_back(wi.rows() > 0 ? row_matrix_f(wi.cwiseAbs().colwise().maxCoeff()) : row_matrix_f::Zero(1, wi.cols()));
      row_matrix_f ref = x_ * wi.transpose();
      ref_energy_ += static_cast<double>(ref.cast<double>().squaredNorm());
      if (act_) ref_.push_back(std::move(ref));
    }
  }

  // Strided subsample of at most n rows (0 = all): rows 0, step, 2 step, ... with step = max(1, T / n).
  static row_matrix_f sample_rows(matrix_view<const float> x, std::size_t n) {
    if (n == 0 || x.rows <= n) return to_eigen(x);
    const std::size_t step = std::max<std::size_t>(1, x.rows / n);
    row_matrix_f m(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(x.cols));
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t c = 0; c < x.cols; ++c) m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(c)) = x(i * step, c);
    return m;
  }

  // s empty means all ones.
  template <format_type F>
  double eval(std::span<const float> s, const quant_options& opt) const {
    if (!s.empty()) check_scales(s, in_, "linear_group_loss");
    row_matrix_f xq;
    if (act_) {
      xq = x_;
      if (!s.empty()) divide_columns(view_of(xq), s);
      act_.apply(view_of(xq), view_of(xq));
    }
    // Stochastic rounding draws from the caller's generator: one thread, in order.
    const int threads = opt.rounding == rounding::stochastic ? 1 : threads_;
    double total = 0.0;
    for (std::size_t i = 0; i < w_.size(); ++i) {
      const row_matrix_f& w = w_[i];
      const Eigen::Index rows = w.rows(), cols = w.cols();
      const tensor_params tp = scaled_tensor_params<F>(i, s, opt.scale_rule);
      const Eigen::Index chunk = 128;
      const std::size_t chunks = static_cast<std::size_t>((rows + chunk - 1) / chunk);
      std::vector<double> part(chunks, 0.0);
      parallel_for(chunks, threads, [&](std::size_t c) {
        const Eigen::Index r0 = static_cast<Eigen::Index>(c) * chunk, n = std::min(chunk, rows - r0);
        row_matrix_f q = w.middleRows(r0, n);
        if (!s.empty()) scale_columns(view_of(q), s);
        fake_quant<F>(view_of(q), view_of(q), opt, &tp);
        if (act_) {
          const row_matrix_f o = xq * q.transpose() - ref_[i].middleCols(r0, n);
          part[c] = static_cast<double>(o.cast<double>().squaredNorm());
          return;
        }
        if (!s.empty()) q.array().rowwise() /= Eigen::Map<const Eigen::RowVectorXf>(s.data(), cols).array();
        q -= w.middleRows(r0, n);
        if (use_gram_) {
          const row_matrix_f dg = q * gram_;
          part[c] = std::max(0.0, static_cast<double>(dg.cwiseProduct(q).cast<double>().sum()));
        } else {
          const row_matrix_f e = q * x_.transpose();
          part[c] = static_cast<double>(e.cast<double>().squaredNorm());
        }
      });
      for (double p : part) total += p;
    }
    return total;
  }

  double reference_energy() const noexcept { return ref_energy_; }  // sum_i ||W_i X^T||^2
  std::size_t numel() const noexcept { return tokens_ * out_; }     // output elements
  std::size_t tokens() const noexcept { return tokens_; }
  const std::vector<row_matrix_f>& weights() const noexcept { return w_; }

 private:
  // F's tensor parameters of W_i diag(s) (NVFP4's FP32 scale), from the column maxima: rounding is
  // monotonic, so max_r fl(|w_rj| s_j) = fl(max_r |w_rj| s_j).
  template <format_type F>
  tensor_params scaled_tensor_params(std::size_t i, std::span<const float> s, scale_rule rule) const {
    if constexpr (!F::scale::has_tensor_scale) {
      (void)i, (void)s, (void)rule;
      return {};
    } else {
      float amax = 0.0f;
      for (Eigen::Index j = 0; j < colmax_[i].cols(); ++j) {
        const float a = colmax_[i](0, j) * (s.empty() ? 1.0f : s[static_cast<std::size_t>(j)]);
        if (std::isfinite(a)) amax = std::max(amax, a);
      }
      return F::scale::template tensor_scale<typename F::element>(amax, rule);
    }
  }

  activation_quant act_;
  int threads_ = 1;
  row_matrix_f x_, gram_;
  std::vector<row_matrix_f> w_, ref_, colmax_;
  std::size_t tokens_ = 0, in_ = 0, out_ = 0;
  bool use_gram_ = false;
  double ref_energy_ = 0.0;
};

// W * diag(s), then fake-quant with F (tensor parameters from the scaled matrix).
template <format_type F>
row_matrix_f scaled_fake_quant(const row_matrix_f& w, std::span<const float> s, const quant_options& opt) {
  row_matrix_f ws = w;
  if (!s.empty()) scale_columns(view_of(ws), s);
  fake_quant<F>(view_of(ws), view_of(ws), opt);
  return ws;
}

}  // namespace detail::calib

// Relative output error of quantized weights in the scaled domain:
//   ||Q Qa(X / s)^T - W X^T||^2 / ||W X^T||^2
// q ~ W diag(s) quantized; s empty = no scaling; act empty = fp32 activations. This is the metric of
// `mxq quantize-layer` (s folds into X for a single layer).
inline double scaled_output_error(matrix_view<const float> w, matrix_view<const float> q, matrix_view<const float> x,
                                  std::span<const float> s = {}, const activation_quant& act = {}) {
  if (q.rows != w.rows || q.cols != w.cols)
    throw error("scaled_output_error: quantized weight is " + detail::calib::shape_str(q.rows, q.cols) + ", original " +
                detail::calib::shape_str(w.rows, w.cols));
  const matrix_view<const float> ws[] = {w};
  row_matrix_f xs = detail::calib::to_eigen(x);
  const row_matrix_f wm = detail::calib::to_eigen(w), qm = detail::calib::to_eigen(q);
  const row_matrix_f ref = xs * wm.transpose();
  if (!s.empty()) divide_columns(view_of(xs), s);
  if (act) act.apply(view_of(xs), view_of(xs));
  detail::calib::check_group(ws, x.cols, "scaled_output_error");
  const row_matrix_f out = xs * qm.transpose();
  const double num = (out - ref).cast<double>().squaredNorm();
  const double den = ref.cast<double>().squaredNorm();
  return den > 0.0 ? num / den : num;
}

// ---------------------------------------------------------------------------------------------
// Smoothing factors

struct smoothquant_options {
  float alpha = 0.5f;               // migration strength (MIT code default 0.5)
  std::vector<float> alpha_grid{};  // non-empty: search these alphas (smoothquant_search)
  float min_scale = 1e-5f;          // clamp of the column max and of s (MIT code)
  std::size_t search_tokens = 512;  // tokens (strided subsample) in the search loss; 0 = all
  activation_quant act{};           // activation format in the search loss (empty: fp32)
  quant_options weight_opt{};       // weight fake-quant policies in the search loss
  int threads = 0;                  // search threads (0 = all hardware threads)
};

// The 21 alphas 0, 0.05, ..., 1.
inline std::vector<float> default_alpha_grid() {
  std::vector<float> g;
  for (int i = 0; i <= 20; ++i) g.push_back(static_cast<float>(i) / 20.0f);
  return g;
}

// max_{i,k} |W_i[k, j]| over the group's linears, per input channel j, clamped >= min_scale.
inline std::vector<float> weight_column_max(std::span<const matrix_view<const float>> weights, float min_scale = 1e-5f) {
  if (weights.empty()) throw error("weight_column_max: the group holds no linear layer");
  const std::size_t in = weights[0].cols;
  detail::calib::check_group(weights, in, "weight_column_max");
  std::vector<float> m(in, 0.0f);
  for (auto w : weights)
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < in; ++c) {
        const float a = std::fabs(w(r, c));
        if (!std::isfinite(a)) throw error("weight_column_max: non-finite weight at row " + std::to_string(r) +
                                           ", column " + std::to_string(c));
        m[c] = std::max(m[c], a);
      }
  for (float& v : m) v = std::max(v, min_scale);
  return m;
}

// s_j = max(act_max_j^alpha / weight_max_j^(1 - alpha), min_scale)   (smooth_ln_fcs)
inline std::vector<float> smoothquant_scales(std::span<const float> act_max, std::span<const float> weight_max,
                                             float alpha = 0.5f, float min_scale = 1e-5f) {
  if (act_max.size() != weight_max.size())
    throw error("smoothquant_scales: " + std::to_string(act_max.size()) + " activation maxima but " +
                std::to_string(weight_max.size()) + " weight column maxima");
  if (!(alpha >= 0.0f && alpha <= 1.0f)) throw error("smoothquant_scales: alpha " + std::to_string(alpha) + " is outside [0, 1]");
  std::vector<float> s(act_max.size());
  for (std::size_t j = 0; j < s.size(); ++j) {
    const double v = std::pow(static_cast<double>(act_max[j]), static_cast<double>(alpha)) /
                     std::pow(static_cast<double>(std::max(weight_max[j], min_scale)), 1.0 - static_cast<double>(alpha));
    s[j] = std::max(static_cast<float>(v), min_scale);
  }
  return s;
}

// From the group's weights and activation maxima (e.g. activation_stats::max_abs()).
inline std::vector<float> smoothquant_scales(std::span<const float> act_max, std::span<const matrix_view<const float>> weights,
                                             float alpha = 0.5f, float min_scale = 1e-5f) {
  const std::vector<float> wmax = weight_column_max(weights, min_scale);
  return smoothquant_scales(act_max, wmax, alpha, min_scale);
}

struct smoothquant_result {
  std::vector<float> scales;  // s: previous op /= s, the group's weights *= s
  float alpha = 0.5f;         // the alpha behind `scales`
  double loss = std::numeric_limits<double>::quiet_NaN();  // relative group output error (search only)
  std::vector<float> alphas;   // the alphas tried (search only)
  std::vector<double> losses;  // their relative group output errors
};

// SmoothQuant for a group sharing X. Without opt.alpha_grid this is the reference rule with
// opt.alpha (no quantization involved, F unused); with a grid, every alpha is evaluated with F's
// fake-quant of W s and opt.act's fake-quant of X / s and the least output error wins (earlier
// grid entries win ties). `act_max` may come from a streaming activation_stats over more batches
// than x holds; empty means max|x| of x itself.
template <format_type F>
smoothquant_result smoothquant_search(matrix_view<const float> x, std::span<const matrix_view<const float>> weights,
                                      const smoothquant_options& opt = {}, std::span<const float> act_max = {}) {
  detail::calib::check_group(weights, x.cols, "smoothquant");
  std::vector<float> amax;
  if (act_max.empty()) amax = collect_stats(x, "smoothquant").max_abs();
  else amax.assign(act_max.begin(), act_max.end());
  if (amax.size() != x.cols)
    throw error("smoothquant: " + std::to_string(amax.size()) + " activation maxima for " + std::to_string(x.cols) +
                " channels");
  const std::vector<float> wmax = weight_column_max(weights, opt.min_scale);
  smoothquant_result res;
  if (opt.alpha_grid.empty()) {
    res.alpha = opt.alpha;
    res.scales = smoothquant_scales(amax, wmax, opt.alpha, opt.min_scale);
    return res;
  }
  const detail::calib::linear_group_loss loss(x, weights, opt.act, opt.search_tokens, opt.threads);
  const double den = loss.reference_energy() > 0.0 ? loss.reference_energy() : 1.0;
  double best = std::numeric_limits<double>::infinity();
  for (float a : opt.alpha_grid) {
    std::vector<float> s = smoothquant_scales(amax, wmax, a, opt.min_scale);
    const double l = loss.eval<F>(s, opt.weight_opt) / den;
    res.alphas.push_back(a);
    res.losses.push_back(l);
    if (l < best) best = l, res.alpha = a, res.scales = std::move(s);
  }
  if (res.scales.empty()) throw error("smoothquant: no alpha gave a finite output error");
  res.loss = best;
  return res;
}

}  // namespace mxq
