// Whole-model quantization on the bundled code-llama: the pipeline runs every recipe, quantized
// checkpoints reload bit-exactly, and bad requests are named errors.
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>

#include "mxq/io/quantized_checkpoint.hpp"
#include "mxq/model/packed_forward.hpp"
#include "mxq/model/perplexity.hpp"
#include "mxq/model/weights.hpp"
#include "mxq/pipeline.hpp"

namespace fs = std::filesystem;
using namespace mxq;

namespace {

const fs::path model_dir = fs::path(MXQ_REPO_DIR) / "examples" / "models" / "code-llama";
const fs::path data_dir = fs::path(MXQ_REPO_DIR) / "examples" / "data" / "code";

const model_weights& original() {
  static const model_weights w = load_model(model_dir);
  return w;
}
std::vector<token_id> first_windows(const char* file, std::size_t n) {
  auto t = read_tokens_u16(data_dir / file, 4096);
  t.resize(n * 256);
  return t;
}
double ppl(const model_weights& w, const std::string& act = {}) {
  static const auto test = first_windows("code-test.u16", 8);
  perplexity_options o;
  o.windows = 8;
  o.act_quant = make_act_quant_fn(act);
  return perplexity(w, test, o).ppl;
}

}  // namespace

TEST_CASE("pipeline: quantized checkpoints reload bit-exactly (same perplexity)", "[pipeline]") {
  const auto calib = first_windows("code-calib-128x256.u16", 4);
  for (const char* method : {"rtn", "sq+awq+gptq"}) {
    INFO(method);
    model_weights w = original();
    model_quant_options o;
    o.method = method;
    o.act_format = std::string(method) == "rtn" ? "" : "mxint8";
    const auto q = quantize_model<mxint4>(w, calib, o);
    CHECK(q.linears.size() == 6 * 7);
    const fs::path out = fs::temp_directory_path() / ("mxq-pipeline-" + std::to_string(::getpid())) / method;
    write_quantized_checkpoint(out, model_dir, w, q, {{"mxq.method", method}});
    const model_weights back = load_model(out);
    for (std::size_t li = 0; li < w.layers.size(); ++li) {
      for (std::string_view n : linear_names) CHECK(back.layers[li].linear(n).weight == w.layers[li].linear(n).weight);
      CHECK(back.layers[li].input_layernorm == w.layers[li].input_layernorm);
    }
    CHECK(ppl(back, o.act_format) == ppl(w, o.act_format));
    // The packed file is ~4.25 bits per decoder weight, not 32.
    CHECK(fs::file_size(out / "model.safetensors") < fs::file_size(model_dir / "model.safetensors"));
  }
}

TEST_CASE("pipeline: GPTQ beats RTN, MXINT8 is near-lossless", "[pipeline]") {
  const auto calib = first_windows("code-calib-128x256.u16", 8);
  const double base = ppl(original());
  auto run = [&](auto tag, const char* method) {
    using F = typename decltype(tag)::type;
    model_weights w = original();
    model_quant_options o;
    o.method = method;
    quantize_model<F>(w, calib, o);
    return ppl(w);
  };
  const double rtn4 = run(format_tag<mxint4>{}, "rtn"), gptq4 = run(format_tag<mxint4>{}, "gptq");
  const double rtn8 = run(format_tag<mxint8>{}, "rtn");
  INFO("base " << base << " mxint4 rtn " << rtn4 << " gptq " << gptq4 << " mxint8 " << rtn8);
  CHECK(gptq4 < rtn4);
  CHECK(rtn4 > base);
  CHECK(rtn8 == Approx(base).epsilon(0.01));
}

TEST_CASE("pipeline: bad requests are named errors", "[pipeline]") {
  model_weights w = original();
  model_quant_options o;
  o.method = "gptq+awq";
  CHECK_THROWS_WITH(quantize_model<mxint4>(w, first_windows("code-calib-128x256.u16", 1), o), Catch::Contains("unknown method"));
  o.method = "rtn";
  std::vector<token_id> ragged(300, 1);
  CHECK_THROWS_WITH(quantize_model<mxint4>(w, ragged, o), Catch::Contains("do not form windows"));
  o.act_format = "mxfp5";
  CHECK_THROWS_WITH(quantize_model<mxint4>(w, first_windows("code-calib-128x256.u16", 1), o), Catch::Contains("unknown format"));
}

TEST_CASE("pipeline: the staged layer sees each group's input as layer_forward does", "[pipeline]") {
  // layer_stages computes group inputs one at a time (one forward per layer instead of one per
  // group); with unchanged weights every input and the final hidden state must be bit-identical
  // to what a hooked layer_forward observes, with and without activation quantization.
  const model_weights& w = original();
  const auto tokens = first_windows("code-calib-128x256.u16", 3);
  for (const char* act_name : {"", "mxint8"}) {
    INFO("act " << act_name);
    const act_quant_fn act = make_act_quant_fn(act_name);
    RowMajorMatrixXf h_ref = embed(w, tokens);
    std::vector<RowMajorMatrixXf> seen;
    forward_hooks hooks;
    hooks.act_quant = act;
    hooks.on_linear_input = [&](std::size_t, linear_group, const RowMajorMatrixXf& in) { seen.push_back(in); };
    layer_forward(w, 1, h_ref, 256, hooks, 2);
    REQUIRE(seen.size() == 4);

    RowMajorMatrixXf h = embed(w, tokens);
    detail::model::workspace ws;
    detail::pipeline::layer_stages st(w, 1, h, 256, act, 2, ws);
    CHECK_THROWS_WITH(detail::pipeline::layer_stages(w, 1, h, 256, act, 2, ws).input(linear_group::o),
                      Catch::Contains("out of order"));
    int i = 0;
    for (linear_group g : {linear_group::qkv, linear_group::o, linear_group::gate_up, linear_group::down})
      CHECK(st.input(g) == seen[static_cast<std::size_t>(i++)]);
    st.finish();
    CHECK(h == h_ref);
  }
}

