// Whole-model quantization on the bundled code-llama: the pipeline runs every recipe, quantized
// checkpoints reload bit-exactly, and bad requests are named errors.
#include <catch2/catch.hpp>

#include <filesystem>

#include "mxq/io/quantized_checkpoint.hpp"
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
