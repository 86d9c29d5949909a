// The architectures users have (issue 11): Llama 2/3.x (rope_scaling "llama3" and "linear",
// tie_word_embeddings, attention_bias), Mistral (sliding_window), Qwen2/2.5 (q/k/v biases), Qwen3
// (per-head q_norm / k_norm), each against an independent computation: RoPE frequencies from the
// published formula, tiny synthetic models against a naive double-precision forward pass, a tied
// model against its untied twin; real configs parsed; everything else refused by name. Also the
// 2-layer synthetic (sharded bf16) model through `mxq quantize-model`: streamed, killed, resumed.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

#include <mxq/llm/checkpoint.hpp>
#include <mxq/llm/config.hpp>
#include <mxq/llm/forward.hpp>
#include <mxq/llm/quantize_model.hpp>
#include <mxq/llm/rope.hpp>
#include <mxq/llm/weights.hpp>
#include <mxq/recipe.hpp>

#include "support.hpp"
#include "synthetic_model.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_architectures {

namespace fs = std::filesystem;
using namespace mxq;
using namespace mxq::llm;
using mxq::test::synthetic_spec;
using Catch::Matchers::Contains;

namespace {

model_config parse(const std::string& text) { return parse_model_config(nlohmann::json::parse(text), "cfg.json"); }

// The published configs (Hugging Face Hub, config.json), the keys that matter here.
const char* llama31_8b = R"({"architectures":["LlamaForCausalLM"],"attention_bias":false,"hidden_act":"silu",
  "hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":131072,"mlp_bias":false,"model_type":"llama",
  "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,
  "rope_scaling":{"factor":8.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,
  "rope_type":"llama3"},"rope_theta":500000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":128256})";
const char* llama32_1b = R"({"hidden_size":2048,"intermediate_size":8192,"model_type":"llama","num_attention_heads":32,
  "num_hidden_layers":16,"num_key_value_heads":8,"head_dim":64,"rms_norm_eps":1e-05,"rope_theta":500000.0,
  "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,
  "rope_type":"llama3"},"tie_word_embeddings":true,"torch_dtype":"bfloat16","vocab_size":128256})";
const char* mistral_7b_v01 = R"({"architectures":["MistralForCausalLM"],"hidden_act":"silu","hidden_size":4096,
  "intermediate_size":14336,"max_position_embeddings":32768,"model_type":"mistral","num_attention_heads":32,
  "num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":10000.0,"sliding_window":4096,
  "tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":32000})";
const char* mistral_7b_v03 = R"({"hidden_size":4096,"intermediate_size":14336,"model_type":"mistral",
  "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rope_theta":1000000.0,"sliding_window":null,
  "vocab_size":32768})";
const char* qwen25_7b = R"({"architectures":["Qwen2ForCausalLM"],"hidden_act":"silu","hidden_size":3584,
  "intermediate_size":18944,"max_position_embeddings":131072,"max_window_layers":28,"model_type":"qwen2",
  "num_attention_heads":28,"num_hidden_layers":28,"num_key_value_heads":4,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
  "sliding_window":131072,"tie_word_embeddings":false,"torch_dtype":"bfloat16","use_sliding_window":false,
  "vocab_size":152064})";
const char* qwen3_8b = R"({"architectures":["Qwen3ForCausalLM"],"attention_bias":false,"head_dim":128,
  "hidden_act":"silu","hidden_size":4096,"intermediate_size":12288,"max_position_embeddings":40960,
  "max_window_layers":36,"model_type":"qwen3","num_attention_heads":32,"num_hidden_layers":36,"num_key_value_heads":8,
  "rms_norm_eps":1e-06,"rope_scaling":null,"rope_theta":1000000,"sliding_window":null,"tie_word_embeddings":false,
  "torch_dtype":"bfloat16","use_sliding_window":false,"vocab_size":151936})";

double max_logit_error(const model_weights& w, const std::vector<token_id>& tok, std::size_t seq) {
  const RowMajorMatrixXf logits = forward_logits(w, tok, seq, {}, 2);
  double err = 0;
  for (std::size_t win = 0; win < tok.size() / seq; ++win) {
    const std::vector<token_id> one(tok.begin() + static_cast<std::ptrdiff_t>(win * seq),
                                    tok.begin() + static_cast<std::ptrdiff_t>((win + 1) * seq));
    const auto ref = mxq::test::naive_logits(w, one);
    for (std::size_t t = 0; t < seq; ++t)
      for (std::size_t v = 0; v < w.config.vocab_size; ++v)
        err = std::max(err, std::abs(ref[t][v] - logits(static_cast<Eigen::Index>(win * seq + t), static_cast<Eigen::Index>(v))));
  }
  return err;
}