TEST_CASE("pipeline: attention and MLP block outputs add up to the layer", "[pipeline]") {
  // hidden + attn(norm(hidden)) = mid; mid + mlp(norm(mid)) = layer output.
  const model_weights& w = original();
  const auto& L = w.layers[0];
  const auto tokens = first_windows("code-calib-128x256.u16", 2);
  RowMajorMatrixXf h = embed(w, tokens), out = h;
  layer_forward(w, 0, out, 256);
  RowMajorMatrixXf n(h.rows(), h.cols());
  detail::model::rms_norm_rows(h, L.input_layernorm, static_cast<float>(w.config.rms_norm_eps), n, 0, static_cast<std::size_t>(h.rows()));
  const RowMajorMatrixXf mid = h + attention_block_output(w.config, L.q_proj, L.k_proj, L.v_proj, L.o_proj, n, 256, 2);
  detail::model::rms_norm_rows(mid, L.post_attention_layernorm, static_cast<float>(w.config.rms_norm_eps), n, 0,
                               static_cast<std::size_t>(h.rows()));
  const RowMajorMatrixXf full = mid + mlp_block_output(L.gate_proj, L.up_proj, L.down_proj, n, 2);
  CHECK((full - out).cwiseAbs().maxCoeff() <= 1e-4f * out.cwiseAbs().maxCoeff());
  CHECK_THROWS_WITH(attention_block_output(w.config, L.q_proj, L.k_proj, L.v_proj, L.o_proj, n.topRows(100), 256),
                    Catch::Contains("whole number of windows"));
  CHECK_THROWS_WITH(mlp_block_output(L.gate_proj, L.up_proj, L.down_proj, n.leftCols(10)), Catch::Contains("shapes"));
}

TEST_CASE("pipeline: AWQ (scale + clip) beats RTN on MXINT4, block and linear losses", "[pipeline]") {
  const auto calib = first_windows("code-calib-128x256.u16", 8);
  auto run = [&](const char* method, bool block) {
    model_weights w = original();
    model_quant_options o;
    o.method = method;
    o.awq_block_loss = block;
    o.awq_search_windows = 4;
    quantize_model<mxint4>(w, calib, o);
    return ppl(w);
  };
  const double rtn = run("rtn", true), awq_block = run("awq", true), awq_linear = run("awq", false);
  INFO("rtn " << rtn << " awq block " << awq_block << " awq linear " << awq_linear);
  CHECK(awq_block < rtn);
  CHECK(awq_linear < rtn);
}

TEST_CASE("pipeline: a quantized checkpoint runs through the packed GEMM kernels", "[pipeline][packed]") {
  // Every decoder linear through mxq::gemm on the stored codes: with FP32 activations the
  // perplexity equals the dense dequantized model's up to FP32 summation order. MXFP4 and NVFP4
  // take the SIMD kernels, INT4-g128 the scalar fallback.
  const auto calib = first_windows("code-calib-128x256.u16", 2);
  auto check = [&](auto tag, const char* name) {
    using F = typename decltype(tag)::type;
    INFO(name);
    model_weights w = original();
    model_quant_options o;
    const auto q = quantize_model<F>(w, calib, o);
    const fs::path out = fs::temp_directory_path() / ("mxq-packed-" + std::to_string(::getpid())) / name;
    write_quantized_checkpoint(out, model_dir, w, q, {{"mxq.method", "rtn"}});
    const model_weights back = load_model(out);
    const packed_linears pl = load_packed_linears(out, back.config);
    CHECK(pl.size() == 6 * 7);
    CHECK(pl.contains(5, "down_proj"));
    std::atomic<std::size_t> calls{0};
    const linear_fn inner = pl.hook();
    const auto test = first_windows("code-test.u16", 4);
    perplexity_options po;
    po.windows = 4;
    po.linear = [&](std::size_t l, std::string_view n, matrix_view<const float> x, matrix_view<float> y) {
      ++calls;
      return inner(l, n, x, y);
    };
    const double packed = perplexity(back, test, po).ppl;
    po.linear = {};
    const double dense = perplexity(back, test, po).ppl;
    CHECK(calls.load() >= 6 * 7);  // every linear, at least once per batch
    CHECK(packed == Approx(dense).epsilon(1e-4));
    fs::remove_all(out);
  };
  check(format_tag<mxfp4>{}, "mxfp4");
  check(format_tag<nvfp4>{}, "nvfp4");
  check(format_tag<int4_g128>{}, "int4_g128");
  CHECK_THROWS_WITH(load_packed_linears(model_dir, original().config), Catch::Contains("no packed linear weights"));
}
