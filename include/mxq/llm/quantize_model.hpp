// Layer-wise calibration of a whole Llama/Qwen2 model with a recipe (the GPTQ procedure):
//
//   mxq::recipe rc{mxq::step::awq{}, mxq::step::gptq{}};
//   auto q = mxq::llm::quantize_model<mxq::mxint4>(weights, calib_tokens, rc, {.seq = 256});
//   mxq::llm::write_quantized_checkpoint(out_dir, model_dir, weights, q, {});
//
//   hidden = embed(calibration windows)
//   for each decoder layer:
//     1. scale_group (recipe.hpp) per group on the fp32 layer, groups in order q/k/v (folded into
//        input_layernorm), o (into v_proj rows, when the shapes allow it), gate/up (into the MLP
//        norm), down (into up_proj rows); SmoothQuant only where a norm absorbs it. Each group's
//        input is computed by the layer walker with the groups before it already scaled.
//     2. AWQ's clip search (RTN recipes) once every fold of the layer is done, all thresholds from
//        the unclipped layer's inputs (llm-awq runs auto_clip_block after apply_scale).
//     3. finish_group per group in order (true-sequential): each group's input comes from the
//        sublayers already quantized in front of it (activations fake-quantized first when the
//        recipe has an activation format, so the Hessian is built from quantized inputs).
//     4. hidden = quantized layer(hidden): the next layer sees the quantized model's activations.
// The same recipe on one group is quantize_group: both run scale_group / finish_group.
// Memory stays bounded by one layer's activations on the calibration set. The result is
// bit-identical for any `threads` (see forward.hpp and detail/eigen_blocking.hpp).
#pragma once
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <stop_token>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../awq.hpp"
#include "../qep.hpp"
#include "../detail/instances.hpp"
#include "../gptq.hpp"
#include "../hessian.hpp"
#include "../packed.hpp"
#include "../quantize.hpp"
#include "../recipe.hpp"
#include "../smoothquant.hpp"
#include "../stats.hpp"
#include "forward.hpp"
#include "linear.hpp"
#include "quantize_stored.hpp"
#include "weights.hpp"

namespace mxq::llm {

// What AWQ's scale search compares for the q/k/v and gate/up groups.
enum class awq_loss_kind {
  block,   // the attention / MLP block's output (llm-awq's module2inspect); o and down: their own outputs
  linear,  // every group's own outputs X W_i^T
};

struct model_options {
  std::size_t seq = 256;  // tokens per calibration window
  unsigned threads = 0;   // 0 = all hardware threads; the result does not depend on it
  awq_loss_kind awq_loss = awq_loss_kind::block;
  // The block loss runs on the first awq_block_windows calibration windows (0 = all; whole
  // windows, attention is causal): it costs a block forward per candidate ratio. The linear-output
  // losses sample step::awq::options.search_tokens tokens.
  std::size_t awq_block_windows = 16;
  std::function<void(const std::string&)> progress;  // one line per step
};

// What the scaling phase chose for one group of one layer.
struct group_report {
  std::size_t layer = 0;
  linear_group group = linear_group::qkv;
  bool scaled = false;  // SmoothQuant or AWQ ran on the group
  float alpha = std::numeric_limits<float>::quiet_NaN();
  float awq_ratio = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> smooth_scales, awq_scales;
};

template <format_type F>
struct quantized_model {
  std::vector<std::pair<std::string, packed_matrix<F>>> linears;  // tensor prefix -> packed weight
  std::vector<group_report> groups;                               // scaling choices, layer by layer
  // Calibrated runs: the largest finite |input| each linear saw in calibration (after the folded
  // scales; what an engine's static activation scale is made of, e.g. NVFP4's input_scale).
  std::vector<std::pair<std::string, float>> input_amax;
  double seconds = 0.0;
};

// The block Hadamard rotation of a checkpoint's linear inputs, then `act` (the rotation comes
// first: activation quantization sees the rotated values, as the rotated weights do).
inline act_quant_fn with_rotation(const std::optional<hadamard_rotation>& r, act_quant_fn act) {
  if (!r) return act;
  return [r = *r, act = std::move(act)](Eigen::Ref<RowMajorMatrixXf> x) {
    rotate_rows(matrix_view<float>(x.data(), static_cast<std::size_t>(x.rows()), static_cast<std::size_t>(x.cols()),
                                   static_cast<std::ptrdiff_t>(x.outerStride())),
                r);
    if (act) act(x);
  };
}
// "hadamard:B" (mxq.rotation, --rotate) <-> the rotation; "" and "none": none.
inline std::optional<hadamard_rotation> parse_rotation(const std::string& s, const std::string& where) {
  if (s.empty() || s == "none") return std::nullopt;
  const std::string prefix = "hadamard:";
  std::size_t block = 0, used = 0;
  if (s.rfind(prefix, 0) == 0) try {
      block = std::stoul(s.substr(prefix.size()), &used);
    } catch (const std::exception&) {
      used = 0;
    }
  if (used == 0 || prefix.size() + used != s.size() || block < 2 || block > 4096 || (block & (block - 1)) != 0)
    throw error(where + ": rotation '" + s + "' is not hadamard:B with B a power of two in [2, 4096] (or none)");
  hadamard_rotation r;
  r.block = block;
  r.threads = 0;
  return r;
}
inline std::string rotation_name(const std::optional<hadamard_rotation>& r) {
  return r ? "hadamard:" + std::to_string(r->block) : std::string();
}

// The recipe's activation quantizer as the forward pass applies it (in place on an Eigen block).
inline act_quant_fn make_act_quant_fn(const activation_quant& aq) {
  if (!aq) return {};
  return [aq](Eigen::Ref<RowMajorMatrixXf> x) {
    matrix_view<float> v(x.data(), static_cast<std::size_t>(x.rows()), static_cast<std::size_t>(x.cols()),
                         static_cast<std::ptrdiff_t>(x.outerStride()));
    aq.apply(v, v);
  };
}

}  // namespace mxq::llm