std::vector<token_id> some_tokens(std::size_t n, std::size_t vocab, std::size_t mul = 7) {
  std::vector<token_id> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<token_id>((i * mul + 3) % vocab);
  return t;
}

}  // namespace

TEST_CASE("architectures: llama3 RoPE frequencies are the published formula's", "[arch][rope]") {
  model_config c = parse(llama31_8b);
  REQUIRE(c.rope.type == rope_type::llama3);
  CHECK(c.rope.factor == 8.0);
  CHECK(c.rope.original_max_position_embeddings == 8192.0);
  CHECK(c.head_dim == 128);
  c.rope_inv_freq_bf16 = false;
  const std::vector<float> f = rope_inv_freq(c);
  const std::vector<double> ref = mxq::test::formula_inv_freq(c);
  REQUIRE(f.size() == 64);
  std::size_t kept = 0, divided = 0, smoothed = 0;
  model_config plain = c;
  plain.rope = {};
  const std::vector<float> unscaled = rope_inv_freq(plain);
  for (std::size_t i = 0; i < f.size(); ++i) {
    INFO("i = " << i << " inv_freq " << f[i] << " formula " << ref[i]);
    CHECK(std::abs(f[i] - ref[i]) <= 4e-6 * ref[i]);  // float32 against double
    const double r = double(f[i]) / double(unscaled[i]);
    if (r == 1.0) {
      ++kept;
    } else if (std::abs(r - 1.0 / 8.0) < 1e-6) {
      ++divided;
    } else {
      ++smoothed;
      CHECK((r > 1.0 / 8.0 && r < 1.0));
    }
  }
  // Llama 3.1 at theta 5e5, d 128: every band is populated (wavelength < 2048, > 8192, between).
  CHECK(kept > 20);
  CHECK(divided > 20);
  CHECK(smoothed >= 3);
  // bf16-stored models round the result, like the transformers buffer.
  c.rope_inv_freq_bf16 = true;
  const std::vector<float> b = rope_inv_freq(c);
  for (std::size_t i = 0; i < b.size(); ++i) CHECK(b[i] == mxq::detail::bf16_bits_to_float(mxq::detail::float_to_bf16_bits(f[i])));
  // Linear interpolation: every frequency divided by the factor.
  model_config lin = parse(R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,
    "num_attention_heads":4,"vocab_size":10,"rope_scaling":{"type":"linear","factor":4.0}})");
  REQUIRE(lin.rope.type == rope_type::linear);
  const std::vector<float> fl = rope_inv_freq(lin);
  lin.rope = {};
  const std::vector<float> f0 = rope_inv_freq(lin);
  for (std::size_t i = 0; i < fl.size(); ++i) CHECK(fl[i] == f0[i] / 4.0f);
}

TEST_CASE("architectures: real configs of each family parse to what their modeling code does", "[arch][config]") {
  const model_config l = parse(llama32_1b);
  CHECK(l.tie_word_embeddings);
  CHECK(l.rope.factor == 32.0);
  CHECK(l.head_dim == 64);
  CHECK(l.kv_dim() == 512);
  CHECK_FALSE(l.attention_bias);
  CHECK(l.sliding_window == 0);

  const model_config m1 = parse(mistral_7b_v01), m3 = parse(mistral_7b_v03);
  CHECK(m1.sliding_window == 4096);  // kept: refused only for windows longer than it
  CHECK(m3.sliding_window == 0);
  CHECK_FALSE(m1.attention_bias);
  CHECK_FALSE(m1.o_proj_bias);
  CHECK(m3.rope_theta == 1e6);

  const model_config q2 = parse(qwen25_7b);
  CHECK(q2.attention_bias);  // hard-coded q/k/v biases
  CHECK_FALSE(q2.o_proj_bias);
  CHECK(q2.sliding_window == 0);  // use_sliding_window false
  CHECK(q2.head_dim == 128);

  const model_config q3 = parse(qwen3_8b);
  CHECK(q3.qk_norm);
  CHECK_FALSE(q3.attention_bias);
  CHECK(q3.head_dim == 128);
  CHECK(q3.q_dim() == 4096);
  CHECK(q3.sliding_window == 0);
  CHECK(q3.rope.type == rope_type::default_rope);

  // attention_bias: Llama and Qwen3 bias all four attention projections, Mistral none.
  const std::string base = R"("hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10)";
  for (const char* t : {"llama", "qwen3"}) {
    const auto c = parse(std::string(R"({"model_type":")") + t + R"(","attention_bias":true,)" + base + "}");
    CHECK((c.attention_bias && c.o_proj_bias));
    CHECK(has_bias(c, linear::o_proj));
    CHECK_FALSE(has_bias(c, linear::up_proj));
  }
  const auto mb = parse(R"({"model_type":"mistral","attention_bias":true,)" + base + "}");
  CHECK_FALSE((mb.attention_bias || mb.o_proj_bias));
  // Qwen2 opting in to sliding windows keeps the span; layer_types can say it too.
  CHECK(parse(R"({"model_type":"qwen2","use_sliding_window":true,"sliding_window":512,)" + base + "}").sliding_window == 512);
  CHECK(parse(R"({"model_type":"qwen3","layer_types":["full_attention","sliding_attention"],"sliding_window":256,)" + base +
              "}").sliding_window == 256);
}

