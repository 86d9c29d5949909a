// GGUF export (issue 12): every exported tensor, read back by a reader written from the format
// description (gguf_reader.hpp) and decoded with ggml's block definitions, is exactly what mxq
// dequantizes (equal floats; ggml reads E2M1's -0 as +0) (Q/K rows un-permuted the way llama.cpp's converter permutes them); llama.cpp's
// metadata keys with their exact types; llama3 rope_freqs; and every combination that has no
// exact GGUF form refused by name before a file exists.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mxq/io/gguf.hpp>
#include <mxq/llm/checkpoint.hpp>
#include <mxq/llm/export_gguf.hpp>
#include <mxq/llm/quantize_model.hpp>
#include <mxq/llm/weights.hpp>
#include <mxq/recipe.hpp>

#include "gguf_reader.hpp"
#include "support.hpp"
#include "synthetic_model.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_gguf {

namespace fs = std::filesystem;
using namespace mxq;
using namespace mxq::llm;
using Catch::Matchers::Contains;
namespace gg = mxq::test::gguf;

namespace {

// hidden 64, intermediate 128, head_dim 16: whole NVFP4 (64) blocks along every input.
mxq::test::synthetic_spec spec(const std::string& type) {
  mxq::test::synthetic_spec s;
  s.model_type = type;
  s.H = 64, s.I = 128, s.heads = 4, s.kv = 2, s.hd = 16, s.V = 96;
  if (type == "qwen2") s.qkv_bias = true;
  if (type == "qwen3") s.qk_norm = true;
  return s;
}

template <format_type F>
void quantize_to(const fs::path& src, const fs::path& out, recipe rc) {
  mxq::test::quantize_synthetic<F>(src, out, std::move(rc));
}

// Row r of a GGUF Q/K tensor holds HF row permuted_row(r).
std::size_t hf_row(std::size_t r, std::size_t d) {
  const std::size_t h = r / d, k = r % d;
  return h * d + (k % 2) * (d / 2) + k / 2;
}

// The exported file against the model mxq reads from `dir` (dequantized packed weights).
void check_export(const fs::path& dir, const fs::path& gguf, bool permuted) {
  const model_weights w = load_model(dir);
  const auto& c = w.config;
  const gg::file f = gg::read(gguf);
  CHECK(f.version == 3);
  auto same = [&](const std::string& name, const float* ref, std::size_t rows, std::size_t cols, std::size_t d) {
    INFO(name);
    const gg::tensor& t = f.at(name);
    REQUIRE(t.ne.size() == (rows > 1 ? 2u : 1u));
    CHECK(static_cast<std::size_t>(t.ne[0]) == cols);
    const std::vector<float> y = gg::dequantize(f, t);
    std::size_t bad = 0;
    for (std::size_t r = 0; r < rows; ++r) {
      const std::size_t src = d ? hf_row(r, d) : r;
      for (std::size_t k = 0; k < cols; ++k)
        bad += y[r * cols + k] != ref[src * cols + k];  // == on floats: ggml has no -0 code (E2M1 -0 reads as +0)
    }
    CHECK(bad == 0);
  };
  same("token_embd.weight", w.embed_tokens.data(), c.vocab_size, c.hidden_size, 0);
  same("output_norm.weight", w.norm.data(), 1, c.hidden_size, 0);
  for (std::size_t li = 0; li < c.num_hidden_layers; ++li) {
    const auto& L = w.layers[li];
    const std::string b = "blk." + std::to_string(li) + ".";
    same(b + "attn_norm.weight", L.input_layernorm.data(), 1, c.hidden_size, 0);
    same(b + "ffn_norm.weight", L.post_attention_layernorm.data(), 1, c.hidden_size, 0);
    const char* names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    std::size_t i = 0;
    for (linear l : all_linears) {
      const bool qk = permuted && (l == linear::q_proj || l == linear::k_proj);
      const std::string n = b + names[i++];
      // An NVFP4 tensor scale is a separate tensor that llama.cpp multiplies into the matmul.
      std::vector<float> ref(L[l].weight.data(), L[l].weight.data() + L[l].weight.size());
      if (f.kv.count("mxq.format") && f.kv.at("mxq.format").s == "nvfp4") {
        float s = 1.0f;
        for (const auto& t : f.tensors)
          if (t.name == n + ".scale") s = gg::dequantize(f, t)[0];
        // ggml: E2M1 * UE4M3 exactly, then * scale once (the product mxq's decode rounds once too).
        const gg::tensor& t = f.at(n + ".weight");
        std::vector<float> y = gg::dequantize(f, t);
        std::size_t bad = 0;
        const std::size_t cols = L[l].in_features();
        for (std::size_t r = 0; r < L[l].out_features(); ++r)
          for (std::size_t k = 0; k < cols; ++k)
            bad += y[r * cols + k] * s != ref[(qk ? hf_row(r, c.head_dim) : r) * cols + k];
        INFO(n);
        CHECK(bad == 0);
      } else {
        same(n + ".weight", ref.data(), L[l].out_features(), L[l].in_features(), qk ? c.head_dim : 0);
      }
      if (L[l].has_bias() && !qk) same(n + ".bias", L[l].bias.data(), 1, L[l].out_features(), 0);
      if (L[l].has_bias() && qk) {
        const std::vector<float> y = gg::dequantize(f, f.at(n + ".bias"));
        std::size_t bad = 0;
        for (std::size_t r = 0; r < y.size(); ++r) bad += y[r] != L[l].bias[static_cast<Eigen::Index>(hf_row(r, c.head_dim))];
        CHECK(bad == 0);
      }
    }
    if (c.qk_norm) {
      same(b + "attn_q_norm.weight", L.q_norm.data(), 1, c.head_dim, 0);
      same(b + "attn_k_norm.weight", L.k_norm.data(), 1, c.head_dim, 0);
    }
  }
}

}  // namespace

