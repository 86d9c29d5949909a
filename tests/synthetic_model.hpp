// Tiny synthetic Hugging Face checkpoints of each supported architecture (config.json +
// safetensors, optionally in Hub-style shards with an index), and a naive double-precision forward
// pass written from the transformers modeling code and the published RoPE formulas: the
// independent reference the architecture tests compare mxq's forward pass with. Included after
// <catch2/catch.hpp> and support.hpp.
#pragma once
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mxq/io/safetensors.hpp>
#include <mxq/llm/checkpoint.hpp>
#include <mxq/llm/quantize_model.hpp>
#include <mxq/llm/weights.hpp>
#include <mxq/recipe.hpp>

namespace mxq::test {

struct synthetic_spec {
  std::string model_type = "llama";
  std::size_t H = 32, I = 64, L = 2, heads = 4, kv = 2, hd = 8, V = 64;
  bool tied = false;      // no lm_head.weight, tie_word_embeddings true
  bool qkv_bias = false;  // q/k/v biases stored
  bool o_bias = false;    // o_proj bias stored
  bool qk_norm = false;   // self_attn.q_norm / k_norm stored
  nlohmann::json extra = nlohmann::json::object();  // more config.json keys (rope_scaling, sliding_window, ...)
  std::size_t shards = 1;  // > 1: model-0000k-of-0000n.safetensors + model.safetensors.index.json
  unsigned seed = 7;
};

// The tensors of a spec, by name, in a fixed order (the same seed gives the same values).
inline std::vector<std::pair<std::string, std::pair<std::vector<std::size_t>, std::vector<float>>>> synthetic_tensors(
    const synthetic_spec& s) {
  std::mt19937 rng(s.seed);
  std::normal_distribution<float> nd(0.0f, 0.4f);
  std::vector<std::pair<std::string, std::pair<std::vector<std::size_t>, std::vector<float>>>> out;
  auto add = [&](const std::string& name, std::vector<std::size_t> shape, float center = 0.0f) {
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) x = center + nd(rng);
    out.push_back({name, {std::move(shape), std::move(v)}});
  };
  add("model.embed_tokens.weight", {s.V, s.H});
  for (std::size_t l = 0; l < s.L; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    add(p + ".input_layernorm.weight", {s.H}, 1.0f);
    add(p + ".post_attention_layernorm.weight", {s.H}, 1.0f);
    add(p + ".self_attn.q_proj.weight", {s.heads * s.hd, s.H});
    if (s.qkv_bias) add(p + ".self_attn.q_proj.bias", {s.heads * s.hd});
    add(p + ".self_attn.k_proj.weight", {s.kv * s.hd, s.H});
    if (s.qkv_bias) add(p + ".self_attn.k_proj.bias", {s.kv * s.hd});
    add(p + ".self_attn.v_proj.weight", {s.kv * s.hd, s.H});
    if (s.qkv_bias) add(p + ".self_attn.v_proj.bias", {s.kv * s.hd});
    add(p + ".self_attn.o_proj.weight", {s.H, s.heads * s.hd});
    if (s.o_bias) add(p + ".self_attn.o_proj.bias", {s.H});
    if (s.qk_norm) {
      add(p + ".self_attn.q_norm.weight", {s.hd}, 1.0f);
      add(p + ".self_attn.k_norm.weight", {s.hd}, 1.0f);
    }
    add(p + ".mlp.gate_proj.weight", {s.I, s.H});
    add(p + ".mlp.up_proj.weight", {s.I, s.H});
    add(p + ".mlp.down_proj.weight", {s.H, s.I});
  }
  add("model.norm.weight", {s.H}, 1.0f);
  if (!s.tied) {
    auto lm = out.front().second;  // the untied twin of a tied model: the same values in lm_head
    out.push_back({"lm_head.weight", std::move(lm)});
  }
  return out;
}

