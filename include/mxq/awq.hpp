// AWQ (Lin et al.; reference mit-han-lab/llm-awq auto_scale.py / auto_clip.py) over any format.
//
// Scale search (auto_scale_block._search_module_scale), for a group of linears sharing X:
//   x_mean_j = mean_t |x_tj|
//   for ratio = 0, 1/20, ..., 19/20:
//     s = max(x_mean^ratio, 1e-4);  s /= sqrt(max(s) * min(s))
//     W_i <- Q_F(W_i diag(s)) diag(s)^-1          (the target format's fake-quant in the loop)
//     loss = mean((block(X; W) - block(X; W_i))^2)
//   keep the ratio with the least loss (ratio 0 is s = 1, i.e. plain RTN, so the search never
//   returns a worse loss than RTN).
// The block is the caller's: any callable that maps the group's weights (and optionally the
// candidate's s) to the block output (an engine passes its attention or MLP, as llm-awq inspects
// self_attn for q/k/v and mlp for gate/up); the default is the group's own outputs X W_i^T.
//
// Clip search (auto_clip_layer, n_grid 20, max_shrink 0.5, 512 sampled tokens), per linear on the
// scaled weights W s with inputs X / s: per output row and per group of F's block length,
//   max_val = amax * (1 - i / 20), i = 0 .. 9;  err = mean_t (sum_{j in group} x_tj (Q_F(clamp(w)) - w)_j)^2
// and the best max_val is applied as clamp(w, -max_val, max_val) before quantization. This works
// for every format: for MX formats the clamp moves the block's shared exponent, for NVFP4 the
// tensor scale is held at the unclipped matrix's during the search.
//
//   const mxq::matrix_view<const float> group[] = {Wgate, Wup};   // [out_i, in], sharing X [tokens, in]
//   auto r = mxq::awq_transform<mxq::mxfp4>(X, group);            // scale search, fold, clip search
//   mxq::fold_into_norm(gamma, {}, r.scale.scales);               // previous op /= s (here an RMSNorm)
//   auto q = mxq::quantize<mxq::mxfp4>(mxq::view_of(r.weights[0]));  // W_gate diag(s), clipped
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "config.hpp"
#include "format/block.hpp"
#include "matrix_view.hpp"
#include "quant/options.hpp"
#include "quantize.hpp"
#include "smoothquant.hpp"
#include "solver/parallel.hpp"
#include "stats.hpp"