TEST_CASE("architectures: anything else is refused by name, listing what is supported", "[arch][config]") {
  const std::string base = R"("hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10)";
  auto refused = [&](const std::string& json, const std::string& needle) {
    INFO(json);
    try {
      parse(json);
      FAIL("accepted");
    } catch (const mxq::error& e) {
      CHECK_THAT(std::string(e.what()), Contains(needle));
      CHECK_THAT(std::string(e.what()), Contains("cfg.json"));
    }
  };
  for (const char* t : {"mixtral", "qwen2_moe", "qwen3_moe", "gemma2", "phi3", "deepseek_v3"})
    refused(std::string(R"({"model_type":")") + t + "\"," + base + "}",
            std::string("unsupported model_type '") + t + "' (supported: llama, mistral, qwen2, qwen3)");
  refused(R"({"model_type":"llama","num_local_experts":8,)" + base + "}",
          "mixture-of-experts configs (num_local_experts = 8) are not supported (supported: dense llama, mistral, qwen2, qwen3)");
  for (const char* t : {"yarn", "dynamic", "longrope", "su"})
    refused(std::string(R"({"model_type":"llama","rope_scaling":{"rope_type":")") + t + R"(","factor":2.0},)" + base + "}",
            std::string("type \"") + t + "\" (supported: default, linear, llama3)");
  refused(R"({"model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4},)" +
              base + "}",
          "rope_scaling.original_max_position_embeddings must be a positive number");
  refused(R"({"model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":4,"high_freq_factor":1,"original_max_position_embeddings":8192},)" +
              base + "}",
          "high_freq_factor must be larger than low_freq_factor");
  refused(R"({"model_type":"qwen2","use_sliding_window":true,)" + base + "}", "missing 'sliding_window'");
  refused(R"({"model_type":"qwen3","layer_types":["chunked_attention"],)" + base + "}", "unsupported layer_types entry");
  refused(R"({"model_type":"llama","hidden_act":"gelu_pytorch_tanh",)" + base + "}", "hidden_act");
}

