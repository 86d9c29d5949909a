// The one composition of SmoothQuant -> AWQ -> GPTQ (or RTN), in the order the dependencies force
// (ptq-algorithms.md §6.1), with any subset of the steps and any weight format, plus the
// activation format of the recipe (W4A8 = MXINT4 weights with MXINT8 activations, fake-quantized
// along the input dimension). A recipe drives one group of linears here, and a whole model in
// mxq::llm::quantize_model (<mxq/llm/quantize_model.hpp>), through the same three phases.
//
//   #include <mxq/recipe.hpp>
//   namespace st = mxq::step;
//   std::vector<mxq::row_matrix_f> linears = {w_q, w_k, w_v};   // [out_i, in], sharing the input
//   mxq::row_matrix_f calib = ...;                              // [tokens, in]
//   auto r = mxq::quantize_group<mxq::mxint4>(linears, calib,
//                                             mxq::recipe{st::smoothquant{0.5f}, st::awq{}, st::gptq{},
//                                                         st::act<mxq::mxint8>{}});
//   // r.weights[i]: dequantized Q_i (≈ W_i diag(s)), r.packed[i]: the same as packed codes + scales,
//   // r.scales: s, to fold into the op that produces the group's input (fold_into_norm /
//   // fold_into_previous_linear divide it by s).
//
// Per group, inputs X [tokens, in] (fp32, row-major Eigen or matrix_view), weights W_i [out_i, in]:
//   scale_group   1. SmoothQuant: s1 from max|X| and the group's column max (alpha, or an alpha grid
//                    searched with the weight format and the activation format in the loop);
//                    W_i *= s1, X /= s1.
//                 2. AWQ: the ratio grid on the smoothed X and W (loss = the group's output error, or
//                    the caller's block output, with the weight format's fake-quant and Qa(X / s)
//                    when activations are quantized); before GPTQ, gptq_in_loop verify/grid finishes
//                    candidate ratios with GPTQ and keeps the lowest output error. W_i *= s2.
//   clip          AWQ's clip search when RTN finishes the weights (scale + clip for RTN, scale only
//                 before GPTQ).
//   finish_group  3. GPTQ with H = (2/n) Qa(X)^T Qa(X) (the inputs the quantized layer will see), or RTN.
//   s = s1 * s2. The previous op is divided by s; the returned weights already contain the factor.
//   When the previous op cannot absorb a per-channel scale (grouped-query v_proj -> o_proj:
//   can_fold_linear_into_linear is false) pass group_options::can_scale = false: SmoothQuant and AWQ
//   are then skipped for this group and s = 1.
#pragma once
#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "awq.hpp"
#include "config.hpp"
#include "detail/instances.hpp"
#include "format/block.hpp"
#include "gptq.hpp"
#include "hadamard.hpp"
#include "qep.hpp"
#include "hessian.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quant/options.hpp"
#include "quantize.hpp"
#include "smoothquant.hpp"
#include "stats.hpp"