namespace mxq::detail::pipeline {
using namespace ::mxq::llm;

inline matrix_view<const float> cview(const RowMajorMatrixXf& m) {
  return {m.data(), static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
}
inline matrix_view<float> mview(RowMajorMatrixXf& m) {
  return {m.data(), static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
}
inline std::span<float> span_of(Eigen::VectorXf& v) { return {v.data(), static_cast<std::size_t>(v.size())}; }

// The fp32 input of `group` in `layer` for the calibration batch `hidden` (not modified), through
// the layer walker with the layer's current weights.
inline RowMajorMatrixXf capture(const model_config& c, const decoder_layer_weights& L, std::size_t layer,
                                const RowMajorMatrixXf& hidden, linear_group group, std::size_t seq, unsigned threads,
                                model::workspace& ws, RowMajorMatrixXf& scratch) {
  scratch = hidden;
  const forward_hooks none;
  layer_walker lw(c, L, layer, scratch, seq, none, threads, &ws);
  for (linear_group g : all_groups) {
    const RowMajorMatrixXf& x = lw.input(g);
    if (g == group) return x;
  }
  return {};
}

// Views of a group's current weights in the layer.
inline std::vector<matrix_view<const float>> group_views(const decoder_layer_weights& L, linear_group g) {
  std::vector<matrix_view<const float>> v;
  for (linear l : members(g)) v.push_back(cview(L[l].weight));
  return v;
}

// llm-awq's block for a group's scale search: the attention (q/k/v) or MLP (gate/up) block output
// on `xs` with candidate weights; with quantized activations the folded model runs Qa(X / s) * s.
inline std::function<row_matrix_f(std::span<const matrix_view<const float>>, std::span<const float>)> awq_block_of(
    const model_config& config, const decoder_layer_weights& L, linear_group g,
    std::shared_ptr<const RowMajorMatrixXf> xs, act_quant_fn act, std::size_t seq, unsigned threads) {
  return [&config, &L, g, xs, act, seq, threads](std::span<const matrix_view<const float>> cand, std::span<const float> s) {
    std::vector<linear_weights> c(cand.size());
    const std::span<const linear> ids = members(g);
    for (std::size_t i = 0; i < cand.size(); ++i) {
      using strided = Eigen::Map<const RowMajorMatrixXf, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
      c[i].weight = strided(cand[i].data, static_cast<Eigen::Index>(cand[i].rows), static_cast<Eigen::Index>(cand[i].cols),
                            Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(cand[i].row_stride, cand[i].col_stride));
      c[i].bias = L[ids[i]].bias;
    }
    const RowMajorMatrixXf* in = xs.get();
    RowMajorMatrixXf xq;
    if (act && !s.empty()) {
      xq = *xs;
      divide_columns(mview(xq), s);
      act(xq);
      scale_columns(mview(xq), s);
      in = &xq;
    }
    if (g == linear_group::qkv)
      return attention_block_output(config, c[0], c[1], c[2], L.o_proj, *in, seq, threads, L.q_norm, L.k_norm);
    return mlp_block_output(c[0], c[1], L.down_proj, *in, threads);
  };
}


// Phases 1 and 2 of quantize_model on one layer: every group's SmoothQuant/AWQ scales searched on
// the fp32 layer and folded into the op in front of it (so the layer computes the same function up
// to rounding), then AWQ's clip search when the recipe clips. `hidden` is the layer's input.
template <format_type F, class Log>
std::vector<group_report> scale_layer(const model_config& cfg, decoder_layer_weights& L, std::size_t li,
                                      const RowMajorMatrixXf& hidden, const recipe& rc, const model_options& opt,
                                      unsigned threads, model::workspace& ws, RowMajorMatrixXf& scratch, Log&& log) {
  std::vector<group_report> reports;
  const act_quant_fn act = make_act_quant_fn(rc.act);
  // 1. Scaling on the fp32 layer, group by group, each fold done before the next group's input.
  for (linear_group g : all_groups) {
    const group_info& gi = info(g);
    Eigen::VectorXf* norm = L.norm_of(gi.sink);
    linear_weights* prev = norm ? nullptr : &L[gi.previous];
    const RowMajorMatrixXf x = capture(cfg, L, li, hidden, g, opt.seq, threads, ws, scratch);
    group_options go;
    go.name = "layer " + std::to_string(li) + " " + std::string(name(g));
    go.can_scale = norm || can_fold_linear_into_linear(cview(prev->weight), cview(L[members(g)[0]].weight));
    go.smoothquant = norm != nullptr;  // SmoothQuant only where a norm absorbs it
    go.compute_error = false;
    for (linear l : members(g)) go.clip.push_back(info(l).awq_clip);
    if (rc.awq && opt.awq_loss == awq_loss_kind::block && (g == linear_group::qkv || g == linear_group::gate_up)) {
      const std::size_t all_windows = static_cast<std::size_t>(x.rows()) / opt.seq;
      const std::size_t nw = opt.awq_block_windows == 0 ? all_windows : std::min(opt.awq_block_windows, all_windows);
      auto xs = std::make_shared<const RowMajorMatrixXf>(x.topRows(static_cast<Eigen::Index>(nw * opt.seq)));
      go.awq_block = awq_block_of(cfg, L, g, std::move(xs), act, opt.seq, threads);
    }
    log(li, (rc.smoothquant && norm ? "smoothquant+" : "") + std::string(rc.awq ? "awq " : "scale ") +
                std::string(name(g)));
    group_scaling<F> sc = scale_group<F>(group_views(L, g), cview(x), rc, go);
    group_report rep;
    rep.layer = li, rep.group = g, rep.alpha = sc.alpha, rep.awq_ratio = sc.awq_ratio;
    rep.scaled = !sc.smooth_scales.empty() || !sc.awq_scales.empty();
    std::size_t i = 0;
    for (linear l : members(g)) L[l].weight = std::move(sc.weights[i++]);
    // Fold SmoothQuant's and AWQ's parts one after the other, as they were applied to X.
    for (const std::vector<float>* s : {&sc.smooth_scales, &sc.awq_scales}) {
      if (s->empty()) continue;
      if (norm) {
        fold_into_norm(span_of(*norm), {}, *s);
      } else {
        std::span<float> bias = prev->has_bias() ? span_of(prev->bias) : std::span<float>{};
        fold_into_previous_linear(mview(prev->weight), bias, *s);
      }
    }
    rep.smooth_scales = std::move(sc.smooth_scales);
    rep.awq_scales = std::move(sc.awq_scales);
    reports.push_back(std::move(rep));
  }
  // 2. Clip search on the final scaled weights (a later fold rescales earlier linears' rows: o's s
  //    into v_proj, down's into up_proj, which would move the block exponents a clip found before
  //    it was chosen for). All thresholds come from the unclipped layer's inputs, then all apply.
  //    (With clip_mode::on before GPTQ and verify/grid, scale_group has already clipped its
  //    candidates on the fp32 inputs, so this pass clips again: an opt-in edge case.)
  if (rc.clips()) {
  log(li, "awq clip");
  const awq_options ao = rc.awq_opts();
  scratch = hidden;
  const forward_hooks none;
  layer_walker lw(cfg, L, li, scratch, opt.seq, none, threads, &ws);
  std::vector<std::pair<linear, awq_clip_result>> clips;
  for (linear_group g : all_groups) {
    const RowMajorMatrixXf& x = lw.input(g);
    for (linear l : members(g))
      if (info(l).awq_clip) clips.emplace_back(l, awq_search_clip<F>(cview(L[l].weight), cview(x), ao));
  }
  for (auto& [l, c] : clips) apply_clip(mview(L[l].weight), c);
  }
  return reports;
}

}  // namespace mxq::detail::pipeline

namespace mxq::llm {

// The scaling phases of quantize_model on layer `layer` alone (no quantization): SmoothQuant/AWQ
// scales folded into the layer (its fp32 function unchanged up to rounding), AWQ clip where the
// recipe clips. `hidden` holds the layer's calibration inputs (n_windows * opt.seq rows).
template <format_type F>
std::vector<group_report> scale_layer(model_weights& w, std::size_t layer, const RowMajorMatrixXf& hidden, recipe rc,
                                      const model_options& opt = {}) {
  pin_eigen_blocking();
  const unsigned threads = resolve_threads(opt.threads);
  rc.threads = static_cast<int>(threads);
  if (rc.gptq) rc.gptq->options.threads = static_cast<int>(threads);
  detail::model::workspace ws;
  RowMajorMatrixXf scratch;
  detail::model::layer_of(w, layer);  // range check
  decoder_layer_weights& L = w.layers[layer];
  detail::model::check_batch(w.config, hidden, opt.seq);
  return detail::pipeline::scale_layer<F>(w.config, L, layer, hidden, rc, opt, threads, ws, scratch,
                                          [](std::size_t, const std::string&) {});
}

}  // namespace mxq::llm

namespace mxq::detail::pipeline {

// What every layer of one quantize_model run shares: the resolved recipe, threads, scratch, log.
template <format_type F>
struct run_state {
  using clock = std::chrono::steady_clock;
  recipe rc, finish_rc;  // finish_rc: without act (the walker hands finish_group quantized inputs)
  model_options opt;
  unsigned threads = 1;
  bool calibrate = false, scales = false;
  act_quant_fn act;
  model::workspace ws;  // reused by every layer: no page faults on fresh buffers per step
  RowMajorMatrixXf scratch;
  // QEP: the full-precision model's calibration stream beside `hidden` (the quantized model's),
  // walked through each layer as it was before its groups were finished.
  bool qep = false;
  RowMajorMatrixXf hidden_fp;
  model::workspace ws_fp;
  act_quant_fn fp_act;  // the full-precision stream's input transform: the rotation only
  std::size_t n_layers = 0, first_layer = 0;  // first_layer: where this run started (a resume)
  clock::time_point t0 = clock::now();
  mutable std::size_t closed_layers_ = 0;  // log(): layers finished (their closing line), and when
  mutable double closed_at_ = 0.0;

  run_state(recipe r, const model_options& o, std::size_t calib_tokens, std::size_t layers) : rc(std::move(r)), opt(o), n_layers(layers) {
    pin_eigen_blocking();
    calibrate = rc.calibrates();
    if (calibrate && (opt.seq == 0 || calib_tokens == 0 || calib_tokens % opt.seq != 0))
      throw error("quantize_model: " + std::to_string(calib_tokens) + " calibration tokens do not form windows of " +
                  std::to_string(opt.seq));
    threads = resolve_threads(opt.threads);
    rc.threads = static_cast<int>(threads);
    if (rc.gptq) {
      rc.gptq->options.threads = static_cast<int>(threads);
      rc.gptq->options.rtn_fallback = true;  // a degenerate Hessian degrades to RTN for that linear, not the run
    }
    if (rc.rotation) {
      if (rc.smoothquant || rc.awq)
        throw error("quantize_model: the Hadamard rotation with SmoothQuant/AWQ scales is not supported (the scales "
                    "fold into norms and linears that the rotation stands behind)");
      rc.rotation->threads = static_cast<int>(threads);
    }
    act = with_rotation(rc.rotation, make_act_quant_fn(rc.act));
    fp_act = with_rotation(rc.rotation, {});
    scales = rc.smoothquant || rc.awq;
    qep = rc.qep.has_value();
    if (qep) rc.qep->options.threads = static_cast<int>(threads);
    finish_rc = rc;
    finish_rc.act = {};
  }

  // `finished`: the line closes the layer (its ETA counts it done).
  // The ETA extrapolates the layers finished so far (the time spent in the current one counts
  // against it), or, where no line closes layers (plain RTN), the layers started.
  void log(std::size_t layer, const std::string& what, bool finished = false) const {
    if (!opt.progress) return;
    const double el = std::chrono::duration<double>(clock::now() - t0).count();
    if (finished) closed_layers_ = layer + 1, closed_at_ = el;
    const std::size_t done = closed_layers_ ? closed_layers_ : layer;
    const double at = closed_layers_ ? closed_at_ : el;
    const double eta = done <= first_layer ? 0.0
                                           : std::max(0.0, at / static_cast<double>(done - first_layer) *
                                                               static_cast<double>(n_layers - done) - (el - at));
    char buf[256];
    std::snprintf(buf, sizeof buf, "layer %zu/%zu %-28s elapsed %6.1fs  eta %6.1fs", layer + 1, n_layers, what.c_str(), el,
                  eta);
    opt.progress(buf);
  }

  // Quantizes decoder layer `li` (L, in place) and appends its packed linears and scaling reports
  // to `out`; hidden (the layer's calibration input) becomes the quantized layer's output.
  void quantize_layer(const model_config& cfg, decoder_layer_weights& L, std::size_t li, RowMajorMatrixXf& hidden,
                      quantized_model<F>& out) {
    auto logf = [this](std::size_t layer, const std::string& what) { log(layer, what); };
    using detail::calib::seconds_since;
    double t_scale = 0.0, t_forward = 0.0, t_hessian = 0.0, t_solve = 0.0;  // the layer's time, split
    auto t = clock::now();
    // 0. The rotation: W <- W R for every linear (its inputs are rotated by the hooks below).
    if (rc.rotation)
      for (linear l : all_linears) {
        auto& w = L[l].weight;
        try {
          rotate_rows(matrix_view<float>(w.data(), static_cast<std::size_t>(w.rows()), static_cast<std::size_t>(w.cols())),
                      *rc.rotation);
        } catch (const error& e) {
          throw error(tensor_prefix(li, l) + ".weight: " + e.what());
        }
      }
    // 1.-2. Scaling and clipping on the fp32 layer.
    if (scales) {
      auto rep = scale_layer<F>(cfg, L, li, hidden, rc, opt, threads, ws, scratch, logf);
      out.groups.insert(out.groups.end(), std::make_move_iterator(rep.begin()), std::make_move_iterator(rep.end()));
      t_scale = seconds_since(t);
    }
    // 3. True-sequential finishing: each group's input from the sublayers already quantized in
    //    front of it; 4. the walk ends with hidden = the quantized layer's output.
    forward_hooks hooks;
    hooks.act_quant = act;  // the walker hands finish_group inputs already activation-quantized
    std::optional<layer_walker> lw;
    if (calibrate) lw.emplace(cfg, L, li, hidden, opt.seq, hooks, threads, &ws);
    // QEP: the layer as the full-precision model has it (after the scales, which keep its
    // function), walked on the full-precision stream.
    std::optional<decoder_layer_weights> L_fp;
    forward_hooks fp_hooks;  // the walker keeps a reference: it must outlive lw_fp
    fp_hooks.act_quant = fp_act;
    std::optional<layer_walker> lw_fp;
    if (qep) {
      L_fp.emplace(L);
      lw_fp.emplace(cfg, *L_fp, li, hidden_fp, opt.seq, fp_hooks, threads, &ws_fp);
    }
    for (linear_group g : all_groups) {
      log(li, std::string(rc.gptq ? "gptq " : "rtn ") + std::string(name(g)));
      t = clock::now();
      const matrix_view<const float> x = lw ? cview(lw->input(g)) : matrix_view<const float>{};
      t_forward += seconds_since(t);
      if (lw_fp) {  // W += α W H_δ (H + λI)⁻¹ from this group's inputs in both models
        t = clock::now();
        const matrix_view<const float> x_fp = cview(lw_fp->input(g));
        qep_accumulator acc(x.cols, static_cast<int>(threads));
        acc.add(x_fp, x);
        for (linear l : members(g))
          qep_correct(matrix_view<float>(L[l].weight.data(), static_cast<std::size_t>(L[l].weight.rows()),
                                         static_cast<std::size_t>(L[l].weight.cols())),
                      acc, rc.qep->options);
        t_hessian += seconds_since(t);
      }
      const float x_amax = lw ? ::mxq::kernel::detail::finite_amax(x) : 0.0f;
      auto done = finish_group<F>(group_views(L, g), x, finish_rc, "layer " + std::to_string(li) + " " + std::string(name(g)));
      t_hessian += done.hessian_seconds;
      t_solve += done.solve_seconds;
      std::size_t i = 0;
      for (linear l : members(g)) {
        L[l].weight = std::move(done.weights[i]);
        out.linears.emplace_back(tensor_prefix(li, l), std::move(done.packed[i]));
        if (lw) out.input_amax.emplace_back(tensor_prefix(li, l), x_amax);
        ++i;
      }
    }
    if (lw) {
      log(li, "forward");
      t = clock::now();
      lw->finish();
      if (lw_fp) lw_fp->finish();
      t_forward += seconds_since(t);
    }
    char split[160];
    std::snprintf(split, sizeof split, "done: scale %.1fs forward %.1fs hessian %.1fs %s %.1fs", t_scale, t_forward,
                  t_hessian, rc.gptq ? "solve" : "rtn", t_solve);
    log(li, split, true);
  }
};

// One task at a time on a thread of its own (quantize_model_streaming's sink overlapping the next
// layer); wait() joins it and rethrows what it threw.
class background {
 public:
  template <class Fn>
  void start(Fn&& fn) {
    wait();
    thread_ = std::jthread([this, f = std::forward<Fn>(fn)]() mutable {
      try {
        f();
      } catch (...) {
        error_ = std::current_exception();
      }
    });
  }
  void wait() {
    if (thread_.joinable()) thread_.join();
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  std::exception_ptr error_;
  std::jthread thread_;  // last: joined before error_ goes
};

// Reads layers in order on a thread of its own, at most `depth` layers ahead of the one
// being computed (advance(i): layer i is being computed), so the reading never waits for the
// cores and the memory held stays `depth` layers.
class read_ahead {
 public:
  // Reads layers (first, n) (the first is read by whoever computes it).
  read_ahead(std::size_t first, std::size_t n, std::size_t depth, std::function<void(std::size_t)> read)
      : first_(first), n_(n), depth_(std::max<std::size_t>(depth, 1)), current_(first), read_(std::move(read)) {
    if (first_ + 1 < n_) thread_ = std::jthread([this](std::stop_token st) { loop(st); });
  }
  ~read_ahead() {
    if (thread_.joinable()) {
      thread_.request_stop();
      {
        std::lock_guard lk(m_);
      }
      cv_.notify_all();
    }
  }
  void advance(std::size_t current) {
    {
      std::lock_guard lk(m_);
      current_ = current;
    }
    cv_.notify_all();
  }

 private:
  void loop(std::stop_token st) {
    for (std::size_t i = first_ + 1; i < n_; ++i) {
      {
        std::unique_lock lk(m_);
        cv_.wait(lk, st, [&] { return i <= current_ + depth_; });
        if (st.stop_requested()) return;
        // Computing has caught up with reading: that layer is being (or was) read by its own
        // faults, and mapping a layer already released would only keep its pages resident.
        if (i <= current_) continue;
      }
      read_(i);  // a hint: errors surface when the layer itself is read
    }
  }
  std::size_t first_, n_, depth_, current_;
  std::function<void(std::size_t)> read_;
  std::mutex m_;
  std::condition_variable_any cv_;
  std::jthread thread_;  // last: stopped and joined first
};

}  // namespace mxq::detail::pipeline

namespace mxq::llm {

// Quantizes every decoder linear of `w` in place with recipe `rc` (weights become their
// dequantized values, norms and previous linears absorb SmoothQuant/AWQ scales) and returns the
// packed weights. `calib` holds n_windows * opt.seq token ids (ignored by plain RTN).
template <format_type F>
quantized_model<F> quantize_model(model_weights& w, std::span<const token_id> calib, recipe rc,
                                  const model_options& opt = {}) {
  detail::pipeline::run_state<F> run(std::move(rc), opt, calib.size(), w.layers.size());
  quantized_model<F> out;
  RowMajorMatrixXf hidden = run.calibrate ? embed(w, calib) : RowMajorMatrixXf();
  if (run.qep) run.hidden_fp = hidden;
  for (std::size_t li = 0; li < w.layers.size(); ++li) run.quantize_layer(w.config, w.layers[li], li, hidden, out);
  out.seconds = std::chrono::duration<double>(decltype(run)::clock::now() - run.t0).count();
  return out;
}

// Receives each quantized layer of quantize_model_streaming as soon as it is done: the layer's
// norms and biases (scales folded) and its packed linears and scaling reports in `q` (the sink
// may move them out). The linears' weights in `quantized` are their dequantized values when the
// recipe calibrates; a plain RTN run never makes fp32 copies of them and leaves them empty (the
// packed weights are the result). The layer is released when the sink returns. Calls come in
// layer order, one at a time, but possibly on another thread while the next layer is quantized;
// an exception from the sink ends the run (rethrown by quantize_model_streaming).
template <format_type F>
using layer_sink = std::function<void(std::size_t layer, const decoder_layer_weights& quantized, quantized_model<F>& q)>;

// Where quantize_model_streaming starts and what it reports (resuming an interrupted run: see
// journal.hpp).
struct stream_options {
  std::size_t first_layer = 0;  // layers before it are done (their sink calls are not repeated)
  // With first_layer > 0 and a calibrating recipe: layer first_layer's input; for a recipe with
  // qep, the quantized model's stream on top of the full-precision model's ([2 tokens, hidden]),
  // as layer_done reports it.
  RowMajorMatrixXf hidden;
  // Called after the sink of each layer returned, with the number of layers done and the next
  // layer's calibration input (empty when the recipe does not calibrate); on the sink's thread.
  std::function<void(std::size_t layers_done, const RowMajorMatrixXf& hidden)> layer_done;
};

// quantize_model on a streamed checkpoint: one decoder layer in memory at a time (loaded from
// `src`, quantized, handed to `sink`, dropped), the embedding rows of the calibration tokens only.
// The same computation as quantize_model(load_model(dir), ...): bit-identical packed weights,
// also when resumed at a layer with the activations an earlier run recorded there.
// RTN without calibration quantizes each weight in place in the map (quantize_stored) while the
// next layers are read ahead, so it runs at about the speed of the disk.
template <format_type F>
double quantize_model_streaming(const model_reader& src, std::span<const token_id> calib, recipe rc,
                                const layer_sink<F>& sink, const model_options& opt = {},
                                const stream_options& so = {}) {
  detail::pipeline::run_state<F> run(std::move(rc), opt, calib.size(), src.num_layers());
  const bool direct = !run.calibrate && !run.scales && !run.rc.rotation;  // a rotation needs the fp32 weights
  const std::size_t n = src.num_layers(), first = so.first_layer;
  run.first_layer = first;
  if (first > n)
    throw error("quantize_model_streaming: first layer " + std::to_string(first) + " of a " + std::to_string(n) +
                "-layer model");
  RowMajorMatrixXf hidden;
  const std::size_t streams = run.qep ? 2 : 1;
  if (run.calibrate) {
    hidden = first == 0 ? src.embed(calib) : so.hidden;
    if (static_cast<std::size_t>(hidden.rows()) != (first == 0 ? 1 : streams) * calib.size() ||
        static_cast<std::size_t>(hidden.cols()) != src.config().hidden_size)
      throw error("quantize_model_streaming: the activations to resume at layer " + std::to_string(first) + " are " +
                  std::to_string(hidden.rows()) + "x" + std::to_string(hidden.cols()) + ", expected " +
                  std::to_string(streams * calib.size()) + "x" + std::to_string(src.config().hidden_size));
    if (run.qep) {
      const auto T = static_cast<Eigen::Index>(calib.size());
      if (first == 0) {
        run.hidden_fp = hidden;
      } else {
        run.hidden_fp = hidden.bottomRows(T);
        hidden.conservativeResize(T, Eigen::NoChange);
      }
    }
  }
  // What layer_done reports under QEP: the quantized stream, the full-precision one below it.
  auto both_streams = [&run](const RowMajorMatrixXf& h) {
    RowMajorMatrixXf both(h.rows() + run.hidden_fp.rows(), h.cols());
    both << h, run.hidden_fp;
    return both;
  };
  detail::pipeline::background sinking;
  // Two layers ahead: the reads keep going while a slow write-back holds the sink up (measured
  // no faster at 4, ~0.4 GB more resident per layer).
  if (direct && first < n) src.prefetch_layer(first);
  detail::pipeline::read_ahead ahead(direct ? first : n, n, 2, [&src](std::size_t i) { src.prefetch_layer(i); });
  for (std::size_t li = first; li < n; ++li) {
    if (!direct) {
      run.log(li, "load");
      decoder_layer_weights L = src.layer(li);
      src.release_layer(li);  // in fp32 now: its stored bytes are not needed again
      quantized_model<F> q;
      run.quantize_layer(src.config(), L, li, hidden, q);
      sink(li, L, q);
      if (so.layer_done) {
        if (run.qep) so.layer_done(li + 1, both_streams(hidden));
        else so.layer_done(li + 1, hidden);
      }
      continue;
    }
    // The next layers are read while this one is quantized, and the previous one goes to the
    // sink on its own thread meanwhile: the disk (both ways) and the cores stay busy together.
    ahead.advance(li);
    run.log(li, "rtn");
    decoder_layer_weights L = src.layer_norms_and_biases(li);
    quantized_model<F> q;
    for (linear_group g : all_groups) {  // a group shares its tensor scale (finish_group does the same)
      std::vector<std::tuple<std::string, std::size_t, std::size_t>> members_of;
      for (linear l : members(g)) {
        const auto [rows, cols] = expected_linear_shape(src.config(), l);
        members_of.emplace_back(tensor_prefix(li, l), rows, cols);
      }
      const tensor_params shared = shared_stored_tensor_params<F>(src.source(), members_of, run.finish_rc.weight_opt.scale_rule);
      for (const auto& [prefix, rows, cols] : members_of)
        q.linears.emplace_back(prefix, quantize_stored<F>(src.source(), prefix, rows, cols, run.finish_rc.weight_opt,
                                                          static_cast<int>(run.threads), &shared));
    }
    src.release_layer(li);
    sinking.wait();
    sinking.start([&sink, &so, li, L = std::move(L), q = std::move(q)]() mutable {
      sink(li, L, q);
      if (so.layer_done) so.layer_done(li + 1, RowMajorMatrixXf());
    });
  }
  sinking.wait();
  return std::chrono::duration<double>(decltype(run)::clock::now() - run.t0).count();
}

#if defined(MXQ_EXTERN_TEMPLATES)
#define MXQ_QUANTIZE_MODEL_INSTANCE(F, KW) \
  KW template quantized_model<F> quantize_model<F>(model_weights&, std::span<const token_id>, recipe, const model_options&); \
  KW template double quantize_model_streaming<F>(const model_reader&, std::span<const token_id>, recipe, \
                                                 const layer_sink<F>&, const model_options&, const stream_options&);
MXQ_FOR_EACH_PREDEFINED_FORMAT(MXQ_QUANTIZE_MODEL_INSTANCE, extern)
#endif

}  // namespace mxq::llm