TEST_CASE("architectures: tiny models of each family match the naive forward pass", "[arch][forward]") {
  struct kase {
    const char* what;
    synthetic_spec spec;
  };
  std::vector<kase> cases;
  {
    synthetic_spec s;  // Llama 3.x: llama3 RoPE scaling whose bands all act at head_dim 8, GQA
    s.extra["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                               {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 1024}};
    cases.push_back({"llama3 rope", s});
  }
  {
    synthetic_spec s;  // Llama 2 with attention_bias (q/k/v/o biases) and linear RoPE scaling
    s.qkv_bias = s.o_bias = true;
    s.extra["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    cases.push_back({"llama attention_bias, linear rope", s});
  }
  {
    synthetic_spec s;
    s.model_type = "mistral";
    s.extra["sliding_window"] = 16;  // longer than the windows: plain causal attention
    cases.push_back({"mistral", s});
  }
  {
    synthetic_spec s;
    s.model_type = "qwen2";
    s.qkv_bias = true;
    s.tied = true;
    cases.push_back({"qwen2", s});
  }
  {
    synthetic_spec s;  // Qwen3: per-head q/k norms, head_dim 16 (q_dim 64 != hidden 32)
    s.model_type = "qwen3";
    s.qk_norm = true;
    s.hd = 16;
    cases.push_back({"qwen3", s});
  }
  const mxq::test::temp_dir tmp("arch-forward");
  const std::vector<token_id> tok = some_tokens(2 * 12, 64);
  for (const auto& k : cases) {
    INFO(k.what);
    write_synthetic(tmp / k.what, k.spec);
    const model_weights w = load_model(tmp / k.what);
    CHECK(w.layers[0].q_norm.size() == (k.spec.qk_norm ? static_cast<Eigen::Index>(k.spec.hd) : 0));
    CHECK(w.layers[1].o_proj.has_bias() == k.spec.o_bias);
    CHECK(w.layers[1].v_proj.has_bias() == k.spec.qkv_bias);
    const double err = max_logit_error(w, tok, 12);
    INFO("max |logit - naive| " << err);
    CHECK(err < 1e-4);
  }
  // The features move the logits (the comparisons above could fail): RoPE scaling and q/k norms off.
  for (const char* what : {"llama3 rope", "qwen3"}) {
    model_weights w = load_model(tmp / what);
    const RowMajorMatrixXf a = forward_logits(w, tok, 12);
    if (w.config.qk_norm)
      for (auto& L : w.layers) L.q_norm.setConstant(2.0f);
    else
      w.config.rope = {};
    const RowMajorMatrixXf b = forward_logits(w, tok, 12);
    INFO(what);
    CHECK((a - b).cwiseAbs().maxCoeff() > 1e-3);
  }
}

TEST_CASE("architectures: Mistral's sliding window is refused where it would act", "[arch][forward]") {
  const mxq::test::temp_dir tmp("arch-window");
  synthetic_spec s;
  s.model_type = "mistral";
  s.extra["sliding_window"] = 8;
  write_synthetic(tmp / "mistral", s);
  s.model_type = "llama";
  s.extra = nlohmann::json::object();
  write_synthetic(tmp / "llama", s);  // the same weights without a window
  const model_weights m = load_model(tmp / "mistral"), l = load_model(tmp / "llama");
  CHECK(m.config.sliding_window == 8);
  const std::vector<token_id> tok = some_tokens(24, 64);
  CHECK(forward_logits(m, tok, 8) == forward_logits(l, tok, 8));  // windows within the span: full attention
  CHECK_THROWS_WITH(forward_logits(m, tok, 12),
                    Contains("windows of 12 tokens are longer than the model's sliding_window of 8"));
  CHECK_THROWS_WITH(attention_block_output(m.config, m.layers[0].q_proj, m.layers[0].k_proj, m.layers[0].v_proj,
                                           m.layers[0].o_proj, RowMajorMatrixXf::Zero(12, 32), 12),
                    Contains("sliding_window of 8"));
}

TEST_CASE("architectures: a tied 2-layer model quantizes and runs like its untied twin", "[arch][stream]") {
  const mxq::test::temp_dir tmp("arch-tied");
  synthetic_spec s;
  s.tied = true;
  write_synthetic(tmp / "tied", s);
  s.tied = false;
  write_synthetic(tmp / "untied", s);
  const std::vector<token_id> calib = some_tokens(4 * 16, 64, 11);
  for (bool gptq : {false, true}) {
    INFO((gptq ? "gptq" : "rtn"));
    recipe rc;
    if (gptq) rc.gptq = step::gptq{};
    model_options mo;
    mo.seq = 16;
    for (const char* name : {"tied", "untied"}) {
      const model_reader src(tmp / name);
      quantized_checkpoint_writer<mxfp4> out(tmp / (std::string(name) + "-q"), tmp / name, src.config(), src.source(), {});
      const layer_sink<mxfp4> sink = [&](std::size_t li, const decoder_layer_weights& L, quantized_model<mxfp4>& q) {
        for (const auto& [n, p] : q.linears) out.put_linear(n, p);
        out.put_layer(li, L);
      };
      quantize_model_streaming<mxfp4>(src, calib, rc, sink, mo);
      out.finish(src.final_norm());
    }
    const checkpoint a(tmp / "tied-q"), b(tmp / "untied-q");
    CHECK_FALSE(a.contains("lm_head.weight"));
    CHECK(b.contains("lm_head.weight"));
    std::size_t same = 0;
    for (const auto& n : a.names()) {
      REQUIRE(b.contains(n));
      const auto x = a.bytes(n), y = b.bytes(n);
      CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
      ++same;
    }
    CHECK(same + 1 == b.names().size());
    const model_weights wa = load_model(tmp / "tied-q"), wb = load_model(tmp / "untied-q");
    const std::vector<token_id> tok = some_tokens(2 * 16, 64, 5);
    CHECK(forward_logits(wa, tok, 16) == forward_logits(wb, tok, 16));
  }
}

TEST_CASE("architectures: Qwen3's q_norm / k_norm go through the quantizer into the checkpoint", "[arch][stream]") {
  const mxq::test::temp_dir tmp("arch-qwen3");
  synthetic_spec s;
  s.model_type = "qwen3";
  s.qk_norm = true;
  s.hd = 16;
  s.kv = 2;
  write_synthetic(tmp / "m", s);
  const std::vector<token_id> calib = some_tokens(4 * 16, 64, 11);
  recipe rc;
  rc.awq = step::awq{};
  rc.gptq = step::gptq{};
  model_options mo;
  mo.seq = 16;
  model_weights mem = load_model(tmp / "m");
  const quantized_model<mxint4> q = quantize_model<mxint4>(mem, calib, rc, mo);
  write_quantized_checkpoint(tmp / "q", tmp / "m", mem, q, {});
  const model_weights back = load_model(tmp / "q");
  const model_weights orig = load_model(tmp / "m");
  for (std::size_t li = 0; li < 2; ++li) {
    CHECK(back.layers[li].q_norm == orig.layers[li].q_norm);  // not a scale sink: unchanged
    CHECK(back.layers[li].k_norm == orig.layers[li].k_norm);
  }
  const std::vector<token_id> tok = some_tokens(2 * 16, 64, 5);
  CHECK(forward_logits(back, tok, 16) == forward_logits(mem, tok, 16));  // the checkpoint is the quantized model
  // A layer without its norms is an error naming it, not a silent Llama forward.
  decoder_layer_weights L = orig.layers[0];
  L.k_norm.resize(0);
  RowMajorMatrixXf h = RowMajorMatrixXf::Zero(16, 32);
  CHECK_THROWS_WITH(layer_walker(orig.config, L, 0, h, 16), Contains("q_norm/k_norm have 16/0 values"));
}

#ifdef MXQ_CLI_PATH
TEST_CASE("architectures: a 2-layer synthetic sharded bf16 model streams through quantize-model and resumes",
          "[arch][cli][resume]") {
  const mxq::test::temp_dir tmp("arch-cli");
  synthetic_spec s;
  s.shards = 3;
  s.tied = true;
  write_synthetic(tmp / "m", s);
  {
    const std::vector<token_id> t = some_tokens(8 * 16, 64, 13);
    std::vector<std::uint16_t> u(t.begin(), t.end());
    std::ofstream(tmp / "calib.u16", std::ios::binary).write(reinterpret_cast<const char*>(u.data()),
                                                             static_cast<std::streamsize>(u.size() * 2));
  }
  auto cli = [&](const std::string& env, const std::string& args) {
    return mxq::test::run_program((env.empty() ? std::string() : "env " + env + " ") + MXQ_CLI_PATH, args, MXQ_REPO_DIR);
  };
  const std::string common = "quantize-model --model " + (tmp / "m").string() + " --format mxfp4 --seq 16 --calib " +
                             (tmp / "calib.u16").string() + " --calib-windows 8 --max-shard-size 4KB --out ";
  for (const char* method : {"gptq", "awq+gptq"}) {
    INFO(method);
    const std::string args = std::string(" --method ") + method;
    const fs::path full = tmp / (std::string("full-") + method), part = tmp / (std::string("part-") + method);
    const auto a = cli("", common + full.string() + args);
    INFO(a.err);
    REQUIRE(a.status == 0);
    CHECK(fs::exists(full / "model.safetensors.index.json"));  // several shards under 4 KB
    const auto k = cli("MXQ_TEST_KILL_AFTER_LAYERS=1", common + part.string() + args);
    CHECK(k.status != 0);
    CHECK(!fs::exists(part / "model.safetensors.index.json"));
    const auto b = cli("", common + part.string() + args + " --threads 1");
    INFO(b.err);
    REQUIRE(b.status == 0);
    CHECK(b.err.find("resuming after layer 1 of 2") != std::string::npos);
    std::size_t files = 0;
    for (const auto& e : fs::directory_iterator(full)) {
      ++files;
      CHECK(mxq::test::slurp(part / e.path().filename()) == mxq::test::slurp(e.path()));
    }
    std::size_t left = 0;
    for (const auto& e : fs::directory_iterator(part)) left += e.is_regular_file();
    CHECK(left == files);
    CHECK(files >= 4);  // shards, index, config
  }
}
#endif

}  // namespace test_architectures
