// Layer-wise calibration of a whole Llama/Qwen2 model (the GPTQ procedure), any recipe:
//
//   hidden = embed(calibration windows)
//   for each decoder layer:
//     1. scaling (SmoothQuant and/or AWQ) on the fp32 layer, groups in order
//        q/k/v (folded into input_layernorm), o (into v_proj), gate/up (into the MLP norm),
//        down (into up_proj); SmoothQuant only where a norm can absorb it.
//     2. true-sequential quantization: q/k/v, then o, then gate/up, then down, each group
//        calibrated on the inputs produced by the already-quantized sublayers in front of it
//        (activations fake-quantized first when the recipe has an activation format, so the
//        Hessian is built from quantized inputs).
//     3. hidden = quantized layer(hidden): the next layer sees the quantized model's activations.
// Memory stays bounded by one layer's activations on the calibration set.
#pragma once
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "awq.hpp"
#include "format/registry.hpp"
#include "gptq.hpp"
#include "hessian.hpp"
#include "model/forward.hpp"
#include "model/weights.hpp"
#include "packed.hpp"
#include "quantize.hpp"
#include "smoothquant.hpp"
#include "stats.hpp"

namespace mxq {

// Which algorithms a method name turns on, in the paper's order SmoothQuant -> AWQ -> GPTQ/RTN.
struct method_flags {
  bool smoothquant = false, awq = false, gptq = false;
};

inline method_flags parse_method(std::string_view m) {
  struct entry {
    std::string_view name;
    method_flags flags;
  };
  static constexpr entry table[] = {
      {"rtn", {false, false, false}},    {"gptq", {false, false, true}},      {"awq", {false, true, false}},
      {"awq+gptq", {false, true, true}}, {"sq+rtn", {true, false, false}},    {"sq+gptq", {true, false, true}},
      {"sq+awq", {true, true, false}},   {"sq+awq+gptq", {true, true, true}},
  };
  for (const auto& e : table)
    if (e.name == m) return e.flags;
  throw error("unknown method '" + std::string(m) + "' (expected rtn, gptq, awq, awq+gptq, sq+rtn, sq+gptq, sq+awq or sq+awq+gptq)");
}

struct model_quant_options {
  std::string method = "rtn";
  std::string act_format;  // "" = fp32 activations
  float alpha = 0.5f;      // SmoothQuant migration strength
  double damp = 0.01;      // GPTQ percdamp
  bool act_order = false;  // GPTQ act-order (block-aware: blocks stay contiguous)
  // AWQ: q/k/v and gate/up scales judged on the attention / MLP block output (llm-awq's
  // module2inspect) rather than on the linears' own outputs, over the first awq_search_windows
  // calibration windows (0 = all; the block loss costs a block forward per candidate ratio); the
  // linear-output losses (o, down) sample as many tokens. The clip search samples 512 tokens.
  bool awq_block_loss = true;
  std::size_t awq_search_windows = 16;
  quant_options quant = {};
  std::size_t seq = 256;
  unsigned threads = 0;
  std::function<void(const std::string&)> progress;  // one line per step (stderr in the CLI)
};

template <format_type F>
struct quantized_model {
  std::vector<std::pair<std::string, packed_matrix<F>>> linears;  // tensor prefix -> packed weight
  double seconds = 0.0;
};

// Activation fake-quant as the forward pass wants it (in place on an Eigen block).
inline act_quant_fn make_act_quant_fn(const std::string& format, quant_options opt = {}) {
  activation_quant aq = activation_quant_by_name(format, opt);
  if (!aq) return {};
  return [aq](Eigen::Ref<RowMajorMatrixXf> x) {
    matrix_view<float> v(x.data(), static_cast<std::size_t>(x.rows()), static_cast<std::size_t>(x.cols()),
                         static_cast<std::ptrdiff_t>(x.outerStride()));
    aq.apply(v, v);
  };
}

namespace detail::pipeline {

namespace model = detail::model;

struct stop_forward {};  // thrown by a capture hook: the rest of the layer is not needed

// The input of `group` in `layer` for the calibration batch `hidden` (not modified).
inline RowMajorMatrixXf capture(const model_weights& w, std::size_t layer, const RowMajorMatrixXf& hidden,
                                linear_group group, std::size_t seq, const act_quant_fn& act, unsigned threads,
                                model::workspace& ws, RowMajorMatrixXf& scratch) {
  RowMajorMatrixXf x;
  scratch = hidden;
  forward_hooks h;
  h.act_quant = act;
  h.on_linear_input = [&](std::size_t, linear_group g, const RowMajorMatrixXf& in) {
    if (g != group) return;
    x = in;
    throw stop_forward{};
  };
  try {
    model::layer_forward_impl(w, layer, scratch, seq, h, resolve_threads(threads), ws);
  } catch (const stop_forward&) {
  }
  return x;
}

// One decoder layer run group by group, so each linear group's input is computed once, from the
// sublayers in front of it as they are when it is asked for (true-sequential: already quantized).
// The whole walk costs one layer forward, the same operations as layer_forward in the same order,
// so `hidden` ends exactly as layer_forward(hidden) with the final weights would leave it.
class layer_stages {
 public:
  layer_stages(const model_weights& w, std::size_t layer, RowMajorMatrixXf& hidden, std::size_t seq, act_quant_fn act,
               unsigned threads, model::workspace& ws)
      : w_(w), li_(layer), hidden_(hidden), seq_(seq), act_(std::move(act)), threads_(threads), ws_(ws) {
    model::check_batch(w, layer, hidden, seq);
  }

