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

struct stop_forward {};  // thrown by a capture hook: the rest of the layer is not needed

// The input of `group` in `layer` for the calibration batch `hidden` (not modified).
inline RowMajorMatrixXf capture(const model_weights& w, std::size_t layer, const RowMajorMatrixXf& hidden,
                                linear_group group, std::size_t seq, const act_quant_fn& act, unsigned threads) {
  RowMajorMatrixXf x, scratch = hidden;
  forward_hooks h;
  h.act_quant = act;
  h.on_linear_input = [&](std::size_t, linear_group g, const RowMajorMatrixXf& in) {
    if (g != group) return;
    x = in;
    throw stop_forward{};
  };
  try {
    layer_forward(w, layer, scratch, seq, h, threads);
  } catch (const stop_forward&) {
  }
  return x;
}

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
  smoothquant_options sq_opt;
  sq_opt.alpha = opt.alpha;
  gptq_options g_opt;
  g_opt.quant = opt.quant;
  g_opt.percdamp = opt.damp;
  g_opt.order = opt.act_order ? act_order::blockwise : act_order::none;
  g_opt.rtn_fallback = true;  // a degenerate Hessian degrades to RTN for that linear, not the whole run
  g_opt.threads = static_cast<int>(threads);

  quantized_model<F> out;
  RowMajorMatrixXf hidden = embed(w, calib);
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
                             linear_weights* prev, std::vector<bool> clip_mask) {
        RowMajorMatrixXf x = dp::capture(w, li, hidden, g, opt.seq, {}, threads);
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
        awq_group_result r = awq_transform<F>(dp::cview(x), v, awq_opt, clip_mask);
        for (std::size_t i = 0; i < lins.size(); ++i) lins[i]->weight = std::move(r.weights[i]);
        if (norm) {
          fold_into_norm(dp::span_of(*norm), {}, r.scale.scales);
        } else {
          std::span<float> bias = prev->has_bias() ? dp::span_of(prev->bias) : std::span<float>{};
          fold_into_previous_linear(dp::mview(prev->weight), bias, r.scale.scales);
        }
      };
      // llm-awq clips every linear but q/k (their product makes clipping unsafe).
      scale_group(linear_group::qkv, {&L.q_proj, &L.k_proj, &L.v_proj}, &L.input_layernorm, nullptr, {false, false, true});
      scale_group(linear_group::o, {&L.o_proj}, nullptr, &L.v_proj, {true});
      scale_group(linear_group::gate_up, {&L.gate_proj, &L.up_proj}, &L.post_attention_layernorm, nullptr, {true, true});
      scale_group(linear_group::down, {&L.down_proj}, nullptr, &L.up_proj, {true});
    }
    // 2. True-sequential quantization.
    for (linear_group g : {linear_group::qkv, linear_group::o, linear_group::gate_up, linear_group::down}) {
      log(li, std::string(flags.gptq ? "gptq " : "rtn ") + std::string(linear_group_name(g)));
      std::optional<hessian_accumulator> H;
      if (flags.gptq) {
        const RowMajorMatrixXf x = dp::capture(w, li, hidden, g, opt.seq, act, threads);
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
    log(li, "forward");
    forward_hooks h;
    h.act_quant = act;
    layer_forward(w, li, hidden, opt.seq, h, threads);
  }
  out.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return out;
}

}  // namespace mxq