namespace mxq {

struct awq_options {
  int n_grid = 20;                   // scale ratios k / n_grid, k = 0 .. n_grid - 1
  float min_scale = 1e-4f;           // clamp of x_mean^ratio
  std::size_t search_tokens = 0;     // tokens (strided subsample) in the default scale loss; 0 = all
  bool clip = true;                  // run the clip search (AWQ for RTN); off before GPTQ
  int clip_grid = 20;                // shrink step 1 / clip_grid ...
  float max_shrink = 0.5f;           // ... for int(max_shrink * clip_grid) steps
  std::size_t clip_tokens = 512;     // sampled tokens of the clip search
  activation_quant act{};            // activations quantized in the default losses (W4A8)
  quant_options weight_opt{};        // weight fake-quant policies
  int threads = 0;                   // threads of the default losses and the clip search (0 = all)
};

struct awq_scale_result {
  std::vector<float> scales;  // s: previous op /= s, the group's weights *= s
  float ratio = 0.0f;         // best ratio
  double loss = std::numeric_limits<double>::infinity();  // its mean squared block-output error
  std::vector<float> ratios;   // every ratio tried
  std::vector<double> losses;  // and its loss (NaN where the block output was not finite)
};

// s = max(x_mean^ratio, min_scale) / sqrt(max * min)
inline std::vector<float> awq_scales(std::span<const float> x_mean, float ratio, float min_scale = 1e-4f) {
  std::vector<float> s(x_mean.size());
  if (s.empty()) return s;
  for (std::size_t j = 0; j < s.size(); ++j) {
    if (!(x_mean[j] >= 0.0f) || !std::isfinite(x_mean[j]))
      throw error("awq: activation mean of channel " + std::to_string(j) + " is " + std::to_string(x_mean[j]));
    s[j] = std::max(static_cast<float>(std::pow(static_cast<double>(x_mean[j]), static_cast<double>(ratio))), min_scale);
  }
  const auto [mn, mx] = std::minmax_element(s.begin(), s.end());
  const float norm = std::sqrt(*mx * *mn);
  for (float& v : s) v /= norm;
  return s;
}

namespace detail::calib {

// Q(W s) / s
template <format_type F>
row_matrix_f awq_candidate(const row_matrix_f& w, std::span<const float> s, const quant_options& opt) {
  row_matrix_f q = scaled_fake_quant<F>(w, s, opt);
  for (Eigen::Index r = 0; r < q.rows(); ++r)
    for (Eigen::Index c = 0; c < q.cols(); ++c) q(r, c) /= s[static_cast<std::size_t>(c)];
  return q;
}

template <class Fn>
awq_scale_result awq_grid(std::size_t channels, std::span<const float> x_mean, const awq_options& opt, Fn&& loss_of) {
  if (x_mean.size() != channels)
    throw error("awq: " + std::to_string(x_mean.size()) + " activation means for " + std::to_string(channels) + " channels");
  if (opt.n_grid < 1) throw error("awq: n_grid must be >= 1");
  awq_scale_result res;
  for (int k = 0; k < opt.n_grid; ++k) {
    const float ratio = static_cast<float>(k) / static_cast<float>(opt.n_grid);
    std::vector<float> s = awq_scales(x_mean, ratio, opt.min_scale);
    const double l = loss_of(std::span<const float>(s));
    res.ratios.push_back(ratio);
    res.losses.push_back(std::isfinite(l) ? l : std::numeric_limits<double>::quiet_NaN());
    if (l < res.loss) res.loss = l, res.ratio = ratio, res.scales = std::move(s);  // strict: ties keep the smaller ratio
  }
  if (res.scales.empty()) throw error("awq: no scale ratio gave a finite block-output error (NaN/Inf in the block output?)");
  return res;
}

}  // namespace detail::calib

// Scale search with the caller's block. `block_output(std::span<const matrix_view<const float>> w)`
// returns the block output (an Eigen matrix of floats, any shape) for the group's weights w (same
// order and shapes as `weights`), evaluated on the caller's own calibration input; it is called
// once with the original weights (the reference) and once per ratio with Q(W_i s) / s. A block
// invocable as block_output(w, std::span<const float> s) also gets the candidate's s (an empty span
// for the reference call), e.g. to quantize its input as Qa(X / s) * s.
template <format_type F, class BlockFn>
awq_scale_result awq_search_scale(std::span<const float> x_mean, std::span<const matrix_view<const float>> weights,
                                  BlockFn&& block_output, const awq_options& opt = {}) {
  if (weights.empty()) throw error("awq: the group holds no linear layer");
  detail::calib::check_group(weights, weights[0].cols, "awq");
  std::vector<row_matrix_f> w;
  for (auto v : weights) w.push_back(detail::calib::to_eigen(v));
  auto views = [](const std::vector<row_matrix_f>& m) {
    std::vector<matrix_view<const float>> v;
    for (const auto& x : m) v.push_back(view_of(x));
    return v;
  };
  using wspan = std::span<const matrix_view<const float>>;
  // A block that also takes s sees the candidate's scales (empty for the reference call): with
  // quantized activations it evaluates Qa(X / s) * s, as the folded model will run.
  auto run = [&](const std::vector<row_matrix_f>& m, std::span<const float> s) {
    if constexpr (std::is_invocable_v<BlockFn&, wspan, std::span<const float>>) return block_output(wspan(views(m)), s);
    else return block_output(wspan(views(m)));
  };
  const row_matrix_f ref = run(w, {});
  const double numel = static_cast<double>(ref.size());
  return detail::calib::awq_grid(weights[0].cols, x_mean, opt, [&](std::span<const float> s) {
    std::vector<row_matrix_f> q;
    for (const auto& wi : w) q.push_back(detail::calib::awq_candidate<F>(wi, s, opt.weight_opt));
    const row_matrix_f out = run(q, s);
    if (out.rows() != ref.rows() || out.cols() != ref.cols()) throw error("awq: the block output changed shape");
    return numel > 0 ? (out - ref).cast<double>().squaredNorm() / numel : 0.0;
  });
}

// Scale search with the default block: the group's own outputs X W_i^T (a single linear or
// q/k/v, gate/up sharing X). With opt.act the candidate outputs use Qa(X / s) (W4A8).
// `x_mean` may come from a streaming activation_stats; empty = mean|x| of x.
template <format_type F>
awq_scale_result awq_search_scale(matrix_view<const float> x, std::span<const matrix_view<const float>> weights,
                                  const awq_options& opt = {}, std::span<const float> x_mean = {}) {
  detail::calib::check_group(weights, x.cols, "awq");
  std::vector<float> mean;
  if (x_mean.empty()) mean = collect_stats(x, "awq").mean_abs();
  else mean.assign(x_mean.begin(), x_mean.end());
  const detail::calib::linear_group_loss loss(x, weights, opt.act, opt.search_tokens, opt.threads);
  const double numel = static_cast<double>(loss.numel());
  return detail::calib::awq_grid(x.cols, mean, opt, [&](std::span<const float> s) {
    return numel > 0 ? loss.eval<F>(s, opt.weight_opt) / numel : 0.0;
  });
}

// ---------------------------------------------------------------------------------------------
// Clip search

struct awq_clip_result {
  std::size_t rows = 0, cols = 0, group = 0, groups = 0;  // group = F's block length (row length if 0)
  std::vector<float> max_val;   // [rows, groups] row-major: clamp threshold (the group's amax = no clip)
  std::vector<float> shrink;    // [rows, groups]: chosen factor 1 - i / clip_grid
  double err_noclip = 0.0;      // sum over (row, group) of the unclipped per-group error
  double err_best = 0.0;        // the same with the chosen thresholds (<= err_noclip)
};

namespace detail::calib {

// Per (row, group) mean over tokens of (sum_{j in group} x_tj d_rj)^2.
class group_partial_error {
 public:
  group_partial_error(const row_matrix_f& x, std::size_t group) : x_(x), group_(group) {
    const std::size_t cols = static_cast<std::size_t>(x.cols());
    for (std::size_t c0 = 0; c0 < cols; c0 += group_) {
      const Eigen::Index len = static_cast<Eigen::Index>(std::min(group_, cols - c0));
      if (len <= x.rows()) {
        const auto xg = x.middleCols(static_cast<Eigen::Index>(c0), len);
        gram_.push_back(xg.transpose() * xg);
      } else {
        gram_.emplace_back();  // direct product for groups wider than the token count
      }
    }
  }
  std::size_t groups() const noexcept { return gram_.size(); }