TEST_CASE("gguf: the writer lays out what a reader written from the spec reads", "[gguf]") {
  const mxq::test::temp_dir tmp("gguf-writer");
  gguf_writer w;
  w.set("general.architecture", std::string("llama"));
  w.set("llama.block_count", std::uint32_t{3});
  w.set("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set("flag", true);
  w.set_array("names", std::vector<std::string>{"a", "bc", ""});
  w.set_array("ids", std::vector<std::int32_t>{1, -2, 3});
  w.declare("a", ggml_type::f32, {3});
  w.declare("b", ggml_type::q8_0, {64, 2});
  CHECK_THROWS_WITH(w.declare("c", ggml_type::mxfp4, {48, 1}), Contains("not a multiple of MXFP4's block of 32"));
  CHECK_THROWS_WITH(w.declare(std::string(64, 'x'), ggml_type::f32, {1}), Contains("1 to 63 bytes"));
  CHECK_THROWS_WITH(w.set("flag", false), Contains("set twice"));
  w.open(tmp / "x.gguf");
  CHECK(!fs::exists(tmp / "x.gguf"));  // a temporary name until whole
  const std::vector<float> a{1.5f, -2.0f, 3.25f};
  std::vector<std::byte> b(2 * 2 * 34, std::byte{0});
  b[0] = std::byte{0x00}, b[1] = std::byte{0x3C};  // d = 1.0 in fp16
  b[2] = std::byte{0x7F};                          // qs[0] = 127
  CHECK_THROWS_WITH(w.put("b", std::span<const std::byte>(b).first(10)), Contains("needs 136 bytes, got 10"));
  w.put("b", b);
  CHECK_THROWS_WITH(w.commit(), Contains("'a' was declared but never written"));
  w.put("a", std::as_bytes(std::span<const float>(a)));
  w.commit();
  const gg::file f = gg::read(tmp / "x.gguf");
  CHECK(f.kv.at("general.architecture").s == "llama");
  CHECK(f.kv.at("llama.block_count").type == 4);  // UINT32
  CHECK(f.kv.at("llama.block_count").u == 3);
  CHECK(f.kv.at("llama.attention.layer_norm_rms_epsilon").type == 6);
  CHECK(f.kv.at("flag").type == 7);
  CHECK(f.kv.at("names").elem == 8);
  CHECK(f.kv.at("names").strings == std::vector<std::string>{"a", "bc", ""});
  CHECK(f.kv.at("ids").count == 3);
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[1].offset == 32);  // 12 bytes padded to 32
  CHECK(gg::dequantize(f, f.at("a")) == a);
  CHECK(gg::dequantize(f, f.at("b"))[0] == 127.0f);
  CHECK(f.data_start % 32 == 0);
}

