// fp32 reference forward pass of a Llama/Qwen2 decoder on batches of independent windows.
//
// Hidden states are one row-major [tokens, hidden] matrix holding n_windows windows of seq_len
// tokens each; every window restarts RoPE positions at 0 and attends only inside itself.
//
// One layer walker (layer_walker) is the whole decoder layer: input(group) computes the input of a
// linear group from the sublayers in front of it, with the weights as they are when it is asked
// for, and finish() adds the down projection. layer_forward, the calibration capture and the
// true-sequential quantization stages all run through it, so they cannot drift apart.
//
// Determinism: every product runs on fixed chunks of forward_chunk_rows tokens (threads only share
// the chunks out), attention per window, with Eigen's blocking pinned (detail/eigen_blocking.hpp):
// the hidden states are bit-identical for any thread count.
#pragma once
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <Eigen/Core>

#include "../config.hpp"
#include "../detail/eigen_blocking.hpp"
#include "../matrix_view.hpp"
#include "../numeric/half.hpp"
#include "linear.hpp"
#include "parallel.hpp"
#include "rope.hpp"
#include "weights.hpp"

namespace mxq::llm {

using token_id = std::uint32_t;

// Tokens per product in the forward pass (a window at the usual seq 256): fixed, so the rounding of
// every row is the same for any thread count.
inline constexpr std::size_t forward_chunk_rows = 256;

// Fake-quantizes (quantize + dequantize in place) a linear's input, rows = tokens. It receives the
// whole input of one group and may be called concurrently for different batches (perplexity runs
// batches in parallel), so it must be thread-safe.
using act_quant_fn = std::function<void(Eigen::Ref<RowMajorMatrixXf>)>;

// Sees the input of a linear group exactly as the linears get it (after act_quant, if any).
using linear_input_fn = std::function<void(std::size_t layer, linear_group group, const RowMajorMatrixXf& input)>;

// Computes y = x W^T (x: [tokens, in] rows of one chunk, y: [tokens, out]; no bias, the forward
// pass adds it) for linear `l` of `layer` in place of the dense weights, e.g. with the packed MX
// GEMM; returns false to use the dense weights. Called concurrently for different token chunks and
// batches, so it must be thread-safe.
using linear_fn = std::function<bool(std::size_t layer, linear l, matrix_view<const float> x, matrix_view<float> y)>;

struct forward_hooks {
  linear_input_fn on_linear_input;  // optional observer
  act_quant_fn act_quant;           // optional; applied to every decoder linear input (not embeddings / lm_head)
  linear_fn linear;                 // optional; decoder linears only (not lm_head)
};

}  // namespace mxq::llm

