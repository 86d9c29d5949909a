// A model directory (an mxq quantized checkpoint, or an original Hugging Face one) as one GGUF file
// llama.cpp loads (facts: shared docs checkpoint-formats.md §1 and the llama.cpp snapshot):
//
//   mxq::llm::export_gguf("Llama-2-7b-mxfp4-gptq", "model.gguf");
//
// - Packed linears become the ggml block type of their format, exactly (io/gguf_blocks.hpp);
//   unquantized ones keep their stored dtype (F32/F16/BF16). Norms and biases are F32; the
//   embeddings (and lm_head, absent when tied) keep their stored dtype or become Q8_0.
// - llama.cpp's "llama" architecture rotates adjacent pairs (LLAMA_ROPE_TYPE_NORM), so Q and K
//   rows (and biases) are permuted as its converter does: GGUF row h*d + 2i + j = HF row
//   h*d + j*d/2 + i. Whole rows move, so packed rows move with their scales, exactly. Qwen2/Qwen3
//   rotate halves like Hugging Face (NEOX) and are written as they are.
// - Llama 3.x RoPE scaling is llama.cpp's rope_freqs tensor (divisors of each frequency).
// - Streamed: one tensor in memory at a time. Everything that cannot be exported exactly (a
//   format with no ggml type, an unrepresentable block, an activation-quantized recipe, a
//   combination llama.cpp would run differently) is refused, naming it, before the file exists.
// - The vocabulary from tokenizer.json when the directory has one llama.cpp tokenizes the same
//   way (gguf_vocab.hpp); otherwise none, and llama.cpp runs token ids.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../format/registry.hpp"
#include "../io/gguf.hpp"
#include "../io/gguf_blocks.hpp"
#include "../io/packed_io.hpp"
#include "../numeric/half.hpp"
#include "config.hpp"
#include "gguf_vocab.hpp"
#include "linear.hpp"
#include "rope.hpp"
#include "weights.hpp"

namespace mxq::llm {

struct gguf_export_options {
  // token_embd / output: their stored dtype (F32, F16, BF16; others as F32) when unset, or Q8_0.
  std::optional<ggml_type> embeddings;
  // Unquantized linears (and the embeddings, unless `embeddings` says otherwise): their stored
  // dtype when unset, or F32 (llama.cpp multiplies BF16/F16 weights with activations rounded to
  // that type; F32 keeps fp32 math).
  std::optional<ggml_type> dense;
  std::string name;  // general.name; the model directory's name when empty
};

struct gguf_export_report {
  std::string architecture;
  std::size_t tensors = 0, bytes = 0;
  std::map<std::string, std::size_t> linears_by_type;  // "MXFP4" -> count
  std::string tokenizer;  // "gpt2 (gpt-2), N merges", or "none (why)"
};

// The formats whose packed weights export exactly (gguf_block_traits<F>::exportable).
template <class Formats = predefined_formats>
std::string gguf_exportable_formats() {
  std::string s;
  for_each_format(
      [&](auto tag) {
        using F = typename decltype(tag)::type;
        if constexpr (gguf_block_traits<F>::exportable) s += (s.empty() ? "" : ", ") + std::string(format_traits<F>::name);
      },
      Formats{});
  return s;
}

}  // namespace mxq::llm

