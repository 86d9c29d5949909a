// Composition of SmoothQuant -> AWQ -> GPTQ (or RTN) for one group of linears sharing an input,
// in the order the dependencies force (ptq-algorithms.md §6.1), with any subset of the steps and
// any weight format, plus the activation format of the recipe (W4A8 = MXINT4 weights with MXINT8
// activations, fake-quantized along the input dimension).
//
//   namespace st = mxq::step;
//   auto r = mxq::quantize_group<mxq::mxint4>(linears, calib,
//                                             mxq::recipe{st::smoothquant{0.5f}, st::awq{}, st::gptq{},
//                                                         st::act<mxq::mxint8>{}});
//   // r.weights[i]: dequantized Q_i (≈ W_i diag(s)), r.packed[i]: the same as packed codes + scales,
//   // r.scales: s, to fold into the op that produces the group's input (fold_into_norm /
//   // fold_into_previous_linear divide it by s).
//
// Per group (a calibration pipeline calls this per linear group of a decoder layer):
//   inputs  X [tokens, in] (fp32, row-major Eigen or matrix_view) and 1..n weights W_i [out_i, in]
//   1. SmoothQuant: s1 from max|X| and the group's column max (alpha, or an alpha grid searched with
//      the weight format and the activation format in the loop); W_i *= s1, X /= s1.
//   2. AWQ: the ratio grid on the smoothed X and W (loss = the group's output error with the weight
//      format's fake-quant, and Qa(X / s) when activations are quantized); W_i *= s2, X /= s2; then
//      the clip search when the weights are finished by RTN (the reference recipe: scale + clip for
//      RTN, scale only before GPTQ).
//   3. GPTQ with H = (2/n) Qa(X)^T Qa(X) (the inputs the quantized layer will see), or RTN.
//   s = s1 * s2. The previous op is divided by s; the returned weights already contain the factor.
//   When the previous op cannot absorb a per-channel scale (grouped-query v_proj -> o_proj:
//   can_fold_linear_into_linear is false) pass group_options::can_scale = false: SmoothQuant and AWQ
//   are then skipped for this group and s = 1.
#pragma once
#include <Eigen/Core>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "awq.hpp"
#include "config.hpp"
#include "format/block.hpp"
#include "gptq.hpp"
#include "hessian.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quant/options.hpp"
#include "quantize.hpp"
#include "smoothquant.hpp"
#include "stats.hpp"

namespace mxq {

// The steps a recipe is made of.
namespace step {

struct smoothquant {
  float alpha = 0.5f;                // the reference recipe: 0.5
  std::vector<float> alpha_grid{};   // non-empty: search these alphas (default_alpha_grid())
  std::size_t search_tokens = 512;   // tokens in the alpha-search loss (0 = all)
};

struct awq {
  enum class clip_mode { automatic, on, off };
  clip_mode clip = clip_mode::automatic;  // automatic: clip search when finished by RTN, none before GPTQ
  int n_grid = 20;
  std::size_t search_tokens = 0;  // tokens in the scale-search loss (0 = all, like llm-awq)
  int clip_grid = 20;
  float max_shrink = 0.5f;
  std::size_t clip_tokens = 512;
  // Before GPTQ the grid is searched with RTN in the loop (llm-awq); then
  //   off    - keep that ratio (the reference recipe)
  //   verify - finish the group with GPTQ at that ratio and at ratio 0 (s = 1) and keep the lower
  //            output error on the calibration inputs: AWQ+GPTQ is never worse than GPTQ there (default)
  //   grid   - GPTQ at every ratio of the grid (n_grid GPTQ runs)
  enum class gptq_mode { off, verify, grid };
  gptq_mode gptq_in_loop = gptq_mode::verify;
};

struct gptq {
  gptq_options options{};  // damping 1 % of mean diag, lazy blocks of 128, variant A scales
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
                      std::is_same_v<std::remove_cvref_t<T>, step::rtn> ||
                      std::is_same_v<std::remove_cvref_t<T>, activation_quant> ||
                      is_act_step<std::remove_cvref_t<T>>::value;

// Which steps run, and with what settings. The order of application is fixed (SmoothQuant, AWQ,
// GPTQ/RTN) whatever order the steps are listed in.
struct recipe {
  std::optional<step::smoothquant> smoothquant{};
  std::optional<step::awq> awq{};
  std::optional<step::gptq> gptq{};
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
  recipe& add(step::rtn) { gptq.reset(); return *this; }
  recipe& add(activation_quant a) { act = std::move(a); return *this; }
  template <format_type A>
  recipe& add(const step::act<A>& a) { act = make_activation_quant<A>(a.options); return *this; }