namespace mxq::detail::model {
using namespace ::mxq::llm;

// Scratch matrices reused across layers and batches (resize is free when the size is unchanged).
struct workspace {
  RowMajorMatrixXf normed, q, k, v, attn, gate, up;
  Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rope_cos, rope_sin;  // [seq, head_dim/2]
  std::size_t rope_seq = 0;
  std::vector<float> rope_inv_freq;  // what rope_cos/sin were made from
};

inline const decoder_layer_weights& layer_of(const model_weights& w, std::size_t layer) {
  if (layer >= w.layers.size())
    throw error("layer_forward: layer " + std::to_string(layer) + " out of range (model has " +
                std::to_string(w.layers.size()) + ")");
  return w.layers[layer];
}

inline void check_batch(const model_config& c, const RowMajorMatrixXf& hidden, std::size_t seq) {
  if (static_cast<std::size_t>(hidden.cols()) != c.hidden_size)
    throw error("layer_forward: hidden has " + std::to_string(hidden.cols()) + " columns, model hidden_size is " +
                std::to_string(c.hidden_size));
  if (seq == 0 || static_cast<std::size_t>(hidden.rows()) % seq != 0)
    throw error("layer_forward: " + std::to_string(hidden.rows()) + " tokens are not a whole number of windows of " +
                std::to_string(seq));
  check_attention_window(c, seq, "layer_forward");
}

// cos/sin of position * inv_freq (rope.hpp: transformers' frequencies for the config's RoPE
// type), angles in float32 like transformers.
inline void prepare_rope(workspace& ws, std::size_t seq, const model_config& c) {
  std::vector<float> inv_freq = rope_inv_freq(c);
  if (ws.rope_seq == seq && ws.rope_inv_freq == inv_freq) return;
  const std::size_t half = inv_freq.size();
  ws.rope_cos.resize(static_cast<Eigen::Index>(seq), static_cast<Eigen::Index>(half));
  ws.rope_sin.resize(static_cast<Eigen::Index>(seq), static_cast<Eigen::Index>(half));
  for (std::size_t i = 0; i < half; ++i) {
    for (std::size_t p = 0; p < seq; ++p) {
      const float angle = static_cast<float>(p) * inv_freq[i];
      ws.rope_cos(static_cast<Eigen::Index>(p), static_cast<Eigen::Index>(i)) = std::cos(angle);
      ws.rope_sin(static_cast<Eigen::Index>(p), static_cast<Eigen::Index>(i)) = std::sin(angle);
    }
  }
  ws.rope_seq = seq;
  ws.rope_inv_freq = std::move(inv_freq);
}

// Qwen3's q_norm / k_norm: RMSNorm over each head's head_dim values, rows [b, e), in place (the
// arithmetic of rms_norm_rows).
inline void head_rms_norm(RowMajorMatrixXf& x, std::size_t heads, std::size_t dim, const Eigen::VectorXf& weight,
                          float eps, std::size_t b, std::size_t e) {
  const float inv_n = 1.0f / static_cast<float>(dim);
  for (std::size_t t = b; t < e; ++t) {
    float* row = x.row(static_cast<Eigen::Index>(t)).data();
    for (std::size_t h = 0; h < heads; ++h) {
      Eigen::Map<Eigen::VectorXf> v(row + h * dim, static_cast<Eigen::Index>(dim));
      const float scale = 1.0f / std::sqrt(v.squaredNorm() * inv_n + eps);
      v = ((v.array() * scale) * weight.array()).matrix();
    }
  }
}

// The per-head norms a config needs, present and of head_dim values (`what` names the caller).
inline void check_qk_norms(const model_config& c, const Eigen::VectorXf& q_norm, const Eigen::VectorXf& k_norm,
                           const std::string& what) {
  const std::size_t want = c.qk_norm ? c.head_dim : 0;
  if (static_cast<std::size_t>(q_norm.size()) != want || static_cast<std::size_t>(k_norm.size()) != want)
    throw error(what + ": q_norm/k_norm have " + std::to_string(q_norm.size()) + "/" + std::to_string(k_norm.size()) +
                " values, the " + c.model_type + " config needs " + std::to_string(want));
}

// Rotates (x1, x2) halves of every head of rows [b, e): x1' = x1 c - x2 s, x2' = x2 c + x1 s.
inline void apply_rope(RowMajorMatrixXf& x, std::size_t heads, std::size_t dim, std::size_t seq, std::size_t b,
                       std::size_t e, const workspace& ws) {
  const Eigen::Index half = static_cast<Eigen::Index>(dim / 2);
  Eigen::ArrayXf tmp(half);
  for (std::size_t t = b; t < e; ++t) {
    const Eigen::Index pos = static_cast<Eigen::Index>(t % seq);
    const auto c = ws.rope_cos.row(pos).transpose();
    const auto s = ws.rope_sin.row(pos).transpose();
    float* row = x.row(static_cast<Eigen::Index>(t)).data();
    for (std::size_t h = 0; h < heads; ++h) {
      Eigen::Map<Eigen::ArrayXf> x1(row + h * dim, half), x2(row + h * dim + half, half);
      tmp = x1 * c - x2 * s;
      x2 = x2 * c + x1 * s;
      x1 = tmp;
    }
  }
}

// out[b:e] = RMSNorm(x[b:e]) * weight, like HF: x * rsqrt(mean(x^2) + eps) * weight.
inline void rms_norm_rows(const RowMajorMatrixXf& x, const Eigen::VectorXf& weight, float eps, RowMajorMatrixXf& out,
                          std::size_t b, std::size_t e) {
  const float inv_n = 1.0f / static_cast<float>(x.cols());
  for (std::size_t t = b; t < e; ++t) {
    const auto r = x.row(static_cast<Eigen::Index>(t));
    const float scale = 1.0f / std::sqrt(r.squaredNorm() * inv_n + eps);
    out.row(static_cast<Eigen::Index>(t)) = (r.array() * scale) * weight.transpose().array();
  }
}

// y[b:e] (=|+=) x[b:e] W^T + bias.
inline void linear_rows(const RowMajorMatrixXf& x, const linear_weights& L, RowMajorMatrixXf& y, std::size_t b,
                        std::size_t e, bool accumulate) {
  const Eigen::Index rb = static_cast<Eigen::Index>(b), n = static_cast<Eigen::Index>(e - b);
  auto yb = y.middleRows(rb, n);
  if (accumulate)
    yb.noalias() += x.middleRows(rb, n) * L.weight.transpose();
  else
    yb.noalias() = x.middleRows(rb, n) * L.weight.transpose();
  if (L.has_bias()) yb.rowwise() += L.bias.transpose();
}

// linear_rows through hooks->linear when it takes the linear (the bias is added here either way).
inline void linear_rows_hooked(const forward_hooks* hooks, std::size_t layer, linear id, const RowMajorMatrixXf& x,
                               const linear_weights& L, RowMajorMatrixXf& y, std::size_t b, std::size_t e,
                               bool accumulate) {
  if (!hooks || !hooks->linear) return linear_rows(x, L, y, b, e, accumulate);
  const Eigen::Index rb = static_cast<Eigen::Index>(b), n = static_cast<Eigen::Index>(e - b);
  const std::size_t in = static_cast<std::size_t>(x.cols()), out = static_cast<std::size_t>(y.cols());
  const matrix_view<const float> xv(x.data() + b * in, e - b, in);
  RowMajorMatrixXf t;
  if (accumulate) t.resize(n, y.cols());
  const matrix_view<float> yv(accumulate ? t.data() : y.data() + b * out, e - b, out);
  if (!hooks->linear(layer, id, xv, yv)) return linear_rows(x, L, y, b, e, accumulate);
  if (accumulate) y.middleRows(rb, n) += t;
  if (L.has_bias()) y.middleRows(rb, n).rowwise() += L.bias.transpose();
}

// Fixed token chunks over threads (see forward_chunk_rows).
template <class Fn>
void token_chunks(std::size_t T, unsigned threads, Fn&& fn) {
  parallel_chunks(T, forward_chunk_rows, threads, fn);
}

// Causal softmax attention of windows [wb, we) with GQA; q is already scaled by 1/sqrt(head_dim).
inline void attention_windows(const workspace& ws, RowMajorMatrixXf& out, const model_config& c, std::size_t seq,
                              std::size_t wb, std::size_t we) {
  const Eigen::Index S = static_cast<Eigen::Index>(seq), D = static_cast<Eigen::Index>(c.head_dim);
  const std::size_t group = c.num_attention_heads / c.num_key_value_heads;
  RowMajorMatrixXf scores(S, S);
  for (std::size_t w = wb; w < we; ++w) {
    const Eigen::Index r0 = static_cast<Eigen::Index>(w) * S;
    for (std::size_t h = 0; h < c.num_attention_heads; ++h) {
      const Eigen::Index qc = static_cast<Eigen::Index>(h) * D, kc = static_cast<Eigen::Index>(h / group) * D;
      scores.noalias() = ws.q.block(r0, qc, S, D) * ws.k.block(r0, kc, S, D).transpose();
      for (Eigen::Index i = 0; i < S; ++i) {
        auto r = scores.row(i).head(i + 1).array();
        const float m = r.maxCoeff();
        r = (r - m).exp();
        r *= 1.0f / r.sum();
        scores.row(i).tail(S - i - 1).setZero();
      }
      out.block(r0, qc, S, D).noalias() = scores.triangularView<Eigen::Lower>() * ws.v.block(r0, kc, S, D);
    }
  }
}

// ws.attn = causal multi-head attention over windows of `seq` of the q/k/v projections of x
// (RoPE applied, q pre-scaled); the o_proj input. x is not modified.
inline void attention_heads(const model_config& c, const linear_weights& qp, const linear_weights& kp,
                            const linear_weights& vp, const Eigen::VectorXf& q_norm, const Eigen::VectorXf& k_norm,
                            const RowMajorMatrixXf& x, std::size_t seq, unsigned threads, workspace& ws,
                            const forward_hooks* hooks = nullptr, std::size_t layer = 0) {
  const std::size_t T = static_cast<std::size_t>(x.rows());
  const Eigen::Index Ti = x.rows();
  const float q_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ws.q.resize(Ti, static_cast<Eigen::Index>(c.q_dim()));
  ws.k.resize(Ti, static_cast<Eigen::Index>(c.kv_dim()));
  ws.v.resize(Ti, static_cast<Eigen::Index>(c.kv_dim()));
  ws.attn.resize(Ti, static_cast<Eigen::Index>(c.q_dim()));
  prepare_rope(ws, seq, c);
  const float eps = static_cast<float>(c.rms_norm_eps);
  token_chunks(T, threads, [&](std::size_t b, std::size_t e) {
    linear_rows_hooked(hooks, layer, linear::q_proj, x, qp, ws.q, b, e, false);
    linear_rows_hooked(hooks, layer, linear::k_proj, x, kp, ws.k, b, e, false);
    linear_rows_hooked(hooks, layer, linear::v_proj, x, vp, ws.v, b, e, false);
    if (c.qk_norm) {
      head_rms_norm(ws.q, c.num_attention_heads, c.head_dim, q_norm, eps, b, e);
      head_rms_norm(ws.k, c.num_key_value_heads, c.head_dim, k_norm, eps, b, e);
    }
    apply_rope(ws.q, c.num_attention_heads, c.head_dim, seq, b, e, ws);
    apply_rope(ws.k, c.num_key_value_heads, c.head_dim, seq, b, e, ws);
    ws.q.middleRows(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(e - b)) *= q_scale;
  });
  parallel_slices(T / seq, threads, [&](std::size_t b, std::size_t e, std::size_t) {
    attention_windows(ws, ws.attn, c, seq, b, e);
  });
}

// ws.gate = silu(x gate^T) * (x up^T): the down_proj input. x is not modified.
inline void mlp_hidden(const linear_weights& gp, const linear_weights& up, const RowMajorMatrixXf& x, unsigned threads,
                       workspace& ws, const forward_hooks* hooks = nullptr, std::size_t layer = 0) {
  const std::size_t T = static_cast<std::size_t>(x.rows());
  ws.gate.resize(x.rows(), gp.weight.rows());
  ws.up.resize(x.rows(), up.weight.rows());
  token_chunks(T, threads, [&](std::size_t b, std::size_t e) {
    linear_rows_hooked(hooks, layer, linear::gate_proj, x, gp, ws.gate, b, e, false);
    linear_rows_hooked(hooks, layer, linear::up_proj, x, up, ws.up, b, e, false);
    auto g = ws.gate.middleRows(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(e - b)).array();
    g = g / (1.0f + (-g).exp()) * ws.up.middleRows(static_cast<Eigen::Index>(b), static_cast<Eigen::Index>(e - b)).array();
  });
}

}  // namespace mxq::detail::model