namespace mxq::detail::gguf_export {
using namespace ::mxq::llm;

// How llama.cpp runs each supported model_type (src/llama-model.cpp, src/models/*.cpp).
struct arch_rules {
  std::string_view model_type, gguf_arch;
  bool permute_qk;     // LLAMA_ROPE_TYPE_NORM: adjacent pairs
  bool rope_freqs;     // loads rope_freqs.weight (Llama 3.x scaling)
  bool ffn_scale;      // applies blk.N.ffn_*.scale (NVFP4 tensor scales); Qwen2's graph drops them
  bool square_attn;    // attn_q / attn_output must be [n_embd, n_embd] (Qwen2)
  bool linear_biases;  // o_proj / MLP biases are loaded (Qwen2's are not)
};
inline constexpr std::array<arch_rules, 4> arch_table{{
    {"llama", "llama", true, true, true, false, true},
    {"mistral", "llama", true, true, true, false, true},  // llama.cpp runs Mistral as "llama"
    {"qwen2", "qwen2", false, false, false, true, false},
    {"qwen3", "qwen3", false, false, true, false, true},
}};

inline const arch_rules& rules_for(const model_config& c, const std::filesystem::path& dir) {
  for (const auto& a : arch_table)
    if (a.model_type == c.model_type) return a;
  io::fail(dir, "model_type '" + c.model_type + "' has no GGUF export");
}

// llama.cpp's tensor base names (src/llama-arch.cpp), by decoder linear.
inline constexpr std::array<std::string_view, 7> linear_names{"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                              "ffn_gate", "ffn_up", "ffn_down"};
inline std::string blk(std::size_t i, std::string_view what) { return "blk." + std::to_string(i) + "." + std::string(what); }

// Source row of GGUF row r of a Q or K projection with `heads` heads of `d` rows.
inline std::size_t permuted_row(std::size_t r, std::size_t d) {
  const std::size_t h = r / d, k = r % d, i = k / 2, j = k % 2;
  return h * d + j * (d / 2) + i;
}

inline std::optional<ggml_type> ggml_of_dtype(st_dtype t) {
  switch (t) {
    case st_dtype::F32: return ggml_type::f32;
    case st_dtype::F16: return ggml_type::f16;
    case st_dtype::BF16: return ggml_type::bf16;
    default: return std::nullopt;
  }
}

inline std::vector<std::byte> f32_bytes(std::span<const float> v) {
  std::vector<std::byte> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Rows of fp32 values as Q8_0 blocks, like ggml's quantize_row_q8_0_ref: d = amax / 127 (fp16),
// q = round(x / d).
inline void q8_0_row(const float* x, std::size_t n, std::uint8_t* out) {
  for (std::size_t b = 0; b < n / 32; ++b, out += 34) {
    float amax = 0.0f;
    for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const std::uint16_t h = mxq::detail::float_to_half_bits(d);
    out[0] = static_cast<std::uint8_t>(h & 0xFF), out[1] = static_cast<std::uint8_t>(h >> 8);
    for (std::size_t j = 0; j < 32; ++j)
      out[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::round(x[b * 32 + j] * id)));
  }
}

// One tensor of the output: its GGUF name and how its bytes are made (when its turn comes).
struct job {
  std::string name;
  std::function<std::vector<std::byte>()> make;
};

}  // namespace mxq::detail::gguf_export

namespace mxq::llm {

template <class Formats = predefined_formats>
gguf_export_report export_gguf(const std::filesystem::path& model_dir, const std::filesystem::path& out,
                               const gguf_export_options& opt = {}) {
  namespace ge = mxq::detail::gguf_export;
  using mxq::detail::io::fail;
  if (!std::filesystem::is_directory(model_dir))
    fail(model_dir, "not a model directory (expected config.json and model.safetensors inside)");
  const model_config cfg = load_model_config(model_dir);
  const checkpoint ck(model_dir);
  const ge::arch_rules& arch = ge::rules_for(cfg, model_dir);
  const std::string A(arch.gguf_arch);
  const std::size_t H = cfg.hidden_size, V = cfg.vocab_size, D = cfg.head_dim;
  gguf_export_report report;
  report.architecture = A;

  // ---- what llama.cpp cannot run the way mxq quantized it: refused before anything is written
  const auto& meta = ck.shards().front().metadata();
  if (auto it = meta.find("mxq.rotation"); it != meta.end() && !it->second.empty())
    fail(model_dir, "was quantized with its linear inputs rotated (" + it->second +
                        "), which llama.cpp does not apply at run time; export a recipe without --rotate");
  if (auto it = meta.find("mxq.act_format"); it != meta.end() && !it->second.empty())
    fail(model_dir, "was quantized for " + it->second +
                        " activations, which llama.cpp does not apply (it quantizes activations to Q8_0 itself); "
                        "export a weight-only recipe");
  if (arch.square_attn && cfg.q_dim() != H)
    fail(model_dir, "llama.cpp's " + A + " needs num_attention_heads * head_dim == hidden_size (" +
                        std::to_string(cfg.q_dim()) + " != " + std::to_string(H) + ")");
  if (cfg.rope.type == rope_type::llama3 && !arch.rope_freqs)
    fail(model_dir, "llama.cpp's " + A + " has no rope_freqs for llama3 RoPE scaling");
  if (!arch.linear_biases && (cfg.o_proj_bias || cfg.mlp_bias))
    fail(model_dir, "llama.cpp's " + A + " loads no o_proj / MLP biases");

  gguf_writer w;
  std::vector<ge::job> jobs;
  auto add = [&](std::string name, ggml_type t, std::vector<std::uint64_t> ne, std::function<std::vector<std::byte>()> make) {
    w.declare(name, t, std::move(ne));
    jobs.push_back({std::move(name), std::move(make)});
  };
  // An F32 vector of n values from a source tensor (norms, biases), rows permuted by `perm`.
  auto vector_f32 = [&](const std::string& src, std::size_t n, std::function<std::size_t(std::size_t)> perm = {}) {
    mxq::detail::model::check_shape(ck, src, {n});
    return [&ck, src, n, perm] {
      std::vector<float> v = ck.read_f32(src), p(n);
      for (std::size_t r = 0; r < n; ++r) p[r] = v[perm ? perm(r) : r];
      ck.release(src);
      return ge::f32_bytes(p);
    };
  };
  // Embedding-like [rows, H] tensors: the stored dtype, or Q8_0.
  auto table = [&](const std::string& src, const std::string& dst) {
    mxq::detail::model::check_shape(ck, src, {V, H});
    const st_dtype dt = ck.info(src).dtype;
    const ggml_type t = opt.embeddings ? *opt.embeddings
                        : opt.dense    ? *opt.dense
                                       : ge::ggml_of_dtype(dt).value_or(ggml_type::f32);
    if (t != ggml_type::q8_0 && t != ggml_type::f32 && ge::ggml_of_dtype(dt) != t)
      throw error("export_gguf: embeddings can be written in their stored dtype, F32 or Q8_0, not " +
                  std::string(ggml_info(t).name));
    add(dst, t, {H, V}, [&ck, src, t, dt, H, V] {
      std::vector<std::byte> b;
      if (ge::ggml_of_dtype(dt) == t) {
        const auto s = ck.bytes(src);
        b.assign(s.begin(), s.end());
      } else {
        const std::vector<float> x = ck.read_f32(src);
        if (t == ggml_type::f32) return ge::f32_bytes(x);
        b.resize(V * (H / 32) * 34);
        for (std::size_t r = 0; r < V; ++r)
          ge::q8_0_row(x.data() + r * H, H, reinterpret_cast<std::uint8_t*>(b.data()) + r * (H / 32) * 34);
      }
      ck.release(src);
      return b;
    });
  };

  table("model.embed_tokens.weight", "token_embd.weight");
  for (std::size_t li = 0; li < cfg.num_hidden_layers; ++li) {
    const std::string p = "model.layers." + std::to_string(li);
    add(ge::blk(li, "attn_norm.weight"), ggml_type::f32, {H}, vector_f32(p + ".input_layernorm.weight", H));
    for (linear l : all_linears) {
      const auto [rows, cols] = expected_linear_shape(cfg, l);
      const std::string base = tensor_prefix(li, l), name = ge::blk(li, ge::linear_names[static_cast<std::size_t>(l)]);
      const bool permute = arch.permute_qk && (l == linear::q_proj || l == linear::k_proj);
      std::function<std::size_t(std::size_t)> perm;
      if (permute) perm = [D](std::size_t r) { return ge::permuted_row(r, D); };
      const bool ffn = info(l).block == sublayer::mlp;
      if (has_packed(ck, base)) {
        const std::string fmt = packed_format_name(ck, base);
        if (!is_known_format(fmt)) fail(ck.path(), "packed weight '" + base + "': unknown format '" + fmt + "'");
        visit_format(
            fmt,
            [&](auto tag) {
              using F = typename decltype(tag)::type;
              if constexpr (!gguf_block_traits<F>::exportable) {
                fail(model_dir, "format " + fmt + " (" + base + ") has no exact GGUF type; exportable: " +
                                    gguf_exportable_formats<Formats>());
              } else {
                using T = gguf_block_traits<F>;
                const ggml_type_info& ti = ggml_info(T::type);
                if (cols % ti.block_elements != 0)
                  fail(model_dir, base + ": " + std::to_string(cols) + " inputs are not whole " + std::string(ti.name) +
                                      " blocks of " + std::to_string(ti.block_elements));
                {  // every block's scale exportable, checked before anything is written
                  const auto sc = ck.bytes(base + ".weight_scales");
                  const std::size_t bpr = packed_matrix<F>::geometry_for(cols).blocks_per_row;
                  for (std::size_t k = 0; k < sc.size(); ++k)
                    if (const std::string why = T::scale_problem(static_cast<std::uint8_t>(sc[k])); !why.empty())
                      fail(model_dir, "tensor '" + name + ".weight' row " + std::to_string(k / bpr) + " block " +
                                          std::to_string(k % bpr) + ": " + why);
                  ck.release(base + ".weight_scales");
                }
                if constexpr (F::scale::has_tensor_scale) {  // NVFP4's second level: blk.N.<name>.scale
                  float s = 1.0f;
                  std::memcpy(&s, ck.bytes(base + ".weight_tensor_scale").data(), sizeof s);
                  if (s != 1.0f) {
                    if (ffn && !arch.ffn_scale)
                      fail(model_dir, base + ": llama.cpp's " + A + " ignores FFN tensor scales (this one is " +
                                          std::to_string(s) + ")");
                    if (ffn && cfg.mlp_bias)
                      fail(model_dir, base + ": llama.cpp refuses an NVFP4 tensor scale on a biased FFN linear");
                    add(name + ".scale", ggml_type::f32, {1}, [s] { return ge::f32_bytes(std::span<const float>(&s, 1)); });
                  }
                }
                const std::size_t row_bytes = cols / ti.block_elements * ti.block_bytes;
                add(name + ".weight", T::type, {cols, rows}, [&ck, base, name, rows, row_bytes, perm] {
                  const packed_matrix<F> q = read_packed<F>(ck, base);
                  std::vector<std::byte> b(rows * row_bytes);
                  for (std::size_t r = 0; r < rows; ++r) T::row(q, perm ? perm(r) : r, b.data() + r * row_bytes, name + ".weight");
                  for (const char* part : {".weight_blocks", ".weight_scales", ".weight_zeros", ".weight_tensor_scale"})
                    if (ck.contains(base + part)) ck.release(base + part);
                  return b;
                });
                ++report.linears_by_type[std::string(ti.name)];
              }
            },
            Formats{});
      } else {
        const std::string src = base + ".weight";
        mxq::detail::model::check_shape(ck, src, {rows, cols});
        const st_dtype dt = ck.info(src).dtype;
        const ggml_type t = opt.dense ? *opt.dense : ge::ggml_of_dtype(dt).value_or(ggml_type::f32);
        if (t != ggml_type::f32 && ge::ggml_of_dtype(dt) != t)
          throw error("export_gguf: unquantized linears can be written in their stored dtype or F32, not " +
                      std::string(ggml_info(t).name));
        add(name + ".weight", t, {cols, rows}, [&ck, src, t, dt, rows, cols, perm] {
          const std::size_t eb = ggml_info(t).block_bytes, rb = cols * eb;
          std::vector<std::byte> b(rows * rb);
          std::vector<float> f;
          const std::byte* s = nullptr;
          if (ge::ggml_of_dtype(dt) == t) {
            s = ck.bytes(src).data();
          } else {
            f = ck.read_f32(src);
            s = reinterpret_cast<const std::byte*>(f.data());
          }
          for (std::size_t r = 0; r < rows; ++r) std::memcpy(b.data() + r * rb, s + (perm ? perm(r) : r) * rb, rb);
          ck.release(src);
          return b;
        });
        ++report.linears_by_type[std::string(ggml_info(t).name)];
      }
      if (ck.contains(base + ".bias")) {
        if (!arch.linear_biases && (l == linear::o_proj || ffn))
          fail(model_dir, base + ".bias: llama.cpp's " + A + " loads no such bias");
        add(name + ".bias", ggml_type::f32, {rows}, vector_f32(base + ".bias", rows, perm));
      }
    }
    if (cfg.qk_norm) {
      add(ge::blk(li, "attn_q_norm.weight"), ggml_type::f32, {D}, vector_f32(p + ".self_attn.q_norm.weight", D));
      add(ge::blk(li, "attn_k_norm.weight"), ggml_type::f32, {D}, vector_f32(p + ".self_attn.k_norm.weight", D));
    }
    add(ge::blk(li, "ffn_norm.weight"), ggml_type::f32, {H}, vector_f32(p + ".post_attention_layernorm.weight", H));
  }
  add("output_norm.weight", ggml_type::f32, {H}, vector_f32("model.norm.weight", H));
  if (ck.contains("lm_head.weight")) table("lm_head.weight", "output.weight");
  else if (!cfg.tie_word_embeddings) fail(ck.path(), "missing tensor 'lm_head.weight' (and tie_word_embeddings is false)");
  if (cfg.rope.type == rope_type::llama3) {
    // llama.cpp divides each frequency by its factor: default / scaled, in float32.
    model_config plain = cfg;
    plain.rope = {};
    plain.rope_inv_freq_bf16 = false;
    model_config scaled = cfg;
    scaled.rope_inv_freq_bf16 = false;
    const std::vector<float> f0 = rope_inv_freq(plain), f1 = rope_inv_freq(scaled);
    std::vector<float> ff(f0.size());
    for (std::size_t i = 0; i < ff.size(); ++i) ff[i] = f0[i] / f1[i];
    add("rope_freqs.weight", ggml_type::f32, {ff.size()}, [ff] { return ge::f32_bytes(ff); });
  }

  // ---- metadata: every key with the exact type llama.cpp's loader reads it as
  auto u32 = [](std::size_t v) { return static_cast<std::uint32_t>(v); };
  w.set("general.architecture", A);
  // The directory's name, also when the path ends in a separator ("dir/" has an empty filename()).
  const std::filesystem::path abs = std::filesystem::absolute(model_dir).lexically_normal();
  const std::string dir_name = (abs.has_filename() ? abs : abs.parent_path()).filename().string();
  w.set("general.name", opt.name.empty() ? dir_name : opt.name);
  // Mistral's sliding window is not run by llama.cpp's llama graph: the context it was trained to
  // say is the span within which full attention is the same computation.
  std::size_t ctx = cfg.max_position_embeddings ? cfg.max_position_embeddings : 2048;
  if (cfg.sliding_window) ctx = std::min(ctx, cfg.sliding_window);
  w.set(A + ".context_length", u32(ctx));
  w.set(A + ".embedding_length", u32(H));
  w.set(A + ".block_count", u32(cfg.num_hidden_layers));
  w.set(A + ".feed_forward_length", u32(cfg.intermediate_size));
  w.set(A + ".attention.head_count", u32(cfg.num_attention_heads));
  w.set(A + ".attention.head_count_kv", u32(cfg.num_key_value_heads));
  w.set(A + ".attention.key_length", u32(D));
  w.set(A + ".attention.value_length", u32(D));
  w.set(A + ".attention.layer_norm_rms_epsilon", static_cast<float>(cfg.rms_norm_eps));
  w.set(A + ".rope.freq_base", static_cast<float>(cfg.rope_theta));
  w.set(A + ".rope.dimension_count", u32(D));
  if (cfg.rope.type == rope_type::linear) {
    w.set(A + ".rope.scaling.type", std::string("linear"));
    w.set(A + ".rope.scaling.factor", static_cast<float>(cfg.rope.factor));
  }
  w.set(A + ".vocab_size", u32(V));
  if (const hf_vocab voc = read_hf_vocab(model_dir, V); voc.why.empty()) {
    w.set("tokenizer.ggml.model", voc.model);
    w.set("tokenizer.ggml.pre", voc.pre);
    w.set_array("tokenizer.ggml.tokens", voc.tokens);
    w.set_array("tokenizer.ggml.token_type", voc.types);
    w.set_array("tokenizer.ggml.merges", voc.merges);
    if (voc.bos) w.set("tokenizer.ggml.bos_token_id", *voc.bos);
    if (voc.eos) w.set("tokenizer.ggml.eos_token_id", *voc.eos);
    if (voc.pad) w.set("tokenizer.ggml.padding_token_id", *voc.pad);
    if (voc.add_bos) w.set("tokenizer.ggml.add_bos_token", *voc.add_bos);
    report.tokenizer = "gpt2 (" + voc.pre + "), " + std::to_string(voc.merges.size()) + " merges";
  } else {
    // No vocabulary: llama.cpp makes vocab_size dummy tokens and runs token ids (llama-vocab.cpp).
    w.set("tokenizer.ggml.model", std::string("none"));
    report.tokenizer = "none (" + voc.why + ")";
  }
  for (const char* k : {"mxq.format", "mxq.method", "mxq.calib_windows", "mxq.version"})
    if (auto it = meta.find(k); it != meta.end()) w.set(k, it->second);

  w.open(out);
  for (auto& j : jobs) {
    const std::vector<std::byte> b = j.make();
    w.put(j.name, b);
    report.bytes += b.size();
  }
  w.commit();
  report.tensors = jobs.size();
  return report;
}

}  // namespace mxq::llm