// Writes DIR/config.json and the bf16 weights.
inline void write_synthetic(const std::filesystem::path& dir, const synthetic_spec& s) {
  std::filesystem::create_directories(dir);
  nlohmann::json c = {{"architectures", {"LlamaForCausalLM"}},
                      {"model_type", s.model_type},
                      {"hidden_size", s.H},
                      {"intermediate_size", s.I},
                      {"num_hidden_layers", s.L},
                      {"num_attention_heads", s.heads},
                      {"num_key_value_heads", s.kv},
                      {"head_dim", s.hd},
                      {"vocab_size", s.V},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"tie_word_embeddings", s.tied},
                      {"hidden_act", "silu"}};
  if (s.o_bias || (s.qkv_bias && s.model_type != "qwen2")) c["attention_bias"] = true;
  for (const auto& [k, v] : s.extra.items()) c[k] = v;
  std::ofstream(dir / "config.json") << c.dump(2);
  const auto tensors = synthetic_tensors(s);
  const std::size_t n = std::max<std::size_t>(s.shards, 1);
  std::vector<safetensors_writer> w(n);
  nlohmann::json map = nlohmann::json::object();
  auto shard_name = [n](std::size_t k) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", k + 1, n);
    return n == 1 ? std::string("model.safetensors") : std::string(buf);
  };
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::size_t k = i * n / tensors.size();  // contiguous runs, like the Hub's shards
    w[k].add_bf16(tensors[i].first, tensors[i].second.first, tensors[i].second.second);
    map[tensors[i].first] = shard_name(k);
  }
  for (std::size_t k = 0; k < n; ++k) {
    w[k].set_metadata("format", "pt");
    w[k].write(dir / shard_name(k));
  }
  if (n > 1) std::ofstream(dir / "model.safetensors.index.json") << nlohmann::json{{"metadata", nlohmann::json::object()}, {"weight_map", map}}.dump(2);
}

