// The GGUF export in the real client (issue 12): llama.cpp, built from the source snapshot in
// ../shared/llama.cpp, loads every exported file (with ggml_validate_row_data) and its perplexity
// (mxq_llama_ppl: the definition of mxq eval-ppl) matches mxq's: the bundled model as F32 within
// 0.05 %, its GPTQ MXFP4 / MXINT4 exports within 0.3 % of `mxq eval-ppl --packed int8` (llama.cpp
// quantizes activations to Q8_0 for those matmuls), synthetic Qwen2 (GQA, q/k/v biases), Qwen3
// (q/k norms) and Llama 3 (rope_freqs) models within 0.05 %. Skipped without the snapshot.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <mxq/llm/export_gguf.hpp>
#include <mxq/llm/perplexity.hpp>
#include <mxq/llm/weights.hpp>

#include "support.hpp"
#include "synthetic_model.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_llama_cpp {

namespace fs = std::filesystem;

#if defined(MXQ_LLAMA_PPL_PATH) && defined(MXQ_CLI_PATH)
namespace {

using mxq::test::run_program;

double ppl_of(const mxq::test::run_result& r) {
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  const std::string l = mxq::test::last_line(r.out);
  REQUIRE(l.rfind("ppl: ", 0) == 0);
  return std::stod(l.substr(5));
}
double llama_ppl(const fs::path& gguf, const std::string& tokens, std::size_t windows, std::size_t seq = 256) {
  return ppl_of(run_program(MXQ_LLAMA_PPL_PATH, gguf.string() + " " + tokens + " " + std::to_string(windows) + " " +
                                                    std::to_string(seq) + " 2",
                            MXQ_REPO_DIR));
}
mxq::test::run_result cli(const std::string& args) { return run_program(MXQ_CLI_PATH, args, MXQ_REPO_DIR); }
void require_ok(const mxq::test::run_result& r) {
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
}

const std::string model = "examples/models/code-llama", tokens = "examples/data/code/code-test.u16",
                  calib = "examples/data/code/code-calib-128x256.u16";

}  // namespace

TEST_CASE("llama.cpp: the bundled model exported as F32 runs at mxq's perplexity", "[llama.cpp]") {
  const mxq::test::temp_dir tmp("llama-f32");
  const auto e = cli("export --model " + model + " --to gguf --gguf-float f32 --out " + (tmp / "f32.gguf").string());
  require_ok(e);
  CHECK(mxq::test::last_line(e.out) == "exported: " + (tmp / "f32.gguf").string());
  const double a = llama_ppl(tmp / "f32.gguf", tokens, 64);
  const double b = ppl_of(cli("eval-ppl --model " + model + " --tokens " + tokens + " --windows 64"));
  INFO("llama.cpp " << a << " mxq " << b);
  CHECK(std::abs(a / b - 1) <= 0.0005);
}

TEST_CASE("llama.cpp: the vocabulary from tokenizer.json tokenizes the test text as it was tokenized", "[llama.cpp]") {
  const mxq::test::temp_dir tmp("llama-vocab");
  // The bundled model ships its tokenizer.json: the export carries it as the GGUF vocabulary.
  const auto e = cli("export --model " + model + " --to gguf --gguf-float f32 --out " + (tmp / "v.gguf").string());
  require_ok(e);
  CHECK(e.out.find("tokenizer: gpt2 (gpt-2), 3839 merges") != std::string::npos);
  // llama.cpp turns 100k test ids into text and back: the same ids (but for a cut at the end).
  const auto r = run_program(MXQ_LLAMA_PPL_PATH, "--retokenize " + (tmp / "v.gguf").string() + " " + tokens + " 100000",
                             MXQ_REPO_DIR);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("n_vocab: 4096") != std::string::npos);
  const auto at = r.out.find("same: ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stoi(r.out.substr(at + 6)) >= 100000 - 8);
  // The vocabulary does not change the numbers: the token-id perplexity is the F32 export's.
  const double a = llama_ppl(tmp / "v.gguf", tokens, 16);
  const double b = ppl_of(cli("eval-ppl --model " + model + " --tokens " + tokens + " --windows 16"));
  CHECK(std::abs(a / b - 1) <= 0.0005);
}

TEST_CASE("llama.cpp: GPTQ MXFP4 and MXINT4 exports run at mxq's packed-int8 perplexity", "[llama.cpp]") {
  const mxq::test::temp_dir tmp("llama-gptq");
  for (const char* f : {"mxfp4", "mxint4"}) {
    INFO(f);
    const fs::path q = tmp / f, g = tmp / (std::string(f) + ".gguf");
    require_ok(cli("quantize-model --model " + model + " --format " + f + " --method gptq --calib " + calib +
                   " --calib-windows 128 --out " + q.string()));
    require_ok(cli("export --model " + q.string() + " --to gguf --gguf-float f32 --out " + g.string()));
    const double a = llama_ppl(g, tokens, 64);
    const double b = ppl_of(cli("eval-ppl --model " + q.string() + " --tokens " + tokens + " --windows 64 --packed int8"));
    const double dense = ppl_of(cli("eval-ppl --model " + q.string() + " --tokens " + tokens + " --windows 64"));
    INFO("llama.cpp " << a << " mxq --packed int8 " << b << " mxq fp32 activations " << dense);
    CHECK(std::abs(a / b - 1) <= 0.003);
  }
}

TEST_CASE("llama.cpp: synthetic Qwen2, Qwen3 and Llama 3 models run as in mxq", "[llama.cpp]") {
  const mxq::test::temp_dir tmp("llama-arch");
  std::vector<mxq::test::synthetic_spec> specs(3);
  specs[0].model_type = "qwen2", specs[0].qkv_bias = true;  // GQA 4 / 2 heads, q/k/v biases
  specs[1].model_type = "qwen3", specs[1].qk_norm = true;
  specs[2].extra["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                    {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 32}};
  const std::size_t seq = 32, windows = 4;
  std::vector<std::uint16_t> t(seq * windows);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<std::uint16_t>((i * 37 + 11) % 64);
  std::ofstream(tmp / "tokens.u16", std::ios::binary).write(reinterpret_cast<const char*>(t.data()),
                                                          static_cast<std::streamsize>(t.size() * 2));
  for (auto& s : specs) {
    INFO(s.model_type);
    s.H = 64, s.I = 128, s.hd = 16;
    const fs::path dir = tmp / s.model_type;
    mxq::test::write_synthetic(dir, s);
    mxq::llm::gguf_export_options o;
    o.dense = mxq::ggml_type::f32;
    mxq::llm::export_gguf(dir, tmp / (s.model_type + ".gguf"), o);
    const double a = llama_ppl(tmp / (s.model_type + ".gguf"), (tmp / "tokens.u16").string(), windows, seq);
    const auto w = mxq::llm::load_model(dir);
    std::vector<mxq::llm::token_id> tok(t.begin(), t.end());
    mxq::llm::perplexity_options po;
    po.seq_len = seq;
    po.windows = windows;
    const double b = mxq::llm::perplexity(w, tok, po).ppl;
    INFO("llama.cpp " << a << " mxq " << b);
    CHECK(std::abs(a / b - 1) <= 0.0005);
  }
}
#else
TEST_CASE("llama.cpp tests need ../shared/llama.cpp and the mxq tool", "[llama.cpp]") {
  mxq::test::skip_test("llama.cpp snapshot not found (../shared/llama.cpp) or the mxq tool not built");
}
#endif

}  // namespace test_llama_cpp