  // Input of group g (act-quantized when activations are); groups come in the order qkv, o, gate_up, down.
  const RowMajorMatrixXf& input(linear_group g) {
    namespace dm = detail::model;
    if (static_cast<int>(g) != next_)
      throw error("layer_stages: group " + std::string(linear_group_name(g)) + " asked out of order");
    ++next_;
    const decoder_layer_weights& L = w_.layers[li_];
    const float eps = static_cast<float>(w_.config.rms_norm_eps);
    const std::size_t T = static_cast<std::size_t>(hidden_.rows());
    RowMajorMatrixXf* x = nullptr;
    switch (g) {
      case linear_group::qkv:
        ws_.normed.resize(hidden_.rows(), hidden_.cols());
        dm::parallel_slices(T, threads_, [&](std::size_t b, std::size_t e, std::size_t) {
          dm::rms_norm_rows(hidden_, L.input_layernorm, eps, ws_.normed, b, e);
        });
        x = &ws_.normed;
        break;
      case linear_group::o:
        dm::attention_heads(w_.config, L.q_proj, L.k_proj, L.v_proj, ws_.normed, seq_, threads_, ws_);
        x = &ws_.attn;
        break;
      case linear_group::gate_up:
        dm::parallel_slices(T, threads_, [&](std::size_t b, std::size_t e, std::size_t) {
          dm::linear_rows(ws_.attn, L.o_proj, hidden_, b, e, true);  // residual
          dm::rms_norm_rows(hidden_, L.post_attention_layernorm, eps, ws_.normed, b, e);
        });
        x = &ws_.normed;
        break;
      case linear_group::down:
        dm::mlp_hidden(L.gate_proj, L.up_proj, ws_.normed, threads_, ws_);
        x = &ws_.gate;
        break;
    }
    if (act_) act_(*x);
    return *x;
  }

  // Adds the down projection: hidden becomes the layer's output.
  void finish() {
    if (next_ != 4) throw error("layer_stages: finish() before the down projection's input was taken");
    const decoder_layer_weights& L = w_.layers[li_];
    detail::model::parallel_slices(static_cast<std::size_t>(hidden_.rows()), threads_,
                                   [&](std::size_t b, std::size_t e, std::size_t) {
                                     detail::model::linear_rows(ws_.gate, L.down_proj, hidden_, b, e, true);
                                   });
  }