namespace mxq::llm {

// One decoder layer, group by group, on hidden = [n_windows * seq, hidden_size] (updated in place by
// the attention residual when the gate/up input is asked for, and by finish()).
//
//   layer_walker lw(w, layer, hidden, seq, hooks, threads);
//   const auto& x = lw.input(linear_group::qkv);   // then o, gate_up, down, in that order
//   ... quantize q/k/v in w using x ...            // later inputs see the new weights
//   lw.finish();                                   // hidden = the layer's output
//
// input(g) returns the group's input as the linears get it (after hooks.act_quant, and shown to
// hooks.on_linear_input); the reference is valid until the next call. Groups may not be skipped,
// and finish() runs any not asked for. The walk costs exactly one layer forward.
class layer_walker {
 public:
  layer_walker(const model_weights& w, std::size_t layer, RowMajorMatrixXf& hidden, std::size_t seq,
               const forward_hooks& hooks = {}, unsigned threads = 1, detail::model::workspace* ws = nullptr)
      : layer_walker(w.config, detail::model::layer_of(w, layer), layer, hidden, seq, hooks, threads, ws) {}
  // One layer on its own (a streamed checkpoint holds one decoder layer at a time); `layer` is its
  // index, which the hooks see.
  layer_walker(const model_config& c, const decoder_layer_weights& L, std::size_t layer, RowMajorMatrixXf& hidden,
               std::size_t seq, const forward_hooks& hooks = {}, unsigned threads = 1,
               detail::model::workspace* ws = nullptr)
      : c_(c), L_(L), li_(layer), hidden_(hidden), seq_(seq), hooks_(hooks), threads_(resolve_threads(threads)),
        ws_(ws ? *ws : own_.emplace()) {
    detail::model::check_batch(c, hidden, seq);
    detail::model::check_qk_norms(c, L.q_norm, L.k_norm, "layer_forward: layer " + std::to_string(layer));
    pin_eigen_blocking();
  }
  layer_walker(const layer_walker&) = delete;
  layer_walker& operator=(const layer_walker&) = delete;