  void eval(const row_matrix_f& d, std::vector<double>& err) const {
    const Eigen::Index rows = d.rows();
    const double inv_t = x_.rows() > 0 ? 1.0 / static_cast<double>(x_.rows()) : 0.0;
    err.assign(static_cast<std::size_t>(rows) * groups(), 0.0);
    for (std::size_t g = 0; g < groups(); ++g) {
      const Eigen::Index c0 = static_cast<Eigen::Index>(g * group_);
      const Eigen::Index len = std::min(static_cast<Eigen::Index>(group_), d.cols() - c0);
      const auto dg = d.middleCols(c0, len);
      if (gram_[g].size() > 0) {
        const row_matrix_f dG = dg * gram_[g];
        for (Eigen::Index r = 0; r < rows; ++r)
          err[static_cast<std::size_t>(r) * groups() + g] =
              std::max(0.0, static_cast<double>(dG.row(r).dot(dg.row(r)))) * inv_t;
      } else {
        const row_matrix_f e = dg * x_.middleCols(c0, len).transpose();
        for (Eigen::Index r = 0; r < rows; ++r)
          err[static_cast<std::size_t>(r) * groups() + g] = static_cast<double>(e.row(r).squaredNorm()) * inv_t;
      }
    }
  }

 private:
  const row_matrix_f& x_;
  std::size_t group_;
  std::vector<row_matrix_f> gram_;
};

}  // namespace detail::calib

// Clip search for one linear w [out, in] (already scaled by s) with inputs x [tokens, in] (already
// divided by s; quantized with opt.act when activations are quantized).
template <format_type F>
awq_clip_result awq_search_clip(matrix_view<const float> w, matrix_view<const float> x, const awq_options& opt = {}) {
  pin_eigen_blocking();
  if (w.cols != x.cols)
    throw error("awq clip: weight is " + detail::calib::shape_str(w.rows, w.cols) + " but the input has " +
                std::to_string(x.cols) + " channels");
  if (opt.clip_grid < 1 || !(opt.max_shrink >= 0.0f && opt.max_shrink < 1.0f))
    throw error("awq clip: need clip_grid >= 1 and 0 <= max_shrink < 1");
  awq_clip_result res;
  res.rows = w.rows, res.cols = w.cols;
  res.group = block_length<F>(w.cols);
  if (w.rows == 0 || w.cols == 0) return res;
  const row_matrix_f wm = detail::calib::to_eigen(w);
  row_matrix_f xs = detail::calib::linear_group_loss::sample_rows(x, opt.clip_tokens);
  if (opt.act) opt.act.apply(view_of(xs), view_of(xs));
  const detail::calib::group_partial_error pe(xs, res.group);
  res.groups = pe.groups();
  const std::size_t n = res.rows * res.groups;

  std::vector<float> amax(n, 0.0f);
  for (std::size_t r = 0; r < res.rows; ++r)
    for (std::size_t c = 0; c < res.cols; ++c) {
      float& a = amax[r * res.groups + c / res.group];
      a = std::max(a, std::fabs(wm(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c))));
    }
  const tensor_params tp = compute_tensor_params<F>(view_of(wm), opt.weight_opt.scale_rule);  // held fixed (NVFP4)
  res.max_val = amax;
  res.shrink.assign(n, 1.0f);
  const int steps = std::max(1, static_cast<int>(opt.max_shrink * static_cast<float>(opt.clip_grid)));
  // Rows are independent: chunks of rows over threads, sums added in chunk order.
  const std::size_t chunk = 64, chunks = (res.rows + chunk - 1) / chunk;
  std::vector<double> noclip(chunks, 0.0), bestsum(chunks, 0.0);
  const int threads = opt.weight_opt.rounding == rounding::stochastic ? 1 : detail::resolve_threads(opt.threads);
  detail::parallel_for(chunks, threads, [&](std::size_t ch) {
    const std::size_t r0 = ch * chunk, nr = std::min(chunk, res.rows - r0);
    const std::size_t k0 = r0 * res.groups, nk = nr * res.groups;
    const auto w0 = wm.middleRows(static_cast<Eigen::Index>(r0), static_cast<Eigen::Index>(nr));
    row_matrix_f wc(static_cast<Eigen::Index>(nr), wm.cols());
    std::vector<double> best(nk, std::numeric_limits<double>::infinity()), err;
    for (int i = 0; i < steps; ++i) {
      const float f = 1.0f - static_cast<float>(i) / static_cast<float>(opt.clip_grid);
      for (std::size_t r = 0; r < nr; ++r)
        for (std::size_t c = 0; c < res.cols; ++c) {
          const float m = amax[k0 + r * res.groups + c / res.group] * f;
          const auto ri = static_cast<Eigen::Index>(r), ci = static_cast<Eigen::Index>(c);
          wc(ri, ci) = std::clamp(w0(ri, ci), -m, m);
        }
      fake_quant<F>(view_of(wc), view_of(wc), opt.weight_opt, &tp);
      wc -= w0;
      pe.eval(wc, err);
      for (std::size_t k = 0; k < nk; ++k) {
        if (i == 0) noclip[ch] += err[k];
        if (err[k] < best[k]) best[k] = err[k], res.max_val[k0 + k] = amax[k0 + k] * f, res.shrink[k0 + k] = f;
      }
    }
    for (double b : best) bestsum[ch] += b;
  });
  for (std::size_t ch = 0; ch < chunks; ++ch) res.err_noclip += noclip[ch], res.err_best += bestsum[ch];
  return res;
}