namespace mxq {

// The steps a recipe is made of. Each embeds its algorithm's own options struct; the recipe fills
// in what is the recipe's (activation format, weight rounding, threads) when it runs the step.
namespace step {

struct smoothquant {
  smoothquant_options options{};  // alpha (0.5, the reference recipe), alpha_grid, search_tokens, min_scale
  smoothquant() = default;
  explicit smoothquant(float alpha) { options.alpha = alpha; }
  explicit smoothquant(smoothquant_options o) : options(std::move(o)) {}
};

struct awq {
  awq_options options{};  // n_grid, search_tokens (0 = all, like llm-awq), clip_grid, max_shrink, clip_tokens
  enum class clip_mode { automatic, on, off };
  clip_mode clip = clip_mode::automatic;  // automatic: clip search when finished by RTN, none before GPTQ
  // Before GPTQ the grid is searched with RTN in the loop (llm-awq); then
  //   off    - keep that ratio (llm-awq + GPTQ as published; the reference recipe, default)
  //   verify - finish the group with GPTQ at that ratio and at ratio 0 (s = 1) and keep the lower
  //            output error on the calibration inputs: AWQ+GPTQ is never worse than GPTQ there
  //            (on the group's own outputs: on the bundled model it lowers those errors but not
  //            the perplexity, see README)
  //   grid   - GPTQ at every ratio of the grid (n_grid GPTQ runs)
  enum class gptq_mode { off, verify, grid };
  gptq_mode gptq_in_loop = gptq_mode::off;
};

struct gptq {
  gptq_options options{};  // damping 1 % of mean diag, lazy blocks of 128, variant A scales
};

// QEP (qep.hpp): before each group is finished, its weights are corrected for the error the
// quantized layers before it made, from the full-precision model's inputs beside the quantized
// model's. A whole-model step: mxq::llm::quantize_model runs both streams; quantize_group, which
// sees one input, refuses it.
struct qep {
  qep_options options{};  // alpha 0.5, damp 1 (100 % of mean diag H): the paper's defaults
};

struct rtn {};  // round to nearest (what finishes a recipe without gptq)

// Activation format A, fake-quantized per token in blocks of A::block_size along the input dimension.
template <format_type A>
struct act {
  quant_options options{};
};

}  // namespace step

template <class T>
struct is_act_step : std::false_type {};
template <format_type A>
struct is_act_step<step::act<A>> : std::true_type {};

template <class T>
concept recipe_step = std::is_same_v<std::remove_cvref_t<T>, step::smoothquant> ||
                      std::is_same_v<std::remove_cvref_t<T>, step::awq> ||
                      std::is_same_v<std::remove_cvref_t<T>, step::gptq> ||
                      std::is_same_v<std::remove_cvref_t<T>, step::qep> ||
                      std::is_same_v<std::remove_cvref_t<T>, step::rtn> ||
                      std::is_same_v<std::remove_cvref_t<T>, activation_quant> ||
                      is_act_step<std::remove_cvref_t<T>>::value;

// Which steps run, and with what settings. The order of application is fixed (SmoothQuant, AWQ,
// GPTQ/RTN) whatever order the steps are listed in. The same recipe drives one group of linears
// (quantize_group) and a whole model (mxq::llm::quantize_model).
struct recipe {
  std::optional<step::smoothquant> smoothquant{};
  std::optional<step::awq> awq{};
  std::optional<step::gptq> gptq{};
  std::optional<step::qep> qep{};
  // Block Hadamard rotation of every decoder linear's input dimension (weights offline, inputs at
  // run time, before activation quantization): a whole-model step of mxq::llm::quantize_model,
  // recorded in the checkpoint (mxq.rotation) so the forward pass applies it.
  std::optional<hadamard_rotation> rotation{};
  activation_quant act{};        // empty: fp32 activations
  quant_options weight_opt{};    // rounding / scale rule of RTN and of the searches' fake-quant
  int threads = 0;               // threads of the SmoothQuant/AWQ searches (0 = all; GPTQ: gptq.options.threads)

  recipe() = default;
  template <recipe_step... Steps>
  recipe(Steps&&... steps) {  // NOLINT: implicit, so that recipe{...} reads as a list of steps
    (add(std::forward<Steps>(steps)), ...);
  }

  recipe& add(step::smoothquant s) { smoothquant = std::move(s); return *this; }
  recipe& add(step::awq a) { awq = std::move(a); return *this; }
  recipe& add(step::gptq g) { gptq = std::move(g); return *this; }
  recipe& add(step::qep q) { qep = std::move(q); return *this; }
  recipe& add(step::rtn) { gptq.reset(); return *this; }
  recipe& add(activation_quant a) { act = std::move(a); return *this; }
  template <format_type A>
  recipe& add(const step::act<A>& a) { act = make_activation_quant<A>(a.options); return *this; }