  // The group input() returns next (all_groups order); nullopt once all four were taken.
  std::optional<linear_group> next() const {
    return next_ < all_groups.size() ? std::optional<linear_group>(all_groups[next_]) : std::nullopt;
  }

  const RowMajorMatrixXf& input(linear_group g) {
    namespace dm = detail::model;
    if (finished_ || next_ >= all_groups.size() || all_groups[next_] != g)
      throw error("layer_walker: the input of group " + std::string(name(g)) + " of layer " + std::to_string(li_) +
                  " was asked out of order (groups run qkv, o, gate_up, down)");
    ++next_;
    const decoder_layer_weights& L = L_;
    const float eps = static_cast<float>(c_.rms_norm_eps);
    const std::size_t T = static_cast<std::size_t>(hidden_.rows());
    const forward_hooks* h = &hooks_;
    RowMajorMatrixXf* x = nullptr;
    switch (g) {  // the four stages of the layer, each the continuation of the previous one
      case linear_group::qkv:
        ws_.normed.resize(hidden_.rows(), hidden_.cols());
        dm::token_chunks(T, threads_, [&](std::size_t b, std::size_t e) {
          dm::rms_norm_rows(hidden_, L.input_layernorm, eps, ws_.normed, b, e);
        });
        x = &ws_.normed;
        break;
      case linear_group::o:
        dm::attention_heads(c_, L.q_proj, L.k_proj, L.v_proj, L.q_norm, L.k_norm, ws_.normed, seq_, threads_, ws_, h, li_);
        x = &ws_.attn;
        break;
      case linear_group::gate_up:
        dm::token_chunks(T, threads_, [&](std::size_t b, std::size_t e) {
          dm::linear_rows_hooked(h, li_, linear::o_proj, ws_.attn, L.o_proj, hidden_, b, e, true);  // residual
          dm::rms_norm_rows(hidden_, L.post_attention_layernorm, eps, ws_.normed, b, e);
        });
        x = &ws_.normed;
        break;
      case linear_group::down:
        dm::mlp_hidden(L.gate_proj, L.up_proj, ws_.normed, threads_, ws_, h, li_);
        x = &ws_.gate;
        break;
    }
    if (hooks_.act_quant) hooks_.act_quant(*x);
    if (hooks_.on_linear_input) hooks_.on_linear_input(li_, g, *x);
    return *x;
  }