// w = clamp(w, -max_val, max_val) per (row, group).
inline void apply_clip(matrix_view<float> w, const awq_clip_result& c) {
  if (w.rows != c.rows || w.cols != c.cols)
    throw error("apply_clip: weight is " + detail::calib::shape_str(w.rows, w.cols) + ", the clip search ran on " +
                detail::calib::shape_str(c.rows, c.cols));
  if (c.max_val.empty()) return;
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t col = 0; col < w.cols; ++col) {
      const float m = c.max_val[r * c.groups + col / c.group];
      w(r, col) = std::clamp(w(r, col), -m, m);
    }
}

// ---------------------------------------------------------------------------------------------
// Scale search + fold into the weights + clip search, for a group sharing X.

struct awq_group_result {
  awq_scale_result scale;              // s to fold into the previous op (previous op /= s)
  std::vector<row_matrix_f> weights;   // W_i diag(s), clipped where the clip search ran (not quantized)
  std::vector<awq_clip_result> clips;  // per linear; empty entries where clipping was skipped
};

namespace detail::calib {

// Folds a chosen s into the group's weights and runs the clip search where asked.
template <format_type F>
awq_group_result awq_fold_and_clip(matrix_view<const float> x, std::span<const matrix_view<const float>> weights,
                                   awq_scale_result scale, const awq_options& opt, const std::vector<bool>& clip_mask) {
  awq_group_result res;
  res.scale = std::move(scale);
  const std::vector<float>& s = res.scale.scales;
  for (auto w : weights) {
    res.weights.push_back(to_eigen(w));
    scale_columns(view_of(res.weights.back()), s);
  }
  res.clips.resize(weights.size());
  if (!opt.clip) return res;
  row_matrix_f xs = to_eigen(x);
  divide_columns(view_of(xs), s);
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (!clip_mask.empty() && (i >= clip_mask.size() || !clip_mask[i])) continue;
    res.clips[i] = awq_search_clip<F>(view_of(res.weights[i]), view_of(xs), opt);
    apply_clip(view_of(res.weights[i]), res.clips[i]);
  }
  return res;
}

}  // namespace detail::calib