// RoPE inverse frequencies from the published formulas, in double: 1 / theta^(2i/d); linear
// interpolation divides by the factor; Llama 3.x keeps wavelengths below L/high_freq_factor,
// divides those above L/low_freq_factor by the factor and interpolates in between with
// s = (L/wavelength - low) / (high - low): (1 - s) f / factor + s f (L: the original context).
inline std::vector<double> formula_inv_freq(const mxq::llm::model_config& c) {
  std::vector<double> f(c.head_dim / 2);
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = std::pow(c.rope_theta, -double(2 * i) / double(c.head_dim));
  const auto& r = c.rope;
  if (r.type == mxq::llm::rope_type::linear)
    for (double& x : f) x /= r.factor;
  if (r.type == mxq::llm::rope_type::llama3)
    for (double& x : f) {
      const double wl = 2 * std::numbers::pi / x, L = r.original_max_position_embeddings;
      if (wl < L / r.high_freq_factor) continue;
      if (wl > L / r.low_freq_factor) {
        x /= r.factor;
        continue;
      }
      const double sm = (L / wl - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      x = (1 - sm) * x / r.factor + sm * x;
    }
  return f;
}

// Naive double-precision forward of one window (the HF modeling code, line by line): logits [S][V].
inline std::vector<std::vector<double>> naive_logits(const mxq::llm::model_weights& w,
                                                    const std::vector<mxq::llm::token_id>& tok) {
  const auto& c = w.config;
  const std::size_t S = tok.size(), H = c.hidden_size, D = c.head_dim, NH = c.num_attention_heads,
                    KV = c.num_key_value_heads;
  using vec = std::vector<double>;
  const std::vector<double> inv_freq = formula_inv_freq(c);
  std::vector<vec> h(S, vec(H));
  for (std::size_t t = 0; t < S; ++t)
    for (std::size_t i = 0; i < H; ++i) h[t][i] = w.embed_tokens(tok[t], i);
  auto rms = [&](const double* x, std::size_t n, const Eigen::VectorXf& g, double* y) {
    double ss = 0;
    for (std::size_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const double r = 1.0 / std::sqrt(ss / double(n) + c.rms_norm_eps);
    for (std::size_t i = 0; i < n; ++i) y[i] = x[i] * r * g[static_cast<Eigen::Index>(i)];
  };
  auto norm = [&](const vec& x, const Eigen::VectorXf& g) {
    vec y(x.size());
    rms(x.data(), x.size(), g, y.data());
    return y;
  };
  auto lin = [&](const mxq::llm::linear_weights& L, const vec& x) {
    vec y(L.out_features());
    for (std::size_t o = 0; o < y.size(); ++o) {
      double a = L.has_bias() ? L.bias[static_cast<Eigen::Index>(o)] : 0.0;
      for (std::size_t i = 0; i < x.size(); ++i) a += double(L.weight(o, i)) * x[i];
      y[o] = a;
    }
    return y;
  };
  auto heads_norm = [&](vec& x, std::size_t heads, const Eigen::VectorXf& g) {  // Qwen3 q_norm / k_norm
    if (g.size() == 0) return;
    for (std::size_t hh = 0; hh < heads; ++hh) rms(&x[hh * D], D, g, &x[hh * D]);
  };
  auto rope = [&](vec& x, std::size_t heads, std::size_t pos) {
    for (std::size_t hh = 0; hh < heads; ++hh)
      for (std::size_t i = 0; i < D / 2; ++i) {
        const double ang = double(pos) * inv_freq[i];
        double& a = x[hh * D + i];
        double& b = x[hh * D + i + D / 2];
        const double na = a * std::cos(ang) - b * std::sin(ang), nb = b * std::cos(ang) + a * std::sin(ang);
        a = na;
        b = nb;
      }
  };
  for (const auto& L : w.layers) {
    std::vector<vec> q(S), k(S), v(S);
    for (std::size_t t = 0; t < S; ++t) {
      const vec x = norm(h[t], L.input_layernorm);
      q[t] = lin(L.q_proj, x);
      k[t] = lin(L.k_proj, x);
      v[t] = lin(L.v_proj, x);
      heads_norm(q[t], NH, L.q_norm);
      heads_norm(k[t], KV, L.k_norm);
      rope(q[t], NH, t);
      rope(k[t], KV, t);
    }
    for (std::size_t t = 0; t < S; ++t) {
      vec att(NH * D, 0.0);
      for (std::size_t hh = 0; hh < NH; ++hh) {
        const std::size_t g = hh / (NH / KV);
        vec sc(t + 1);
        double m = -1e300;
        for (std::size_t j = 0; j <= t; ++j) {
          double d = 0;
          for (std::size_t i = 0; i < D; ++i) d += q[t][hh * D + i] * k[j][g * D + i];
          sc[j] = d / std::sqrt(double(D));
          m = std::max(m, sc[j]);
        }
        double z = 0;
        for (auto& s : sc) z += (s = std::exp(s - m));
        for (std::size_t j = 0; j <= t; ++j)
          for (std::size_t i = 0; i < D; ++i) att[hh * D + i] += sc[j] / z * v[j][g * D + i];
      }
      const vec o = lin(L.o_proj, att);
      for (std::size_t i = 0; i < H; ++i) h[t][i] += o[i];
      const vec x = norm(h[t], L.post_attention_layernorm);
      vec gt = lin(L.gate_proj, x), up = lin(L.up_proj, x);
      for (std::size_t i = 0; i < gt.size(); ++i) gt[i] = gt[i] / (1 + std::exp(-gt[i])) * up[i];
      const vec dn = lin(L.down_proj, gt);
      for (std::size_t i = 0; i < H; ++i) h[t][i] += dn[i];
    }
  }
  std::vector<vec> out(S);
  for (std::size_t t = 0; t < S; ++t) {
    const vec x = norm(h[t], w.norm);
    out[t].resize(c.vocab_size);
    for (std::size_t r = 0; r < c.vocab_size; ++r) {
      double a = 0;
      for (std::size_t i = 0; i < H; ++i) a += double(w.lm_head(r, i)) * x[i];
      out[t][r] = a;
    }
  }
  return out;
}

// Calibration ids for the synthetic models (vocabularies of at least 96): 4 windows of 16.
inline const std::vector<mxq::llm::token_id>& synthetic_calib() {
  static const std::vector<mxq::llm::token_id> t = [] {
    std::vector<mxq::llm::token_id> v(4 * 16);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<mxq::llm::token_id>((i * 11 + 5) % 96);
    return v;
  }();
  return t;
}

// The synthetic model `src` quantized with `rc` (windows of 16 tokens), written to `out` as
// quantize-model writes it.
template <mxq::format_type F>
void quantize_synthetic(const std::filesystem::path& src, const std::filesystem::path& out, mxq::recipe rc) {
  mxq::llm::model_weights w = mxq::llm::load_model(src);
  mxq::llm::model_options mo;
  mo.seq = 16;
  const auto calib = rc.calibrates() ? std::span<const mxq::llm::token_id>(synthetic_calib())
                                     : std::span<const mxq::llm::token_id>();
  const auto q = mxq::llm::quantize_model<F>(w, calib, rc, mo);
  mxq::llm::write_quantized_checkpoint(out, src, w, q,
                                       {{"mxq.method", rc.name()}, {"mxq.act_format", rc.act ? rc.act.name : ""}});
}

}  // namespace mxq::test