TEST_CASE("gguf: mxfp4 / mxint4 / mxint8 / nvfp4 exports decode to mxq's values, bit for bit", "[gguf]") {
  const mxq::test::temp_dir tmp("gguf-exact");
  for (const char* arch : {"llama", "qwen2", "qwen3"}) {
    write_synthetic(tmp / arch, spec(arch));
    const bool permuted = std::string(arch) == "llama";
    recipe gptq;
    gptq.gptq = step::gptq{};
    struct kase {
      const char* format;
      std::function<void(const fs::path&)> quantize;
    };
    const fs::path src = tmp / arch;
    const kase cases[] = {
        {"mxfp4", [&](const fs::path& o) { quantize_to<mxfp4>(src, o, gptq); }},
        {"mxint4", [&](const fs::path& o) { quantize_to<mxint4>(src, o, recipe{step::awq{}, step::gptq{}}); }},
        {"mxint8", [&](const fs::path& o) { quantize_to<mxint8>(src, o, recipe{}); }},
        {"nvfp4", [&](const fs::path& o) { quantize_to<nvfp4>(src, o, gptq); }},
    };
    for (const auto& k : cases) {
      INFO(arch << " " << k.format);
      if (std::string(arch) == "qwen2" && std::string(k.format) == "nvfp4") continue;  // refused (test below)
      const fs::path q = tmp / (std::string(arch) + "-" + k.format), out = tmp / (std::string(arch) + "-" + k.format + ".gguf");
      k.quantize(q);
      const gguf_export_report r = export_gguf(q, out);
      CHECK(r.architecture == arch);
      const gg::file f = gg::read(out);
      const std::int32_t want = std::string(k.format) == "mxfp4"    ? 39
                                : std::string(k.format) == "mxint4" ? 2
                                : std::string(k.format) == "mxint8" ? 8
                                                                    : 40;
      CHECK(f.at("blk.1.ffn_down.weight").type == want);
      CHECK(f.at("blk.0.attn_q.weight").ne == std::vector<std::int64_t>{64, 64});  // [in, out]
      CHECK(f.at("token_embd.weight").type == 30);                                 // BF16, as stored
      check_export(q, out, permuted);
    }
    // The original checkpoint: bf16 linears as they are (permuted for llama).
    export_gguf(src, tmp / (std::string(arch) + ".gguf"));
    check_export(src, tmp / (std::string(arch) + ".gguf"), permuted);
  }
}

TEST_CASE("gguf: llama.cpp's metadata, with the types its loader checks", "[gguf]") {
  const mxq::test::temp_dir tmp("gguf-meta");
  auto s = spec("llama");
  s.extra["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                             {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 64}};
  s.extra["max_position_embeddings"] = 512;
  s.tied = true;
  write_synthetic(tmp / "m", s);
  gguf_export_options eo;
  eo.embeddings = ggml_type::q8_0;
  eo.name = "tiny";
  export_gguf(tmp / "m", tmp / "m.gguf", eo);
  const gg::file f = gg::read(tmp / "m.gguf");
  auto u32 = [&](const std::string& k) {
    INFO(k);
    REQUIRE(f.kv.count(k));
    CHECK(f.kv.at(k).type == 4);
    return f.kv.at(k).u;
  };
  auto f32 = [&](const std::string& k) {
    INFO(k);
    REQUIRE(f.kv.count(k));
    CHECK(f.kv.at(k).type == 6);
    return f.kv.at(k).f;
  };
  CHECK(f.kv.at("general.architecture").s == "llama");
  CHECK(f.kv.at("general.name").s == "tiny");
  export_gguf((tmp / "m").string() + "/", tmp / "slash.gguf");  // named after the directory, trailing slash or not
  CHECK(gg::read(tmp / "slash.gguf").kv.at("general.name").s == "m");
  CHECK(u32("llama.context_length") == 512);
  CHECK(u32("llama.embedding_length") == 64);
  CHECK(u32("llama.block_count") == 2);
  CHECK(u32("llama.feed_forward_length") == 128);
  CHECK(u32("llama.attention.head_count") == 4);
  CHECK(u32("llama.attention.head_count_kv") == 2);
  CHECK(u32("llama.rope.dimension_count") == 16);
  CHECK(u32("llama.vocab_size") == 96);
  CHECK(f32("llama.attention.layer_norm_rms_epsilon") == Approx(1e-6));
  CHECK(f32("llama.rope.freq_base") == 10000.0);
  CHECK(f.kv.at("tokenizer.ggml.model").s == "none");
  CHECK(!f.kv.count("llama.rope.scaling.factor"));  // llama3 is rope_freqs alone (a factor would apply twice)
  bool output = false;
  for (const auto& t : f.tensors) output = output || t.name == "output.weight";
  CHECK_FALSE(output);  // tied: llama.cpp reuses token_embd
  // rope_freqs: what divides each frequency = default / llama3-scaled (formula, in double).
  const model_config c = load_model_config(tmp / "m");
  const std::vector<float> ff = gg::dequantize(f, f.at("rope_freqs.weight"));
  model_config plain = c;
  plain.rope = {};
  const std::vector<double> a = mxq::test::formula_inv_freq(plain), b = mxq::test::formula_inv_freq(c);
  REQUIRE(ff.size() == 8);
  std::size_t scaled = 0;
  for (std::size_t i = 0; i < ff.size(); ++i) {
    CHECK(ff[i] == Approx(a[i] / b[i]).epsilon(1e-5));
    scaled += ff[i] > 1.0f;
  }
  CHECK(scaled > 0);
  // Q8_0 embeddings: within half a step of each block's scale.
  const model_weights w = load_model(tmp / "m");
  const std::vector<float> e = gg::dequantize(f, f.at("token_embd.weight"));
  CHECK(f.at("token_embd.weight").type == 8);
  for (std::size_t r = 0; r < 96; ++r)
    for (std::size_t b0 = 0; b0 < 64; b0 += 32) {
      float amax = 0;
      for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::abs(w.embed_tokens(r, b0 + j)));
      for (std::size_t j = 0; j < 32; ++j)
        // half a step of d, plus 127 times d's rounding to fp16 (ggml quantizes with the unrounded d)
        CHECK(std::abs(e[r * 64 + b0 + j] - w.embed_tokens(r, b0 + j)) <= amax / 127.0f * (0.5f + 127.0f / 2048.0f) + 1e-7f);
    }
}