// clip_mask[i] == false skips the clip search for linear i (llm-awq skips q/k: the QK product makes
// clipping unsafe); empty = clip every linear when opt.clip.
template <format_type F>
awq_group_result awq_transform(matrix_view<const float> x, std::span<const matrix_view<const float>> weights,
                               const awq_options& opt = {}, const std::vector<bool>& clip_mask = {}) {
  return detail::calib::awq_fold_and_clip<F>(x, weights, awq_search_scale<F>(x, weights, opt), opt, clip_mask);
}

// The same with the caller's block in the scale search (see awq_search_scale); x is the group's
// input (for the activation means and the clip search).
template <format_type F, class BlockFn>
  requires(!std::is_convertible_v<BlockFn, const awq_options&>)
awq_group_result awq_transform(matrix_view<const float> x, std::span<const matrix_view<const float>> weights,
                               BlockFn&& block_output, const awq_options& opt = {}, const std::vector<bool>& clip_mask = {}) {
  detail::calib::check_group(weights, x.cols, "awq");
  const std::vector<float> mean = collect_stats(x, "awq").mean_abs();
  awq_scale_result sr = awq_search_scale<F>(std::span<const float>(mean), weights, block_output, opt);
  return detail::calib::awq_fold_and_clip<F>(x, weights, std::move(sr), opt, clip_mask);
}

}  // namespace mxq
