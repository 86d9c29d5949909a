// Writes a synthetic Hugging Face Llama checkpoint of a real model's shape (random bf16 weights
// with a few heavy input channels per linear, as real activations/weights have), sharded like the
// Hub's, for the streaming benchmarks (benchmarks/stream_checkpoint.sh). Deterministic: the same
// arguments give the same bytes.
//
//   mxq_synth_checkpoint --out DIR [--shape llama2-7b|tiny] [--layers N] [--max-shard-size-bytes B]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <mxq/llm/checkpoint.hpp>

namespace {

struct shape {
  const char* name;
  std::size_t hidden, intermediate, layers, heads, kv_heads, vocab;
};
constexpr shape shapes[] = {
    {"llama2-7b", 4096, 11008, 32, 32, 32, 32000},
    {"tiny", 256, 704, 2, 4, 4, 4096},
};

// splitmix64: fast, seedable, the same on every platform.
struct rng {
  std::uint64_t s;
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Approximately N(0, 1): the sum of four uniforms, rescaled (cheap; tails do not matter here).
  float normal() {
    const std::uint64_t r = next();
    float acc = 0.0f;
    for (int k = 0; k < 4; ++k) acc += static_cast<float>((r >> (16 * k)) & 0xFFFF) * (1.0f / 65536.0f);
    return (acc - 2.0f) * 1.7320508f;
  }
};

std::vector<std::uint16_t> random_bf16(std::size_t rows, std::size_t cols, std::uint64_t seed, float sd, bool heavy) {
  rng g{seed};
  std::vector<std::uint16_t> out(rows * cols);
  std::vector<float> col_scale(cols, 1.0f);
  if (heavy)
    for (int k = 0; k < 8; ++k) col_scale[g.next() % cols] = 20.0f;  // a few heavy input channels
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c)
      out[r * cols + c] = mxq::detail::float_to_bf16_bits(g.normal() * sd * col_scale[c]);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string out, shape_name = "llama2-7b";
    long layers = -1;
    std::size_t max_shard = 10'000'000'000;  // Llama-2-7b-hf on the Hub: two shards of at most 10GB
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw mxq::error("option " + a + " needs a value");
        return argv[++i];
      };
      if (a == "--out") out = value();
      else if (a == "--shape") shape_name = value();
      else if (a == "--layers") layers = std::stol(value());
      else if (a == "--max-shard-size-bytes") max_shard = std::stoull(value());
      else throw mxq::error("unknown option '" + a + "'");
    }
    if (out.empty()) throw mxq::error("usage: mxq_synth_checkpoint --out DIR [--shape llama2-7b|tiny] [--layers N]");
    const shape* sh = nullptr;
    for (const auto& s : shapes)
      if (shape_name == s.name) sh = &s;
    if (!sh) throw mxq::error("unknown --shape '" + shape_name + "' (llama2-7b, tiny)");
    const std::size_t L = layers > 0 ? static_cast<std::size_t>(layers) : sh->layers;
    const std::size_t H = sh->hidden, I = sh->intermediate, V = sh->vocab, D = H / sh->heads, KV = sh->kv_heads * D;

    namespace fs = std::filesystem;
    fs::create_directories(out);
    nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", H},
                          {"intermediate_size", I}, {"num_hidden_layers", L}, {"num_attention_heads", sh->heads},
                          {"num_key_value_heads", sh->kv_heads}, {"vocab_size", V}, {"rms_norm_eps", 1e-5},
                          {"rope_theta", 10000.0}, {"max_position_embeddings", 4096}, {"hidden_act", "silu"},
                          {"tie_word_embeddings", false}, {"torch_dtype", "bfloat16"}, {"attention_bias", false},
                          {"mlp_bias", false}};
    std::ofstream(fs::path(out) / "config.json") << cfg.dump(2) << "\n";

    struct tensor {
      std::string name;
      std::size_t rows, cols;  // cols == 0: a norm vector [rows]
      bool heavy;
    };
    std::vector<tensor> ts = {{"model.embed_tokens.weight", V, H, false}};
    for (std::size_t l = 0; l < L; ++l) {
      const std::string p = "model.layers." + std::to_string(l);
      ts.push_back({p + ".input_layernorm.weight", H, 0, false});
      for (const char* n : {"q_proj", "k_proj", "v_proj"})
        ts.push_back({p + ".self_attn." + n + ".weight", std::string(n) == "q_proj" ? H : KV, H, true});
      ts.push_back({p + ".self_attn.o_proj.weight", H, H, true});
      ts.push_back({p + ".post_attention_layernorm.weight", H, 0, false});
      ts.push_back({p + ".mlp.gate_proj.weight", I, H, true});
      ts.push_back({p + ".mlp.up_proj.weight", I, H, true});
      ts.push_back({p + ".mlp.down_proj.weight", H, I, true});
    }
    ts.push_back({"model.norm.weight", H, 0, false});
    ts.push_back({"lm_head.weight", V, H, false});

    mxq::llm::sharded_checkpoint_writer w(out, max_shard);
    w.set_metadata("format", "pt");
    for (const auto& t : ts)
      w.declare(t.name, mxq::st_dtype::BF16, t.cols ? std::vector<std::size_t>{t.rows, t.cols} : std::vector<std::size_t>{t.rows});
    w.open();
    std::uint64_t seed = 1;
    for (const auto& t : ts) {
      std::vector<std::uint16_t> v;
      if (t.cols == 0) {
        v.assign(t.rows, mxq::detail::float_to_bf16_bits(1.0f));
      } else {
        v = random_bf16(t.rows, t.cols, seed++, 0.02f, t.heavy);
      }
      w.put(t.name, std::as_bytes(std::span<const std::uint16_t>(v)));
    }
    w.commit();
    std::printf("tensors: %zu\nbytes: %zu\nshards: %zu\nwritten: %s\n", ts.size(), w.total_bytes(), w.shard_count(), out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mxq_synth_checkpoint: %s\n", e.what());
    return 1;
  }
}