TEST_CASE("gguf: tokenizer.json becomes llama.cpp's BPE vocabulary, or none when llama.cpp would split differently", "[gguf]") {
  const mxq::test::temp_dir tmp("gguf-vocab");
  write_synthetic(tmp / "m", spec("llama"));
  {  // bos/eos as a Hugging Face config names them
    std::ifstream in(tmp / "m" / "config.json");
    nlohmann::json c = nlohmann::json::parse(in);
    c["bos_token_id"] = 95, c["eos_token_id"] = 95, c["pad_token_id"] = nullptr;
    std::ofstream(tmp / "m" / "config.json") << c.dump();
  }
  nlohmann::json vocab = nlohmann::json::object();
  for (int i = 0; i < 90; ++i) vocab["t" + std::to_string(i)] = i;
  nlohmann::json tj = {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array({nlohmann::json::array({"t1", "t2"}), "t3 t4"})}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"added_tokens",
       {{{"id", 95}, {"content", "<|end|>"}, {"special", true}}, {{"id", 94}, {"content", "<x>"}, {"special", false}}}}};
  std::ofstream(tmp / "m" / "tokenizer.json") << tj.dump();
  const gguf_export_report r = export_gguf(tmp / "m", tmp / "v.gguf");
  CHECK(r.tokenizer == "gpt2 (gpt-2), 2 merges");
  const gg::file f = gg::read(tmp / "v.gguf");
  CHECK(f.kv.at("tokenizer.ggml.model").s == "gpt2");
  CHECK(f.kv.at("tokenizer.ggml.pre").s == "gpt-2");
  const auto& toks = f.kv.at("tokenizer.ggml.tokens");
  REQUIRE(toks.elem == 8);
  REQUIRE(toks.strings.size() == 96);  // one per row of token_embd
  CHECK(toks.strings[0] == "t0");
  CHECK(toks.strings[89] == "t89");
  CHECK(toks.strings[92] == "[PAD92]");
  CHECK(toks.strings[94] == "<x>");
  CHECK(toks.strings[95] == "<|end|>");
  const auto& types = f.kv.at("tokenizer.ggml.token_type");
  REQUIRE(types.elem == 5);
  REQUIRE(types.ints.size() == 96);
  CHECK(types.ints[0] == 1);   // NORMAL
  CHECK(types.ints[92] == 5);  // UNUSED
  CHECK(types.ints[94] == 4);  // USER_DEFINED
  CHECK(types.ints[95] == 3);  // CONTROL
  CHECK(f.kv.at("tokenizer.ggml.merges").strings == std::vector<std::string>{"t1 t2", "t3 t4"});
  CHECK(f.kv.at("tokenizer.ggml.bos_token_id").type == 4);
  CHECK(f.kv.at("tokenizer.ggml.bos_token_id").u == 95);
  CHECK(f.kv.at("tokenizer.ggml.eos_token_id").u == 95);
  CHECK(!f.kv.count("tokenizer.ggml.padding_token_id"));
  CHECK(f.kv.at("tokenizer.ggml.add_bos_token").type == 7);
  CHECK(f.kv.at("tokenizer.ggml.add_bos_token").u == 0);
  // Llama 3's Split regex is llama.cpp's "llama-bpe".
  tj["pre_tokenizer"] = {{"type", "Sequence"},
                         {"pretokenizers",
                          {{{"type", "Split"},
                            {"pattern", {{"Regex", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
                            {"behavior", "Isolated"}},
                           {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  std::ofstream(tmp / "m" / "tokenizer.json") << tj.dump();
  CHECK(export_gguf(tmp / "m", tmp / "l3.gguf").tokenizer == "gpt2 (llama-bpe), 2 merges");
  // A pre-tokenizer llama.cpp would run differently (SentencePiece's Metaspace): no vocabulary.
  tj["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
  std::ofstream(tmp / "m" / "tokenizer.json") << tj.dump();
  CHECK_THAT(export_gguf(tmp / "m", tmp / "n.gguf").tokenizer, Contains("none (tokenizer.json's pre-tokenizer"));
  CHECK(gg::read(tmp / "n.gguf").kv.at("tokenizer.ggml.model").s == "none");
  // A tokenizer of another model: named, before the file exists.
  tj["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  tj["model"]["vocab"]["big"] = 500;
  std::ofstream(tmp / "m" / "tokenizer.json") << tj.dump();
  CHECK_THROWS_WITH(export_gguf(tmp / "m", tmp / "bad.gguf"), Contains("tokenizer.json") && Contains("id 500, beyond the model's vocab_size 96"));
  CHECK(!fs::exists(tmp / "bad.gguf"));
}

TEST_CASE("gguf: what has no exact GGUF form is refused by name before a file exists", "[gguf]") {
  const mxq::test::temp_dir tmp("gguf-refuse");
  write_synthetic(tmp / "m", spec("llama"));
  auto refused = [&](const fs::path& dir, const std::string& needle) {
    INFO(dir.string());
    const fs::path out = tmp / "out.gguf";
    try {
      export_gguf(dir, out);
      FAIL("exported");
    } catch (const mxq::error& e) {
      CHECK_THAT(std::string(e.what()), Contains(needle));
    }
    CHECK(!fs::exists(out));
    for (const auto& e : fs::directory_iterator(tmp.path)) CHECK(e.path().string().find(".tmp.") == std::string::npos);
  };
  quantize_to<mxfp6_e2m3>(tmp / "m", tmp / "mxfp6", recipe{});
  refused(tmp / "mxfp6", "format mxfp6_e2m3 (model.layers.0.self_attn.q_proj) has no exact GGUF type; exportable: mxfp4, mxint8, mxint4, nvfp4");
  quantize_to<mxfp4>(tmp / "m", tmp / "a8", recipe{step::gptq{}, activation_quant_by_name("mxint8")});
  refused(tmp / "a8", "quantized for mxint8 activations");
  // A Q4_0 block whose scale 2^(e-129) is below fp16's smallest subnormal: refused, not rounded.
  {
    model_weights w = load_model(tmp / "m");
    w.layers[1].up_proj.weight.row(3).head(32).setConstant(1e-9f);
    const auto q = quantize_model<mxint4>(w, {}, recipe{});
    write_quantized_checkpoint(tmp / "tiny-scale", tmp / "m", w, q, {});
  }
  refused(tmp / "tiny-scale", "tensor 'blk.1.ffn_up.weight' row 3 block 0: its scale 2^-");
  // Qwen2's graph drops FFN tensor scales: an NVFP4 FFN with one is refused.
  write_synthetic(tmp / "q2", spec("qwen2"));
  quantize_to<nvfp4>(tmp / "q2", tmp / "q2-nvfp4", recipe{});
  refused(tmp / "q2-nvfp4", "ignores FFN tensor scales");
  // NVFP4 needs whole ggml blocks of 64 inputs.
  auto narrow = spec("llama");
  narrow.H = 32, narrow.hd = 8;
  write_synthetic(tmp / "narrow", narrow);
  quantize_to<nvfp4>(tmp / "narrow", tmp / "narrow-nvfp4", recipe{});
  refused(tmp / "narrow-nvfp4", "32 inputs are not whole NVFP4 blocks of 64");
}

}  // namespace test_gguf