 private:
  const model_weights& w_;
  std::size_t li_;
  RowMajorMatrixXf& hidden_;
  std::size_t seq_;
  act_quant_fn act_;
  unsigned threads_;
  model::workspace& ws_;
  int next_ = 0;
};

inline matrix_view<const float> cview(const RowMajorMatrixXf& m) {
  return {m.data(), static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
}
inline matrix_view<float> mview(RowMajorMatrixXf& m) {
  return {m.data(), static_cast<std::size_t>(m.rows()), static_cast<std::size_t>(m.cols())};
}

inline std::span<float> span_of(Eigen::VectorXf& v) { return {v.data(), static_cast<std::size_t>(v.size())}; }

}  // namespace detail::pipeline

// Quantizes every decoder linear of `w` in place (weights become their dequantized values,
// norms and previous linears absorb SmoothQuant/AWQ scales) and returns the packed weights.
// `calib` holds n_windows * opt.seq token ids.
template <format_type F>
quantized_model<F> quantize_model(model_weights& w, std::span<const token_id> calib, const model_quant_options& opt) {
  namespace dp = detail::pipeline;
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const method_flags flags = parse_method(opt.method);
  if (opt.seq == 0 || calib.empty() || calib.size() % opt.seq != 0)
    throw error("quantize_model: " + std::to_string(calib.size()) + " calibration tokens do not form windows of " +
                std::to_string(opt.seq));
  const unsigned threads = resolve_threads(opt.threads);
  const act_quant_fn act = make_act_quant_fn(opt.act_format);
  const activation_quant act_search = activation_quant_by_name(opt.act_format);

  awq_options awq_opt;
  awq_opt.clip = !flags.gptq;  // the reference recipe: scale + clip for RTN, scale only before GPTQ
  awq_opt.act = act_search;
  awq_opt.weight_opt = opt.quant;
  awq_opt.search_tokens = opt.awq_search_windows * opt.seq;  // the linear-output loss samples as many tokens
  smoothquant_options sq_opt;
  sq_opt.alpha = opt.alpha;
  gptq_options g_opt;
  g_opt.quant = opt.quant;
  g_opt.percdamp = opt.damp;
  g_opt.order = opt.act_order ? act_order::blockwise : act_order::none;
  g_opt.rtn_fallback = true;  // a degenerate Hessian degrades to RTN for that linear, not the whole run
  g_opt.threads = static_cast<int>(threads);

  quantized_model<F> out;
  // Plain RTN needs no calibration activations: skip the forward passes.
  const bool calibrate = flags.gptq || flags.awq || flags.smoothquant;
  RowMajorMatrixXf hidden = calibrate ? embed(w, calib) : RowMajorMatrixXf();
  detail::model::workspace ws;  // reused by every layer: no page faults on fresh buffers per step
  RowMajorMatrixXf scratch;
  const std::size_t n_layers = w.layers.size();
  auto log = [&](std::size_t layer, const std::string& what) {
    if (!opt.progress) return;
    const double el = std::chrono::duration<double>(clock::now() - t0).count();
    const double eta = layer == 0 ? 0.0 : el / static_cast<double>(layer) * static_cast<double>(n_layers - layer);
    char buf[256];
    std::snprintf(buf, sizeof buf, "layer %zu/%zu %-28s elapsed %6.1fs  eta %6.1fs", layer + 1, n_layers, what.c_str(), el,
                  eta);
    opt.progress(buf);
  };

  for (std::size_t li = 0; li < n_layers; ++li) {
    decoder_layer_weights& L = w.layers[li];
    // 1. Scaling on the fp32 layer.
    if (flags.smoothquant || flags.awq) {
      auto scale_group = [&](linear_group g, std::vector<linear_weights*> lins, Eigen::VectorXf* norm,
                             linear_weights* prev) {
        RowMajorMatrixXf x = dp::capture(w, li, hidden, g, opt.seq, {}, threads, ws, scratch);
        auto views = [&] {
          std::vector<matrix_view<const float>> v;
          for (auto* l : lins) v.push_back(dp::cview(l->weight));
          return v;
        };
        if (flags.smoothquant && norm) {
          log(li, std::string("smoothquant ") + std::string(linear_group_name(g)));
          const auto v = views();
          const smoothquant_result s = smoothquant_search<F>(dp::cview(x), v, sq_opt);
          fold_into_norm(dp::span_of(*norm), {}, s.scales);
          for (auto* l : lins) scale_columns(dp::mview(l->weight), s.scales);
          divide_columns(dp::mview(x), s.scales);
        }
        if (!flags.awq) return;
        if (prev && !can_fold_linear_into_linear(dp::cview(prev->weight), dp::cview(lins[0]->weight))) return;  // GQA
        log(li, std::string("awq ") + std::string(linear_group_name(g)));
        const auto v = views();
        // llm-awq's loss: q/k/v scales on the attention block's output, gate/up on the MLP's
        // (o_proj / down_proj in full precision), o and down on their own outputs.
        // The block loss runs on the first awq_search_windows windows (whole windows: attention is causal).
        const bool use_block = opt.awq_block_loss && (g == linear_group::qkv || g == linear_group::gate_up);
        const std::size_t all_windows = static_cast<std::size_t>(x.rows()) / opt.seq;
        const std::size_t nsw = opt.awq_search_windows == 0 ? all_windows : std::min(opt.awq_search_windows, all_windows);
        const RowMajorMatrixXf xs = use_block ? RowMajorMatrixXf(x.topRows(static_cast<Eigen::Index>(nsw * opt.seq)))
                                              : RowMajorMatrixXf();
        auto block = [&](std::span<const matrix_view<const float>> cand, std::span<const float> s) {
          std::vector<linear_weights> c(cand.size());
          for (std::size_t i = 0; i < cand.size(); ++i) {
            using strided = Eigen::Map<const RowMajorMatrixXf, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
            c[i].weight = strided(cand[i].data, static_cast<Eigen::Index>(cand[i].rows), static_cast<Eigen::Index>(cand[i].cols),
                                  Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(cand[i].row_stride, cand[i].col_stride));
            c[i].bias = lins[i]->bias;
          }
          const RowMajorMatrixXf* in = &xs;
          RowMajorMatrixXf xq;
          if (act && !s.empty()) {  // the folded model runs Qa(X / s) against W s
            xq = xs;
            divide_columns(dp::mview(xq), s);
            act(xq);
            scale_columns(dp::mview(xq), s);
            in = &xq;
          }
          if (g == linear_group::qkv) return attention_block_output(w.config, c[0], c[1], c[2], L.o_proj, *in, opt.seq, threads);
          return mlp_block_output(c[0], c[1], L.down_proj, *in, threads);
        };
        // Scales only here: the clip search runs once every fold of the layer is done (below).
        awq_options so = awq_opt;
        so.clip = false;
        awq_group_result r = use_block ? awq_transform<F>(dp::cview(x), v, block, so) : awq_transform<F>(dp::cview(x), v, so);
        for (std::size_t i = 0; i < lins.size(); ++i) lins[i]->weight = std::move(r.weights[i]);
        if (norm) {
          fold_into_norm(dp::span_of(*norm), {}, r.scale.scales);
        } else {
          std::span<float> bias = prev->has_bias() ? dp::span_of(prev->bias) : std::span<float>{};
          fold_into_previous_linear(dp::mview(prev->weight), bias, r.scale.scales);
        }
      };
      // llm-awq clips every linear but q/k (their product makes clipping unsafe).
      scale_group(linear_group::qkv, {&L.q_proj, &L.k_proj, &L.v_proj}, &L.input_layernorm, nullptr);
      scale_group(linear_group::o, {&L.o_proj}, nullptr, &L.v_proj);
      scale_group(linear_group::gate_up, {&L.gate_proj, &L.up_proj}, &L.post_attention_layernorm, nullptr);
      scale_group(linear_group::down, {&L.down_proj}, nullptr, &L.up_proj);
      // Clip search (AWQ for RTN) on the final scaled weights, as llm-awq runs auto_clip_block after
      // apply_scale: a later fold rescales earlier linears' rows (o's s into v_proj, down's into
      // up_proj), which would move the block exponents a clip found before it was chosen for.
      // All thresholds come from the unclipped layer's inputs, then all are applied.
      if (flags.awq && awq_opt.clip) {
        log(li, "awq clip");
        scratch = hidden;
        dp::layer_stages st(w, li, scratch, opt.seq, {}, threads, ws);
        std::vector<std::pair<linear_weights*, awq_clip_result>> clips;
        for (linear_group g : {linear_group::qkv, linear_group::o, linear_group::gate_up, linear_group::down}) {
          const RowMajorMatrixXf& x = st.input(g);
          for (std::string_view name : linear_group_members(g)) {
            if (name == "q_proj" || name == "k_proj") continue;  // llm-awq: the QK product makes clipping unsafe
            linear_weights& lin = L.linear(name);
            clips.emplace_back(&lin, awq_search_clip<F>(dp::cview(lin.weight), dp::cview(x), awq_opt));
          }
        }
        for (auto& [lin, c] : clips) apply_clip(dp::mview(lin->weight), c);
      }
    }
    // 2. True-sequential quantization; with GPTQ the layer runs group by group, each group's
    //    input coming from the sublayers already quantized in front of it.
    std::optional<dp::layer_stages> stages;
    if (flags.gptq) stages.emplace(w, li, hidden, opt.seq, act, threads, ws);
    for (linear_group g : {linear_group::qkv, linear_group::o, linear_group::gate_up, linear_group::down}) {
      log(li, std::string(flags.gptq ? "gptq " : "rtn ") + std::string(linear_group_name(g)));
      std::optional<hessian_accumulator> H;
      if (flags.gptq) {
        const RowMajorMatrixXf& x = stages->input(g);
        hessian_options ho;
        ho.threads = static_cast<int>(threads);
        ho.name = "layer " + std::to_string(li) + " " + std::string(linear_group_name(g));
        H.emplace(static_cast<std::size_t>(x.cols()), ho);
        H->add(dp::cview(x));
      }
      for (std::string_view name : linear_group_members(g)) {
        linear_weights& lin = L.linear(name);
        const std::string prefix = linear_tensor_prefix(li, name);
        if (flags.gptq) {
          auto r = gptq<F>(dp::cview(lin.weight), H->matrix(), g_opt);
          std::copy(r.dequantized.begin(), r.dequantized.end(), lin.weight.data());
          out.linears.emplace_back(prefix, std::move(r.packed));
        } else {
          packed_matrix<F> q = quantize<F>(dp::cview(lin.weight), opt.quant);
          dequantize(q, dp::mview(lin.weight));
          out.linears.emplace_back(prefix, std::move(q));
        }
      }
    }
    // 3. The next layer's inputs come from the quantized layer.
    if (!calibrate) continue;
    log(li, "forward");
    if (flags.gptq) {
      stages->finish();
    } else {
      forward_hooks h;
      h.act_quant = act;
      detail::model::layer_forward_impl(w, li, hidden, opt.seq, h, threads, ws);
    }
  }
  out.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return out;
}

}  // namespace mxq