  // "sq+awq+gptq", "awq+rtn", "rtn", ...; with "/a:<format>" when activations are quantized.
  std::string name() const {
    std::string n;
    if (smoothquant) n += "sq+";
    if (awq) n += "awq+";
    n += gptq ? "gptq" : "rtn";
    if (act) n += "/a:" + act.name;
    return n;
  }
};

// A recipe from a method name: '+'-separated steps in application order, among sq (smoothquant),
// awq, gptq and rtn, e.g. "awq", "awq+gptq", "sq+rtn", "sq+gptq", "sq+awq+gptq". A name without
// gptq finishes with RTN. `act_format` ("" = none) names the activation format.
inline recipe parse_recipe(std::string_view method, float alpha = 0.5f, std::string_view act_format = {}) {
  recipe r;
  int last = -1;  // 0 sq, 1 awq, 2 gptq/rtn
  std::string_view rest = method;
  if (rest.empty()) throw error("empty method name");
  while (!rest.empty()) {
    const std::size_t p = rest.find('+');
    const std::string_view part = rest.substr(0, p);
    rest = p == std::string_view::npos ? std::string_view{} : rest.substr(p + 1);
    int rank;
    if (part == "sq" || part == "smoothquant") rank = 0, r.smoothquant = step::smoothquant{alpha};
    else if (part == "awq") rank = 1, r.awq = step::awq{};
    else if (part == "gptq") rank = 2, r.gptq = step::gptq{};
    else if (part == "rtn") rank = 2;
    else
      throw error("unknown step '" + std::string(part) + "' in method '" + std::string(method) +
                  "' (steps: sq, awq, gptq, rtn joined by '+')");
    if (rank <= last)
      throw error("method '" + std::string(method) +
                  "': steps must appear once each, in the order sq, awq, gptq|rtn (SmoothQuant changes the "
                  "statistics AWQ sees; GPTQ finishes the weights)");
    last = rank;
  }
  r.act = activation_quant_by_name(act_format);
  return r;
}

// What the pipeline knows about the group beyond its weights and inputs.
struct group_options {
  std::string name{};               // for error messages, e.g. "layers.3.self_attn.qkv"
  bool can_scale = true;            // false: the previous op cannot absorb s (GQA v->o): no SQ/AWQ
  std::vector<bool> clip{};         // per linear: false skips AWQ's clip (llm-awq skips q/k); empty = all
  std::span<const float> act_max{};  // SmoothQuant statistic over more calibration than X (max|x|)
  std::span<const float> x_mean{};   // AWQ statistic over more calibration than X (mean|x|)
  bool compute_error = true;        // fill group_result::output_error
};

template <format_type F, class Layout = lsb_first_layout>
struct group_result {
  std::vector<row_matrix_f> weights;             // dequantized Q_i [out_i, in] (≈ W_i diag(s))
  std::vector<packed_matrix<F, Layout>> packed;  // the same, packed
  std::vector<float> scales;                     // s (ones when neither SQ nor AWQ ran): previous op /= s
  std::vector<float> smooth_scales;              // SmoothQuant's part of s (empty if it did not run)
  std::vector<float> awq_scales;                 // AWQ's part of s (empty if it did not run)
  float alpha = std::numeric_limits<float>::quiet_NaN();      // SmoothQuant's alpha
  float awq_ratio = std::numeric_limits<float>::quiet_NaN();  // AWQ's best ratio
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
};

// sum_i ||Q_i Qa(X / s)^T - ref_i||^2 with xs = X / s
inline double group_error(const std::vector<row_matrix_f>& q, const row_matrix_f& xs, const activation_quant& act,
                          const std::vector<row_matrix_f>& ref) {
  const row_matrix_f xq = act ? act(view_of(xs)) : xs;
  double num = 0.0;
  for (std::size_t i = 0; i < q.size(); ++i) num += (xq * q[i].transpose() - ref[i]).cast<double>().squaredNorm();
  return num;
}

template <format_type F, class Layout>
finished_group<F, Layout> finish_group(const std::vector<row_matrix_f>& w, const row_matrix_f& xs, const recipe& rc,
                                       const std::string& name, const std::vector<row_matrix_f>* ref) {
  finished_group<F, Layout> out;
  if (rc.gptq) {
    const row_matrix_f xq = rc.act ? rc.act(view_of(xs)) : xs;
    hessian_options ho;
    ho.name = name;
    hessian_accumulator h(static_cast<std::size_t>(xs.cols()), ho);
    h.add(view_of(xq));
    for (const auto& m : w) {
      gptq_result<F, Layout> g = mxq::gptq<F, Layout>(view_of(m), h.matrix(), rc.gptq->options);
      out.weights.push_back(Eigen::Map<const row_matrix_f>(g.dequantized.data(), static_cast<Eigen::Index>(g.rows),
                                                           static_cast<Eigen::Index>(g.cols)));
      out.packed.push_back(std::move(g.packed));
      out.gptq_loss.push_back(g.loss);
    }
  } else {
    for (const auto& m : w) {
      packed_matrix<F, Layout> p = quantize<F, Layout>(view_of(m), rc.weight_opt);
      row_matrix_f q(m.rows(), m.cols());
      dequantize(p, view_of(q));
      out.weights.push_back(std::move(q));
      out.packed.push_back(std::move(p));
    }
  }
  if (ref) out.error = group_error(out.weights, xs, rc.act, *ref);
  return out;
}

}  // namespace detail::calib

// The recipe on one group of linears [out_i, in] sharing the calibration inputs x [tokens, in].
template <format_type F, class Layout = lsb_first_layout>
group_result<F, Layout> quantize_group(std::span<const matrix_view<const float>> weights, matrix_view<const float> x,
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
  group_result<F, Layout> res;
  res.scales.assign(in, 1.0f);
  activation_stats stats(in, go.name);
  stats.add(x);  // named NaN/Inf errors before any work

  std::vector<row_matrix_f> w;
  for (auto v : weights) w.push_back(dc::to_eigen(v));
  auto views = [&] {
    std::vector<matrix_view<const float>> v;
    for (const auto& m : w) v.push_back(view_of(m));
    return v;
  };
  row_matrix_f xs = dc::to_eigen(x);  // X / s so far

  const bool awq_runs = rc.awq && go.can_scale;
  const bool gptq_check = awq_runs && rc.gptq && rc.awq->gptq_in_loop != step::awq::gptq_mode::off;
  // Reference outputs X W_i^T, for the reported error and the GPTQ-in-the-loop comparisons.
  std::vector<row_matrix_f> ref;
  double ref_energy = 0.0;
  if (go.compute_error || gptq_check)
    for (const auto& m : w) {
      ref.push_back(xs * m.transpose());
      ref_energy += ref.back().cast<double>().squaredNorm();
    }

  // 1. SmoothQuant
  if (rc.smoothquant && go.can_scale) {
    smoothquant_options so;
    so.alpha = rc.smoothquant->alpha;
    so.alpha_grid = rc.smoothquant->alpha_grid;
    so.search_tokens = rc.smoothquant->search_tokens;
    so.act = rc.act;
    so.weight_opt = rc.weight_opt;
    so.threads = rc.threads;
    const std::vector<float> amax =
        go.act_max.empty() ? stats.max_abs() : std::vector<float>(go.act_max.begin(), go.act_max.end());
    const auto v = views();
    smoothquant_result r = smoothquant_search<F>(view_of(xs), v, so, amax);
    for (auto& m : w) scale_columns(view_of(m), r.scales);
    divide_columns(view_of(xs), r.scales);
    for (std::size_t j = 0; j < in; ++j) res.scales[j] *= r.scales[j];
    res.alpha = r.alpha;
    res.smooth_scales = std::move(r.scales);
  }

  // 2. AWQ
  res.clips.resize(w.size());
  std::optional<dc::finished_group<F, Layout>> done;
  if (awq_runs) {
    awq_options ao;
    ao.n_grid = rc.awq->n_grid;
    ao.search_tokens = rc.awq->search_tokens;
    ao.clip = rc.awq->clip == step::awq::clip_mode::on || (rc.awq->clip == step::awq::clip_mode::automatic && !rc.gptq);
    ao.clip_grid = rc.awq->clip_grid;
    ao.max_shrink = rc.awq->max_shrink;
    ao.clip_tokens = rc.awq->clip_tokens;
    ao.act = rc.act;
    ao.weight_opt = rc.weight_opt;
    ao.threads = rc.threads;
    std::vector<float> mean =
        go.x_mean.empty() ? stats.mean_abs() : std::vector<float>(go.x_mean.begin(), go.x_mean.end());
    if (mean.size() != in)
      throw error(who + ": " + std::to_string(mean.size()) + " activation means for " + std::to_string(in) + " channels");
    for (std::size_t j = 0; j < in; ++j) mean[j] /= res.scales[j];  // mean|x / s1| = mean|x| / s1
    const auto v = views();
    awq_scale_result sr = awq_search_scale<F>(view_of(xs), v, ao, mean);
    if (gptq_check) {
      // The candidates GPTQ finishes: the RTN-searched ratio and ratio 0 (s = 1), or the whole grid.
      std::vector<float> cand = {sr.ratio};
      if (rc.awq->gptq_in_loop == step::awq::gptq_mode::grid) cand = sr.ratios;
      else if (sr.ratio != 0.0f) cand.push_back(0.0f);
      for (float ratio : cand) {
        const std::vector<float> s = awq_scales(mean, ratio, ao.min_scale);
        std::vector<row_matrix_f> wc = w;
        for (auto& m : wc) scale_columns(view_of(m), s);
        row_matrix_f xc = xs;
        divide_columns(view_of(xc), s);
        auto f = dc::finish_group<F, Layout>(wc, xc, rc, go.name, &ref);
        if (!done || f.error < done->error) done = std::move(f), sr.ratio = ratio, sr.scales = s;
      }
    }
    for (auto& m : w) scale_columns(view_of(m), sr.scales);
    divide_columns(view_of(xs), sr.scales);
    for (std::size_t j = 0; j < in; ++j) res.scales[j] *= sr.scales[j];
    res.awq_ratio = sr.ratio;
    if (ao.clip)
      for (std::size_t i = 0; i < w.size(); ++i) {
        if (!go.clip.empty() && !go.clip[i]) continue;
        res.clips[i] = awq_search_clip<F>(view_of(w[i]), view_of(xs), ao);
        apply_clip(view_of(w[i]), res.clips[i]);
      }
    res.awq_scales = std::move(sr.scales);
  }

  // 3. GPTQ on the inputs the quantized layer sees (H from Qa(X / s)), or RTN
  if (!done) done = dc::finish_group<F, Layout>(w, xs, rc, go.name, go.compute_error ? &ref : nullptr);
  res.weights = std::move(done->weights);
  res.packed = std::move(done->packed);
  res.gptq_loss = std::move(done->gptq_loss);
  if (go.compute_error) res.output_error = ref_energy > 0.0 ? done->error / ref_energy : done->error;
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

}  // namespace mxq