  // Runs the groups not asked for yet, then adds the down projection: hidden becomes the layer's output.
  void finish() {
    if (finished_) return;
    while (const auto g = next()) input(*g);
    const decoder_layer_weights& L = L_;
    detail::model::token_chunks(static_cast<std::size_t>(hidden_.rows()), threads_, [&](std::size_t b, std::size_t e) {
      detail::model::linear_rows_hooked(&hooks_, li_, linear::down_proj, ws_.gate, L.down_proj, hidden_, b, e, true);
    });
    finished_ = true;
  }

 private:
  const model_config& c_;
  const decoder_layer_weights& L_;
  std::size_t li_;
  RowMajorMatrixXf& hidden_;
  std::size_t seq_;
  const forward_hooks& hooks_;
  unsigned threads_;
  std::optional<detail::model::workspace> own_;
  detail::model::workspace& ws_;
  std::size_t next_ = 0;
  bool finished_ = false;
};

// Embedding lookup for a batch of windows: [tokens.size(), hidden]. Ids >= vocab_size throw.
inline RowMajorMatrixXf embed(const model_weights& w, std::span<const token_id> tokens) {
  RowMajorMatrixXf h(static_cast<Eigen::Index>(tokens.size()), w.embed_tokens.cols());
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] >= static_cast<token_id>(w.embed_tokens.rows()))
      throw error("token id " + std::to_string(tokens[t]) + " at position " + std::to_string(t) +
                  " is outside the vocabulary (" + std::to_string(w.embed_tokens.rows()) + ")");
    h.row(static_cast<Eigen::Index>(t)) = w.embed_tokens.row(static_cast<Eigen::Index>(tokens[t]));
  }
  return h;
}

// Runs decoder layer `layer` in place on hidden = [n_windows * seq_len, hidden_size]. `threads`
// splits the work of this one call (hooks still see whole matrices, called from this thread).
inline void layer_forward(const model_weights& w, std::size_t layer, RowMajorMatrixXf& hidden, std::size_t seq_len,
                          const forward_hooks& hooks = {}, unsigned threads = 1) {
  layer_walker(w, layer, hidden, seq_len, hooks, threads).finish();
}