  // Whether anything needs calibration inputs (plain RTN does not).
  bool calibrates() const noexcept { return smoothquant || awq || gptq || qep; }
  // Whether AWQ's clip search runs (automatic: when RTN finishes the weights).
  bool clips() const noexcept {
    return awq && (awq->clip == step::awq::clip_mode::on || (awq->clip == step::awq::clip_mode::automatic && !gptq));
  }
  // The steps' options as the algorithms take them, with the recipe's own settings filled in.
  smoothquant_options smoothquant_opts() const {
    smoothquant_options o = smoothquant ? smoothquant->options : smoothquant_options{};
    o.act = act;
    o.weight_opt = weight_opt;
    o.threads = threads;
    return o;
  }
  awq_options awq_opts() const {
    awq_options o = awq ? awq->options : awq_options{};
    o.clip = clips();
    o.act = act;
    o.weight_opt = weight_opt;
    o.threads = threads;
    return o;
  }

  // "sq+awq+gptq", "awq+rtn", "qep+gptq", "rtn", ...; with "/a:<format>" when activations are
  // quantized.
  std::string name() const {
    std::string n;
    if (smoothquant) n += "sq+";
    if (awq) n += "awq+";
    if (rotation) n += "hadamard" + std::to_string(rotation->block) + "+";
    if (qep) n += "qep+";
    n += gptq ? "gptq" : "rtn";
    if (gptq && gptq->options.refine_passes > 0) n += "+cd" + std::to_string(gptq->options.refine_passes);
    if (act) n += "/a:" + act.name;
    return n;
  }
};

// What the caller knows about the group beyond its weights and inputs.
struct group_options {
  std::string name{};               // for error messages, e.g. "layers.3.self_attn.qkv"
  bool can_scale = true;            // false: the previous op cannot absorb s (GQA v->o): no SQ/AWQ
  bool smoothquant = true;          // false: SmoothQuant skips this group (only a norm can absorb it, say)
  std::vector<bool> clip{};         // per linear: false skips AWQ's clip (llm-awq skips q/k); empty = all
  std::span<const float> act_max{};  // SmoothQuant statistic over more calibration than X (max|x|)
  std::span<const float> x_mean{};   // AWQ statistic over more calibration than X (mean|x|)
  bool compute_error = true;        // fill group_result::output_error
  // AWQ's scale-search loss: empty = the group's own outputs X W_i^T; otherwise the caller's block
  // output for candidate weights (same order and shapes as the group's) and the candidate's s
  // (empty for the reference call), e.g. the attention or MLP block as llm-awq inspects them.
  std::function<row_matrix_f(std::span<const matrix_view<const float>>, std::span<const float>)> awq_block{};
};

template <format_type F, class Layout = lsb_first_layout>
struct group_result {
  std::vector<row_matrix_f> weights;             // dequantized Q_i [out_i, in] (≈ W_i diag(s))
  std::vector<packed_matrix<F, Layout>> packed;  // the same, packed
  std::vector<float> scales;                     // s (ones when neither SQ nor AWQ ran): previous op /= s
  std::vector<float> smooth_scales;              // SmoothQuant's part of s (empty if it did not run)
  std::vector<float> awq_scales;                 // AWQ's part of s (empty if it did not run)
  float alpha = std::numeric_limits<float>::quiet_NaN();      // SmoothQuant's alpha
  float awq_ratio = std::numeric_limits<float>::quiet_NaN();  // AWQ's chosen ratio (after verify)
  std::vector<awq_clip_result> clips;            // per linear (empty entries: no clip)
  std::vector<double> gptq_loss;                 // per linear (GPTQ only)
  // sum_i ||Q_i Qa(X / s)^T - W_i X^T||^2 / sum_i ||W_i X^T||^2 on the given X (group_options::compute_error)
  double output_error = std::numeric_limits<double>::quiet_NaN();
};

namespace detail::calib {

// The finished (quantized) group for given scaled weights and scaled inputs, with its error.
template <format_type F, class Layout>
struct finished_group {
  std::vector<row_matrix_f> weights;
  std::vector<packed_matrix<F, Layout>> packed;
  std::vector<double> gptq_loss;
  double error = std::numeric_limits<double>::quiet_NaN();  // sum_i ||Q_i Qa(X/s)^T - W_i X^T||^2
  double hessian_seconds = 0.0, solve_seconds = 0.0;          // where the time went (whole-model runs report it)
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// sum_i ||Q_i Qa(X / s)^T - ref_i||^2 with xs = X / s
inline double group_error(const std::vector<row_matrix_f>& q, const row_matrix_f& xs, const activation_quant& act,
                          const std::vector<row_matrix_f>& ref) {
  const row_matrix_f xq = act ? act(view_of(xs)) : xs;
  double num = 0.0;
  for (std::size_t i = 0; i < q.size(); ++i) num += (xq * q[i].transpose() - ref[i]).cast<double>().squaredNorm();
  return num;
}

}  // namespace detail::calib

// The recipe's last step on a group of (already scaled) linears: GPTQ with H = (2/n) Qa(X)^T Qa(X)
// built from `x` (the inputs the quantized group sees, before activation quantization), or RTN.
// `x` may be empty for RTN. The driver of a whole model calls this with the true-sequential inputs.
template <format_type F, class Layout = lsb_first_layout>
detail::calib::finished_group<F, Layout> finish_group(std::span<const matrix_view<const float>> weights,
                                                      matrix_view<const float> x, const recipe& rc,
                                                      const std::string& name = {}) {
  detail::calib::finished_group<F, Layout> out;
  // The group's linears are what engines fuse (q/k/v, gate/up): one tensor scale for them all
  // (NVFP4), from the weights before quantization, as ModelOpt exports and TensorRT-LLM asserts.
  const tensor_params shared =
      shared_tensor_params<F>(weights, rc.gptq ? rc.gptq->options.quant.scale_rule : rc.weight_opt.scale_rule);
  if (rc.gptq) {
    hessian_options ho;
    ho.name = name;
    ho.threads = rc.gptq->options.threads;
    auto t = std::chrono::steady_clock::now();
    hessian_accumulator h(x.cols, ho);
    if (rc.act) {
      const row_matrix_f xq = rc.act(x);
      h.add(view_of(xq));
    } else {
      h.add(x);
    }
    out.hessian_seconds = detail::calib::seconds_since(t);
    t = std::chrono::steady_clock::now();
    for (const auto& m : weights) {
      gptq_options go = rc.gptq->options;
      if (F::scale::has_tensor_scale && !go.tensor) go.tensor = shared;
      gptq_result<F, Layout> g = mxq::gptq<F, Layout>(m, h.matrix(), go);
      out.weights.push_back(Eigen::Map<const row_matrix_f>(g.dequantized.data(), static_cast<Eigen::Index>(g.rows),
                                                           static_cast<Eigen::Index>(g.cols)));
      out.packed.push_back(std::move(g.packed));
      out.gptq_loss.push_back(g.loss);
    }
    out.solve_seconds = detail::calib::seconds_since(t);
  } else {
    const auto t = std::chrono::steady_clock::now();
    for (const auto& m : weights) {
      packed_matrix<F, Layout> p = quantize<F, Layout>(m, rc.weight_opt, &shared);
      row_matrix_f q(static_cast<Eigen::Index>(m.rows), static_cast<Eigen::Index>(m.cols));
      dequantize(p, view_of(q));
      out.weights.push_back(std::move(q));
      out.packed.push_back(std::move(p));
    }
    out.solve_seconds = detail::calib::seconds_since(t);
  }
  return out;
}

// The scaling part of a recipe on one group (SmoothQuant, then AWQ's scale search and, before
// GPTQ, its verify/grid choice): what a caller folds into the op that produces the group's input
// (previous op /= smooth_scales, then /= awq_scales) before it quantizes anything.
template <format_type F, class Layout = lsb_first_layout>
struct group_scaling {
  std::vector<row_matrix_f> weights;  // W_i diag(s) (not clipped, not quantized)
  std::vector<float> scales;          // s = smooth_scales * awq_scales (ones when nothing ran)
  std::vector<float> smooth_scales, awq_scales;
  float alpha = std::numeric_limits<float>::quiet_NaN();
  float awq_ratio = std::numeric_limits<float>::quiet_NaN();
  // With gptq_in_loop verify/grid: the winning candidate as finish_group left it on X / s (clipped
  // first when the recipe clips), and its error against the unscaled reference.
  std::optional<detail::calib::finished_group<F, Layout>> finished;
  std::vector<awq_clip_result> clips;  // the winning candidate's clips (when `finished` holds it)
};

namespace detail::calib {

inline std::vector<row_matrix_f> to_eigen_all(std::span<const matrix_view<const float>> weights) {
  std::vector<row_matrix_f> w;
  for (auto v : weights) w.push_back(to_eigen(v));
  return w;
}
inline std::vector<matrix_view<const float>> views_of(const std::vector<row_matrix_f>& w) {
  std::vector<matrix_view<const float>> v;
  for (const auto& m : w) v.push_back(view_of(m));
  return v;
}

// AWQ's clip search on scaled weights w with inputs xs = X / s, applied in place (group_options::clip).
template <format_type F>
std::vector<awq_clip_result> clip_in_place(std::vector<row_matrix_f>& w, const row_matrix_f& xs, const awq_options& ao,
                                           const std::vector<bool>& mask) {
  std::vector<awq_clip_result> clips(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (!mask.empty() && !mask[i]) continue;
    clips[i] = awq_search_clip<F>(view_of(w[i]), view_of(xs), ao);
    apply_clip(view_of(w[i]), clips[i]);
  }
  return clips;
}

}  // namespace detail::calib

template <format_type F, class Layout = lsb_first_layout>
group_scaling<F, Layout> scale_group(std::span<const matrix_view<const float>> weights, matrix_view<const float> x,
                                     const recipe& rc, const group_options& go = {}) {
  namespace dc = detail::calib;
  const std::string who = go.name.empty() ? std::string("quantize_group") : "quantize_group '" + go.name + "'";
  dc::check_group(weights, x.cols, who.c_str());
  if (!go.clip.empty() && go.clip.size() != weights.size())
    throw error(who + ": group_options::clip has " + std::to_string(go.clip.size()) + " entries for " +
                std::to_string(weights.size()) + " linears");
  for (auto w : weights)
    for (std::size_t r = 0; r < w.rows; ++r)
      for (std::size_t c = 0; c < w.cols; ++c)
        if (!std::isfinite(w(r, c)))
          throw error(who + ": weight [" + std::to_string(r) + ", " + std::to_string(c) + "] is not finite");
  const std::size_t in = x.cols;
  group_scaling<F, Layout> res;
  res.scales.assign(in, 1.0f);
  res.weights = dc::to_eigen_all(weights);
  const bool sq_runs = rc.smoothquant && go.can_scale && go.smoothquant;
  const bool awq_runs = rc.awq && go.can_scale;
  if (!sq_runs && !awq_runs) return res;
  activation_stats stats(in, go.name);
  stats.add(x);  // named NaN/Inf errors before any work
  row_matrix_f xs = dc::to_eigen(x);  // X / s so far

  // 1. SmoothQuant
  if (sq_runs) {
    const std::vector<float> amax =
        go.act_max.empty() ? stats.max_abs() : std::vector<float>(go.act_max.begin(), go.act_max.end());
    const auto v = dc::views_of(res.weights);
    smoothquant_result r = smoothquant_search<F>(view_of(xs), v, rc.smoothquant_opts(), amax);
    for (auto& m : res.weights) scale_columns(view_of(m), r.scales);
    divide_columns(view_of(xs), r.scales);
    for (std::size_t j = 0; j < in; ++j) res.scales[j] *= r.scales[j];
    res.alpha = r.alpha;
    res.smooth_scales = std::move(r.scales);
  }
  if (!awq_runs) return res;

  // 2. AWQ scale search (RTN in the loop), on the smoothed X and W
  const awq_options ao = rc.awq_opts();
  std::vector<float> mean =
      go.x_mean.empty() ? stats.mean_abs() : std::vector<float>(go.x_mean.begin(), go.x_mean.end());
  if (mean.size() != in)
    throw error(who + ": " + std::to_string(mean.size()) + " activation means for " + std::to_string(in) + " channels");
  for (std::size_t j = 0; j < in; ++j) mean[j] /= res.scales[j];  // mean|x / s1| = mean|x| / s1
  const auto v = dc::views_of(res.weights);
  // The caller's block computes on the unsmoothed X: after SmoothQuant its candidates W s1 s2 go
  // back to X's space (/ s1) and its activation scale becomes s1 s2, so it sees Qa(X / (s1 s2)).
  auto block = [&](std::span<const matrix_view<const float>> cand, std::span<const float> s) {
    if (res.smooth_scales.empty()) return go.awq_block(cand, s);
    std::vector<row_matrix_f> u;
    for (auto c : cand) {
      u.push_back(dc::to_eigen(c));
      divide_columns(view_of(u.back()), res.smooth_scales);
    }
    std::vector<float> s12;
    for (std::size_t j = 0; j < s.size(); ++j) s12.push_back(s[j] * res.smooth_scales[j]);
    const auto uv = dc::views_of(u);
    return go.awq_block(std::span<const matrix_view<const float>>(uv), s12);
  };
  awq_scale_result sr =
      go.awq_block ? awq_search_scale<F>(std::span<const float>(mean), std::span<const matrix_view<const float>>(v),
                                         block, ao)
                   : awq_search_scale<F>(view_of(xs), std::span<const matrix_view<const float>>(v), ao, mean);

  // 3. Before GPTQ: finish candidate ratios with GPTQ and keep the one with the lower output error.
  if (rc.gptq && rc.awq->gptq_in_loop != step::awq::gptq_mode::off) {
    std::vector<row_matrix_f> ref;  // X W_i^T with the unscaled weights
    const row_matrix_f x0 = dc::to_eigen(x);
    for (auto w : weights) ref.push_back(x0 * dc::to_eigen(w).transpose());
    std::vector<float> cand = {sr.ratio};
    if (rc.awq->gptq_in_loop == step::awq::gptq_mode::grid) cand = sr.ratios;
    else if (sr.ratio != 0.0f) cand.push_back(0.0f);
    for (float ratio : cand) {
      const std::vector<float> s = awq_scales(mean, ratio, ao.min_scale);
      std::vector<row_matrix_f> wc = res.weights;
      for (auto& m : wc) scale_columns(view_of(m), s);
      row_matrix_f xc = xs;
      divide_columns(view_of(xc), s);
      std::vector<awq_clip_result> clips;
      if (ao.clip) clips = dc::clip_in_place<F>(wc, xc, ao, go.clip);
      auto f = finish_group<F, Layout>(dc::views_of(wc), view_of(xc), rc, go.name);
      f.error = dc::group_error(f.weights, xc, rc.act, ref);
      if (!res.finished || f.error < res.finished->error) {
        res.finished = std::move(f);
        res.clips = std::move(clips);
        sr.ratio = ratio;
        sr.scales = s;
      }
    }
  }
  for (auto& m : res.weights) scale_columns(view_of(m), sr.scales);
  for (std::size_t j = 0; j < in; ++j) res.scales[j] *= sr.scales[j];
  res.awq_ratio = sr.ratio;
  res.awq_scales = std::move(sr.scales);
  return res;
}

// The recipe on one group of linears [out_i, in] sharing the calibration inputs x [tokens, in]:
// scale_group, AWQ's clip search where the recipe clips, then finish_group on X / s.
template <format_type F, class Layout = lsb_first_layout>
group_result<F, Layout> quantize_group(std::span<const matrix_view<const float>> weights, matrix_view<const float> x,
                                       const recipe& rc, const group_options& go = {}) {
  namespace dc = detail::calib;
  if (rc.qep || rc.rotation)  // whole-model steps: one group has no upstream error, no forward pass to rotate
    throw error((go.name.empty() ? std::string("quantize_group") : "quantize_group '" + go.name + "'") +
                (rc.qep ? ": the qep step corrects for the layers before this one, which one group does not have"
                        : ": the Hadamard rotation is a whole-model step (the forward pass must rotate the inputs)") +
                ": run the recipe through mxq::llm::quantize_model (or rotate weights and inputs with mxq::rotate_rows)");
  group_scaling<F, Layout> sc = scale_group<F, Layout>(weights, x, rc, go);
  group_result<F, Layout> res;
  row_matrix_f xs = dc::to_eigen(x);
  divide_columns(view_of(xs), sc.scales);
  std::optional<dc::finished_group<F, Layout>> done = std::move(sc.finished);
  res.clips = std::move(sc.clips);
  if (!done) {
    if (rc.clips() && go.can_scale) res.clips = dc::clip_in_place<F>(sc.weights, xs, rc.awq_opts(), go.clip);
    done = finish_group<F, Layout>(dc::views_of(sc.weights), view_of(xs), rc, go.name);
  }
  res.clips.resize(weights.size());
  if (go.compute_error) {
    std::vector<row_matrix_f> ref;
    double ref_energy = 0.0;
    const row_matrix_f x0 = dc::to_eigen(x);
    for (auto w : weights) {
      ref.push_back(x0 * dc::to_eigen(w).transpose());
      ref_energy += ref.back().cast<double>().squaredNorm();
    }
    const double e = dc::group_error(done->weights, xs, rc.act, ref);
    res.output_error = ref_energy > 0.0 ? e / ref_energy : e;
  }
  res.weights = std::move(done->weights);
  res.packed = std::move(done->packed);
  res.gptq_loss = std::move(done->gptq_loss);
  res.scales = std::move(sc.scales);
  res.smooth_scales = std::move(sc.smooth_scales);
  res.awq_scales = std::move(sc.awq_scales);
  res.alpha = sc.alpha;
  res.awq_ratio = sc.awq_ratio;
  return res;
}

// Eigen convenience: linears as row-major matrices, calibration inputs as one row-major matrix.
template <format_type F, class Layout = lsb_first_layout>
group_result<F, Layout> quantize_group(const std::vector<row_matrix_f>& linears, const row_matrix_f& calib,
                                       const recipe& rc, const group_options& go = {}) {
  std::vector<matrix_view<const float>> v;
  for (const auto& m : linears) v.push_back(view_of(m));
  return quantize_group<F, Layout>(std::span<const matrix_view<const float>>(v), view_of(calib), rc, go);
}

// One linear.
template <format_type F, class Layout = lsb_first_layout>
group_result<F, Layout> quantize_linear(matrix_view<const float> weight, matrix_view<const float> x, const recipe& rc,
                                        const group_options& go = {}) {
  const matrix_view<const float> v[] = {weight};
  return quantize_group<F, Layout>(std::span<const matrix_view<const float>>(v), x, rc, go);
}

#if defined(MXQ_EXTERN_TEMPLATES)
#define MXQ_RECIPE_INSTANCE(F, KW)                                                                                  \
  KW template group_result<F, lsb_first_layout> quantize_group<F, lsb_first_layout>(                               \
      std::span<const matrix_view<const float>>, matrix_view<const float>, const recipe&, const group_options&);     \
  KW template group_scaling<F, lsb_first_layout> scale_group<F, lsb_first_layout>(                                 \
      std::span<const matrix_view<const float>>, matrix_view<const float>, const recipe&, const group_options&);     \
  KW template detail::calib::finished_group<F, lsb_first_layout> finish_group<F, lsb_first_layout>(                \
      std::span<const matrix_view<const float>>, matrix_view<const float>, const recipe&, const std::string&);
MXQ_FOR_EACH_PREDEFINED_FORMAT(MXQ_RECIPE_INSTANCE, extern)
#endif

}  // namespace mxq