// The attention block's output o_proj(attention(q, k, v of x)) for x = the layer's normed input
// (tokens = whole windows of seq_len), without the residual: what AWQ's qkv scale search compares
// (llm-awq inspects self_attn). The linears are the caller's, so candidates can be tried.
// Qwen3 (model_config::qk_norm) needs the layer's q_norm and k_norm.
inline RowMajorMatrixXf attention_block_output(const model_config& c, const linear_weights& q, const linear_weights& k,
                                               const linear_weights& v, const linear_weights& o,
                                               const RowMajorMatrixXf& x, std::size_t seq_len, unsigned threads = 1,
                                               const Eigen::VectorXf& q_norm = Eigen::VectorXf(),
                                               const Eigen::VectorXf& k_norm = Eigen::VectorXf()) {
  if (seq_len == 0 || static_cast<std::size_t>(x.rows()) % seq_len != 0)
    throw error("attention_block_output: " + std::to_string(x.rows()) + " tokens are not a whole number of windows of " +
                std::to_string(seq_len));
  if (static_cast<std::size_t>(x.cols()) != q.in_features() || q.out_features() != c.q_dim() ||
      k.out_features() != c.kv_dim() || v.out_features() != c.kv_dim() || o.in_features() != c.q_dim())
    throw error("attention_block_output: input/projection shapes do not match the model config");
  check_attention_window(c, seq_len, "attention_block_output");
  detail::model::check_qk_norms(c, q_norm, k_norm, "attention_block_output");
  pin_eigen_blocking();
  detail::model::workspace ws;
  const unsigned t = resolve_threads(threads);
  detail::model::attention_heads(c, q, k, v, q_norm, k_norm, x, seq_len, t, ws);
  RowMajorMatrixXf out(x.rows(), o.weight.rows());
  detail::model::token_chunks(static_cast<std::size_t>(x.rows()), t, [&](std::size_t b, std::size_t e) {
    detail::model::linear_rows(ws.attn, o, out, b, e, false);
  });
  return out;
}

// The MLP block's output down(silu(gate x) * up x), without the residual (llm-awq inspects mlp for
// the gate/up scale search).
inline RowMajorMatrixXf mlp_block_output(const linear_weights& gate, const linear_weights& up, const linear_weights& down,
                                         const RowMajorMatrixXf& x, unsigned threads = 1) {
  if (static_cast<std::size_t>(x.cols()) != gate.in_features() || up.in_features() != gate.in_features() ||
      up.out_features() != gate.out_features() || down.in_features() != gate.out_features())
    throw error("mlp_block_output: input/projection shapes do not match");
  pin_eigen_blocking();
  detail::model::workspace ws;
  const unsigned t = resolve_threads(threads);
  detail::model::mlp_hidden(gate, up, x, t, ws);
  RowMajorMatrixXf out(x.rows(), down.weight.rows());
  detail::model::token_chunks(static_cast<std::size_t>(x.rows()), t, [&](std::size_t b, std::size_t e) {
    detail::model::linear_rows(ws.gate, down, out, b, e, false);
  });
  return out;
}

// Final RMSNorm, in place.
inline void final_norm(const model_weights& w, RowMajorMatrixXf& hidden) {
  detail::model::rms_norm_rows(hidden, w.norm, static_cast<float>(w.config.rms_norm_eps), hidden, 0,
                               static_cast<std::size_t>(hidden.rows()));
}

// logits = normed_hidden * lm_head^T: [rows, vocab].
inline RowMajorMatrixXf lm_head_logits(const model_weights& w, const Eigen::Ref<const RowMajorMatrixXf>& normed) {
  RowMajorMatrixXf logits(normed.rows(), w.lm_head.rows());
  logits.noalias() = normed * w.lm_head.transpose();
  return logits;
}

// Whole model: tokens (n_windows * seq_len ids) -> logits [tokens, vocab].
inline RowMajorMatrixXf forward_logits(const model_weights& w, std::span<const token_id> tokens, std::size_t seq_len,
                                       const forward_hooks& hooks = {}, unsigned threads = 1) {
  if (seq_len == 0 || tokens.size() % seq_len != 0)
    throw error("forward_logits: " + std::to_string(tokens.size()) + " tokens are not a whole number of windows of " +
                std::to_string(seq_len));
  RowMajorMatrixXf h = embed(w, tokens);
  detail::model::workspace ws;
  for (std::size_t l = 0; l < w.layers.size(); ++l)
    layer_walker(w, l, h, seq_len, hooks, threads, &ws).finish();
  final_norm(w, h);
  return lm_head_logits(w, h);
}

}  // namespace mxq::llm
