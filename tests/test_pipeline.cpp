// Whole-model quantization on the bundled code-llama: the pipeline runs every recipe, quantized
// checkpoints reload bit-exactly, and bad requests are named errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <unistd.h>

#include "mxq/llm/checkpoint.hpp"
#include "mxq/llm/journal.hpp"
#include "mxq/llm/packed_forward.hpp"
#include "mxq/llm/perplexity.hpp"
#include "mxq/llm/weights.hpp"
#include "mxq/llm/quantize_model.hpp"
#include "mxq/recipe.hpp"
#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_pipeline {

namespace fs = std::filesystem;
using namespace mxq;
using namespace mxq::llm;

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
  o.act_quant = make_act_quant_fn(activation_quant_by_name(act));
  return perplexity(w, test, o).ppl;
}

}  // namespace


namespace st = mxq::step;

// Recipes by the steps they hold, with an optional activation format.
recipe make(bool sq, bool awq, bool gptq, const std::string& act = {}) {
  recipe r;
  if (sq) r.smoothquant = st::smoothquant{};
  if (awq) r.awq = st::awq{};
  if (gptq) r.gptq = st::gptq{};
  r.act = activation_quant_by_name(act);
  return r;
}

TEST_CASE("pipeline: quantized checkpoints reload bit-exactly (same perplexity)", "[pipeline]") {
  const auto calib = first_windows("code-calib-128x256.u16", 4);
  for (const bool scaled : {false, true}) {
    INFO("scaled " << scaled);
    model_weights w = original();
    const recipe rc = scaled ? make(true, true, true, "mxint8") : make(false, false, false);
    const auto q = quantize_model<mxint4>(w, calib, rc);
    CHECK(q.linears.size() == 6 * 7);
    const fs::path out = fs::temp_directory_path() / ("mxq-pipeline-" + std::to_string(::getpid())) / rc.name();
    write_quantized_checkpoint(out, model_dir, w, q, {{"mxq.method", rc.name()}});
    const model_weights back = load_model(out);
    for (std::size_t li = 0; li < w.layers.size(); ++li) {
      for (linear l : all_linears) CHECK(back.layers[li][l].weight == w.layers[li][l].weight);
      CHECK(back.layers[li].input_layernorm == w.layers[li].input_layernorm);
    }
    const std::string act = scaled ? "mxint8" : "";
    CHECK(ppl(back, act) == ppl(w, act));
    // The packed file is ~4.25 bits per decoder weight, not 32.
    CHECK(fs::file_size(out / "model.safetensors") < fs::file_size(model_dir / "model.safetensors"));
    fs::remove_all(out);
  }
}

TEST_CASE("pipeline: GPTQ beats RTN, MXINT8 is near-lossless, RTN needs no calibration", "[pipeline]") {
  const auto calib = first_windows("code-calib-128x256.u16", 8);
  const double base = ppl(original());
  auto run = [&](auto tag, const recipe& rc, std::span<const token_id> c) {
    using F = typename decltype(tag)::type;
    model_weights w = original();
    quantize_model<F>(w, c, rc);
    return ppl(w);
  };
  const double rtn4 = run(format_tag<mxint4>{}, make(false, false, false), {});
  const double rtn4c = run(format_tag<mxint4>{}, make(false, false, false), calib);
  const double gptq4 = run(format_tag<mxint4>{}, make(false, false, true), calib);
  const double rtn8 = run(format_tag<mxint8>{}, make(false, false, false), {});
  INFO("base " << base << " mxint4 rtn " << rtn4 << " gptq " << gptq4 << " mxint8 " << rtn8);
  CHECK(rtn4 == rtn4c);  // calibration tokens change nothing for RTN
  CHECK(gptq4 < rtn4);
  CHECK(rtn4 > base);
  CHECK(rtn8 == Approx(base).epsilon(0.01));
}

TEST_CASE("pipeline: bad requests are named errors", "[pipeline]") {
  model_weights w = original();
  std::vector<token_id> ragged(300, 1);
  CHECK_THROWS_WITH(quantize_model<mxint4>(w, ragged, make(false, false, true)), Catch::Contains("do not form windows"));
  CHECK_THROWS_WITH(quantize_model<mxint4>(w, {}, make(false, true, false)), Catch::Contains("do not form windows"));
}

TEST_CASE("pipeline: the layer walker is layer_forward, in order, for any thread count", "[pipeline]") {
  const model_weights& w = original();
  const auto tokens = first_windows("code-calib-128x256.u16", 3);
  for (const char* act_name : {"", "mxint8"}) {
    INFO("act " << act_name);
    forward_hooks hooks;
    hooks.act_quant = make_act_quant_fn(activation_quant_by_name(act_name));
    RowMajorMatrixXf h_ref = embed(w, tokens);
    std::vector<RowMajorMatrixXf> seen;
    forward_hooks observe = hooks;
    observe.on_linear_input = [&](std::size_t, linear_group, const RowMajorMatrixXf& in) { seen.push_back(in); };
    layer_forward(w, 1, h_ref, 256, observe, 1);
    REQUIRE(seen.size() == 4);
    for (unsigned threads : {1u, 2u, 3u}) {
      INFO("threads " << threads);
      RowMajorMatrixXf h = embed(w, tokens);
      layer_walker lw(w, 1, h, 256, hooks, threads);
      std::size_t i = 0;
      for (linear_group g : all_groups) {
        CHECK(lw.next() == g);
        CHECK(lw.input(g) == seen[i++]);  // bit-identical, whatever the thread count
      }
      CHECK_FALSE(lw.next().has_value());
      lw.finish();
      CHECK(h == h_ref);
    }
    RowMajorMatrixXf h = embed(w, tokens);
    layer_walker skip(w, 1, h, 256, hooks, 2);
    CHECK_THROWS_WITH(skip.input(linear_group::o), Catch::Contains("out of order"));
    skip.finish();  // runs every group
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

TEST_CASE("pipeline: AWQ scales every group, down_proj folded into up_proj, the layer unchanged in fp32", "[pipeline]") {
  // llm-awq scales mlp.down_proj with up_proj as the previous op ([intermediate, hidden] ->
  // [hidden, intermediate]); the fold must leave the fp32 layer's function unchanged.
  const model_weights& w0 = original();
  const auto tokens = first_windows("code-calib-128x256.u16", 4);
  const RowMajorMatrixXf h0 = embed(w0, tokens);
  for (const bool sq : {false, true}) {
    INFO("smoothquant " << sq);
    model_weights w = w0;
    model_options mo;
    mo.awq_block_windows = 2;
    recipe rc = make(sq, true, true);
    rc.awq->gptq_in_loop = st::awq::gptq_mode::off;  // keep the searched ratios (verify may pick s = 1)
    const auto reports = scale_layer<mxint4>(w, 0, h0, rc, mo);
    REQUIRE(reports.size() == 4);
    for (const auto& r : reports) {
      INFO(name(r.group));
      CHECK(r.scaled);
      REQUIRE(r.awq_scales.size() == w.layers[0][members(r.group)[0]].in_features());
      CHECK(std::any_of(r.awq_scales.begin(), r.awq_scales.end(), [](float s) { return s != 1.0f; }));
      CHECK(r.smooth_scales.empty() == (!sq || r.group == linear_group::o || r.group == linear_group::down));
    }
    const auto& L0 = w0.layers[0];
    const auto& L = w.layers[0];
    CHECK(L.down_proj.weight != L0.down_proj.weight);  // scaled by s
    CHECK(L.up_proj.weight != L0.up_proj.weight);      // rows divided by s
    RowMajorMatrixXf a = h0, b = h0;
    layer_forward(w0, 0, a, 256, {}, 2);
    layer_forward(w, 0, b, 256, {}, 2);
    CHECK((a - b).norm() <= 1e-5 * a.norm());
  }
}

TEST_CASE("pipeline: AWQ (scale + clip) beats RTN on MXINT4, block and linear losses", "[pipeline]") {
  const auto calib = first_windows("code-calib-128x256.u16", 8);
  auto run = [&](const recipe& rc, awq_loss_kind loss) {
    model_weights w = original();
    model_options o;
    o.awq_loss = loss;
    o.awq_block_windows = 4;
    quantize_model<mxint4>(w, calib, rc, o);
    return ppl(w);
  };
  recipe awq = make(false, true, false);
  awq.awq->options.search_tokens = 4 * 256;
  const double rtn = run(make(false, false, false), awq_loss_kind::block);
  const double awq_block = run(awq, awq_loss_kind::block), awq_linear = run(awq, awq_loss_kind::linear);
  INFO("rtn " << rtn << " awq block " << awq_block << " awq linear " << awq_linear);
  CHECK(awq_block < rtn);
  CHECK(awq_linear < rtn);
}

TEST_CASE("pipeline: one composition - quantize_group on layer 0 makes the model's choices", "[pipeline]") {
  // The model driver runs the recipe's scale_group / finish_group per group: on layer 0 (inputs
  // straight from the embeddings) quantize_group on the captured q/k/v input chooses the same
  // SmoothQuant and AWQ scales (verify included) and the same GPTQ codes as quantize_model.
  const auto calib = first_windows("code-calib-128x256.u16", 4);
  const model_weights& w0 = original();
  recipe rc = make(true, true, true);
  rc.awq->options.search_tokens = 512;
  model_options mo;
  mo.awq_loss = awq_loss_kind::linear;
  model_weights w = w0;
  const auto q = quantize_model<mxint4>(w, calib, rc, mo);
  RowMajorMatrixXf h = embed(w0, calib);
  layer_walker lw(w0, 0, h, 256);
  const RowMajorMatrixXf x = lw.input(linear_group::qkv);
  const auto& L = w0.layers[0];
  group_options go;
  go.clip = {false, false, true};
  const auto g = quantize_group<mxint4>(std::vector<row_matrix_f>{L.q_proj.weight, L.k_proj.weight, L.v_proj.weight}, x, rc, go);
  const group_report& rep = q.groups.at(0);
  REQUIRE(rep.group == linear_group::qkv);
  CHECK(rep.alpha == g.alpha);
  CHECK(rep.awq_ratio == g.awq_ratio);
  CHECK(rep.smooth_scales == g.smooth_scales);
  CHECK(rep.awq_scales == g.awq_scales);
  // GPTQ then runs on X / s as the folded norm computes it (the model) or as X divided by s (the
  // group): the same inputs up to rounding, so the codes agree almost everywhere. (v_proj's rows
  // also absorb the o group's scale in the model, so only q and k are comparable.)
  for (std::size_t i = 0; i < 2; ++i) {
    const linear l = members(linear_group::qkv)[i];
    const RowMajorMatrixXf& mine = w.layers[0][l].weight;
    const std::size_t n = static_cast<std::size_t>(mine.size());
    std::size_t same = 0;
    for (std::size_t k = 0; k < n; ++k) same += mine.data()[k] == g.weights[i].data()[k];
    INFO(name(l) << ": " << same << " / " << n << " identical");
    CHECK(static_cast<double>(same) >= 0.99 * static_cast<double>(n));
  }
}

TEST_CASE("pipeline: the streamed quantize_model writes the in-memory checkpoint, byte for byte", "[pipeline][stream]") {
  const auto calib = first_windows("code-calib-128x256.u16", 4);
  const fs::path dir = fs::temp_directory_path() / ("mxq-stream-" + std::to_string(::getpid()));
  for (const recipe& rc : {make(false, false, false), make(true, true, true, "mxint8")}) {
    INFO(rc.name());
    model_weights w = original();
    const auto q = quantize_model<nvfp4>(w, calib, rc);
    write_quantized_checkpoint(dir / "memory", model_dir, w, q, {{"mxq.method", rc.name()}});

    const model_reader src(model_dir);
    quantized_checkpoint_writer<nvfp4> out(dir / "stream", model_dir, src.config(), src.source(), {{"mxq.method", rc.name()}},
                                           default_max_shard_bytes, resumable::no, rc.calibrates());
    CHECK(q.input_amax.size() == (rc.calibrates() ? q.linears.size() : 0u));  // recorded for calibrated runs
    std::size_t layers = 0, linears = 0;
    std::vector<group_report> groups;
    const layer_sink<nvfp4> sink = [&](std::size_t li, const decoder_layer_weights& L, quantized_model<nvfp4>& ql) {
      CHECK(li == layers++);
      for (const auto& [name, p] : ql.linears) out.put_linear(name, p), ++linears;
      for (const auto& [name, a] : ql.input_amax) out.put_input_amax(name, a);
      groups.insert(groups.end(), ql.groups.begin(), ql.groups.end());
      out.put_layer(li, L);
      for (linear l : all_linears) {  // plain RTN quantizes in the map: no fp32 weights made
        if (rc.calibrates()) CHECK(L[l].weight == w.layers[li][l].weight);
        else CHECK(L[l].weight.size() == 0);
        CHECK(L[l].bias == w.layers[li][l].bias);
      }
      CHECK(L.input_layernorm == w.layers[li].input_layernorm);
      CHECK(L.post_attention_layernorm == w.layers[li].post_attention_layernorm);
    };
    quantize_model_streaming<nvfp4>(src, calib, rc, sink);
    out.finish(src.final_norm());
    CHECK(layers == 6);
    CHECK(linears == q.linears.size());
    CHECK(groups.size() == q.groups.size());
    CHECK(mxq::test::slurp(dir / "stream" / "model.safetensors") == mxq::test::slurp(dir / "memory" / "model.safetensors"));
    CHECK(fs::exists(dir / "stream" / "config.json"));

    // Sharded (a 1 MB limit on a 4 MB checkpoint): Hugging Face names and index, the same tensors.
    write_quantized_checkpoint(dir / "sharded", model_dir, w, q, {{"mxq.method", rc.name()}}, 1'000'000);
    CHECK(!fs::exists(dir / "sharded" / "model.safetensors"));
    CHECK(fs::exists(dir / "sharded" / "model.safetensors.index.json"));
    std::size_t shards = 0;
    for (const auto& e : fs::directory_iterator(dir / "sharded")) {
      const std::string f = e.path().filename().string();
      CHECK(f.find(".tmp.") == std::string::npos);  // nothing half-written left behind
      if (f.rfind("model-", 0) == 0) {
        ++shards;
        const safetensors_file sf(e.path());  // at most the limit, unless one tensor alone is larger
        std::size_t bytes = 0;
        for (const auto& t : sf.tensors()) bytes += t.nbytes();
        CHECK((bytes <= 1'000'000 || sf.tensors().size() == 1));
      }
    }
    CHECK(shards >= 3);
    const checkpoint a(dir / "memory"), b(dir / "sharded");
    CHECK(a.names() == b.names());
    for (const auto& n : a.names()) {
      const auto x = a.bytes(n), y = b.bytes(n);
      CHECK(std::equal(x.begin(), x.end(), y.begin(), y.end()));
    }
    // Written again unsharded into the same directory: the stale index and shards go.
    write_quantized_checkpoint(dir / "sharded", model_dir, w, q, {{"mxq.method", rc.name()}});
    CHECK(!fs::exists(dir / "sharded" / "model.safetensors.index.json"));
    CHECK(mxq::test::slurp(dir / "sharded" / "model.safetensors") == mxq::test::slurp(dir / "memory" / "model.safetensors"));
    for (const auto& e : fs::directory_iterator(dir / "sharded")) CHECK(e.path().filename().string().rfind("model-", 0) != 0);
    fs::remove_all(dir);
  }
}

// quantize_stored against quantize<F> of the fp32 matrix, per stored dtype and kernel kind.
template <format_type F>
void check_stored_like_fp32(const checkpoint& ck, const std::string& prefix, const RowMajorMatrixXf& ref, int threads) {
  const std::size_t R = static_cast<std::size_t>(ref.rows()), C = static_cast<std::size_t>(ref.cols());
  const packed_matrix<F> a = quantize_stored<F>(ck, prefix, R, C, {}, threads);
  const packed_matrix<F> b = quantize<F>(matrix_view<const float>(ref.data(), R, C));
  CHECK(std::ranges::equal(a.code_bytes(), b.code_bytes()));
  CHECK(std::ranges::equal(a.scale_data(), b.scale_data()));
  CHECK(a.tensor().scale == b.tensor().scale);
}

TEST_CASE("pipeline: RTN straight from the stored bytes is quantize of the fp32 weight", "[pipeline][stream]") {
  const mxq::test::temp_dir dir("stored");
  // 3000 rows of 96 columns (three 256 KB bf16 slices, five f32 ones: uneven splits over
  // threads), bf16-exact values, some heavy ones.
  const std::size_t R = 3000, C = 96;
  RowMajorMatrixXf m = mxq::test::randn(R, C, 7);
  for (Eigen::Index i = 0; i < m.size(); ++i)
    m.data()[i] = bf16::from_float(m.data()[i] * (i % 37 == 0 ? 20.0f : 1.0f)).to_float();
  std::vector<std::uint16_t> b16(m.size()), h16(m.size());
  for (Eigen::Index i = 0; i < m.size(); ++i) {
    b16[i] = bf16::from_float(m.data()[i]).bits;
    h16[i] = f16::from_float(m.data()[i]).bits;
  }
  RowMajorMatrixXf mh(R, C);  // the f16 values (exact too: |x| < 65504, 8-bit mantissas)
  for (Eigen::Index i = 0; i < m.size(); ++i) mh.data()[i] = f16{h16[i]}.to_float();
  safetensors_writer w;
  w.add_f32("f32.weight", {R, C}, std::span<const float>(m.data(), m.size()));
  w.add("bf16.weight", st_dtype::BF16, {R, C}, std::as_bytes(std::span<const std::uint16_t>(b16)));
  w.add("f16.weight", st_dtype::F16, {R, C}, std::as_bytes(std::span<const std::uint16_t>(h16)));
  std::vector<std::uint16_t> bad = b16;
  bad[5 * C + 3] = 0x7FC0;   // NaN at element 483
  bad[2500 * C + 1] = 0x7F80;  // Inf later, in another thread's range: the first one is named
  w.add("bad.weight", st_dtype::BF16, {R, C}, std::as_bytes(std::span<const std::uint16_t>(bad)));
  bad[5 * C + 3] = b16[5 * C + 3];  // only the Inf, found by the last range
  w.add("bad2.weight", st_dtype::BF16, {R, C}, std::as_bytes(std::span<const std::uint16_t>(bad)));
  w.write(dir / "model.safetensors");
  const checkpoint ck(dir.path);
  for (int threads : {1, 2, 3}) {
    INFO("threads " << threads);
    for (const char* p : {"f32", "bf16"}) {
      check_stored_like_fp32<mxfp4>(ck, p, m, threads);    // e8m0 SIMD kernel
      check_stored_like_fp32<nvfp4>(ck, p, m, threads);    // ue4m3 kernel, tensor scale
      check_stored_like_fp32<mxint8>(ck, p, m, threads);
      check_stored_like_fp32<int4_g128>(ck, p, m, threads);  // no SIMD kernel: converted first
    }
    check_stored_like_fp32<mxfp4>(ck, "f16", mh, threads);
    check_stored_like_fp32<nvfp4>(ck, "f16", mh, threads);
    CHECK_THROWS_WITH(quantize_stored<mxfp4>(ck, "bad", R, C, {}, threads),
                      Catch::Contains("'bad.weight'") && Catch::Contains("non-finite") && Catch::Contains("element 483"));
    CHECK_THROWS_WITH(quantize_stored<nvfp4>(ck, "bad2", R, C, {}, threads),
                      Catch::Contains("'bad2.weight'") && Catch::Contains("(inf) at element 240001"));
  }
  CHECK_THROWS_WITH(quantize_stored<mxfp4>(ck, "bf16", R, C + 32), Catch::Contains("'bf16.weight' has shape"));
  CHECK_THROWS_WITH(quantize_stored<mxfp4>(ck, "none", R, C), Catch::Contains("'none.weight'"));
}

// One streamed run into `out` with its journal (key `key`), stopped as if killed once `stop_after`
// layers are done (returns false then), or resumed at `first` with the journal's activations.
bool streamed_run(const model_reader& src, std::span<const token_id> calib, const recipe& rc, const fs::path& out,
                  const std::string& key, std::size_t stop_after, std::size_t first, RowMajorMatrixXf hidden) {
  quantized_checkpoint_writer<mxint4> w(out, model_dir, src.config(), src.source(), {}, 1'000'000, resumable::yes);
  w.resume_layers(first);
  run_journal j(out, key);
  stream_options so;
  so.first_layer = first;
  so.hidden = std::move(hidden);
  struct stop {};
  so.layer_done = [&](std::size_t done, const RowMajorMatrixXf& h) {
    w.flush();
    j.save(done, h);
    if (done == stop_after) throw stop{};  // as if killed here (the writer keeps its partial files)
  };
  const layer_sink<mxint4> sink = [&](std::size_t li, const decoder_layer_weights& L, quantized_model<mxint4>& q) {
    for (const auto& [name, p] : q.linears) w.put_linear(name, p);
    w.put_layer(li, L);
  };
  try {
    quantize_model_streaming<mxint4>(src, calib, rc, sink, {}, so);
  } catch (const stop&) {
    return false;
  }
  w.finish(src.final_norm());
  j.finish();
  return true;
}

TEST_CASE("pipeline: a streamed run resumed from its journal writes the uninterrupted checkpoint", "[pipeline][stream][resume]") {
  const mxq::test::temp_dir dir("journal");
  const auto calib = first_windows("code-calib-128x256.u16", 2);
  const recipe rc = make(false, true, true);
  const model_reader src(model_dir);
  auto run = [&](const fs::path& out, std::size_t stop_after, std::size_t first, RowMajorMatrixXf hidden) {
    return streamed_run(src, calib, rc, out, "key-1", stop_after, first, std::move(hidden));
  };
  REQUIRE(run(dir / "full", 99, 0, {}));
  REQUIRE(!run(dir / "part", 3, 0, {}));
  CHECK(!fs::exists(dir / "part" / "model.safetensors.index.json"));
  const auto p = run_journal(dir / "part", "key-1").load();
  REQUIRE(p);
  CHECK(p->layers_done == 3);
  CHECK(p->hidden.rows() == 512);
  CHECK_THROWS_WITH(run_journal(dir / "part", "key-2").load(), Catch::Contains("partial run of another recipe"));
  REQUIRE(run(dir / "part", 99, p->layers_done, p->hidden));
  for (const auto& e : fs::directory_iterator(dir / "full")) CHECK(mxq::test::slurp(e.path()) == mxq::test::slurp(dir / "part" / e.path().filename()));
  std::size_t a = 0, b = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir / "full")) ++a;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir / "part")) ++b;
  CHECK(a == b);
  // Resuming without the partial files (or with other ones) is refused, not silently wrong.
  fs::create_directories(dir / "empty");
  quantized_checkpoint_writer<mxint4> w(dir / "empty", model_dir, src.config(), src.source(), {}, 1'000'000, resumable::yes);
  CHECK_THROWS_WITH(w.resume_layers(3), Catch::Contains("partial checkpoint files"));
  const RowMajorMatrixXf wrong(7, 3);
  stream_options so;
  so.first_layer = 2, so.hidden = wrong;
  CHECK_THROWS_WITH(quantize_model_streaming<mxint4>(src, calib, rc, {}, {}, so), Catch::Contains("to resume at layer 2"));
}

TEST_CASE("pipeline: QEP at alpha 0 is plain GPTQ bit for bit and its correction lowers perplexity and resumes", "[pipeline][qep]") {
  const auto calib = first_windows("code-calib-128x256.u16", 8);
  auto with_qep = [](recipe r, float alpha, float damp = 1.0f) {
    r.qep = st::qep{};
    r.qep->options.alpha = alpha, r.qep->options.damp = damp;
    return r;
  };
  auto run = [&](const recipe& rc) {
    model_weights w = original();
    quantize_model<mxint4>(w, calib, rc);
    return w;
  };
  const model_weights gptq = run(make(false, false, true)), gptq0 = run(with_qep(make(false, false, true), 0.0f));
  for (std::size_t li = 0; li < gptq.layers.size(); ++li)
    for (linear l : all_linears) REQUIRE(gptq.layers[li][l].weight == gptq0.layers[li][l].weight);
  const double p_rtn = ppl(run(make(false, false, false))), p_qep_rtn = ppl(run(with_qep(make(false, false, false), 0.5f)));
  const double p_gptq = ppl(gptq), p_qep_gptq = ppl(run(with_qep(make(false, false, true), 0.5f)));
  INFO("mxint4 rtn " << p_rtn << " qep+rtn " << p_qep_rtn << " gptq " << p_gptq << " qep+gptq " << p_qep_gptq);
  CHECK(p_qep_rtn < p_rtn);
  CHECK(with_qep(make(false, false, true), 0.5f).name() == "qep+gptq");
  // One group alone has no upstream error to correct: quantize_group says so.
  const row_matrix_f x = row_matrix_f::Random(64, 256), wq = row_matrix_f::Random(32, 256);
  CHECK_THROWS_WITH(quantize_group<mxint4>(std::vector<row_matrix_f>{wq}, x, with_qep(make(false, false, true), 0.5f)),
                    Catch::Contains("quantize_model"));

  // Streamed and resumed: both streams go through the journal ([quantized; full precision]).
  const mxq::test::temp_dir dir("journal-qep");
  const auto c2 = first_windows("code-calib-128x256.u16", 2);
  const recipe rc = with_qep(make(false, false, true), 0.5f, 0.01f);
  const model_reader src(model_dir);
  auto stream = [&](const fs::path& out, std::size_t stop_after, std::size_t first, RowMajorMatrixXf hidden) {
    return streamed_run(src, c2, rc, out, "key-qep", stop_after, first, std::move(hidden));
  };
  REQUIRE(stream(dir / "full", 99, 0, {}));
  REQUIRE(!stream(dir / "part", 2, 0, {}));
  const auto p = run_journal(dir / "part", "key-qep").load();
  REQUIRE(p);
  CHECK(p->hidden.rows() == 2 * 512);
  REQUIRE(stream(dir / "part", 99, p->layers_done, p->hidden));
  for (const auto& e : fs::directory_iterator(dir / "full"))
    CHECK(mxq::test::slurp(e.path()) == mxq::test::slurp(dir / "part" / e.path().filename()));
  stream_options so;
  so.first_layer = 2, so.hidden = RowMajorMatrixXf(512, src.config().hidden_size);  // one stream only
  CHECK_THROWS_WITH(quantize_model_streaming<mxint4>(src, c2, rc, {}, {}, so), Catch::Contains("expected 1024x"));
}

TEST_CASE("pipeline: a Hadamard-rotated model in fp32 gives the original logits and GPTQ on it runs", "[pipeline][rotation]") {
  const auto tokens = first_windows("code-test.u16", 2);
  const RowMajorMatrixXf ref = forward_logits(original(), tokens, 256);
  for (std::size_t block : {16u, 32u, 64u}) {
    INFO("block " << block);
    hadamard_rotation r;
    r.block = block;
    model_weights w = original();
    for (auto& L : w.layers)
      for (linear l : all_linears)
        rotate_rows(matrix_view<float>(L[l].weight.data(), static_cast<std::size_t>(L[l].weight.rows()),
                                       static_cast<std::size_t>(L[l].weight.cols())),
                    r);
    forward_hooks h;
    h.act_quant = with_rotation(r, {});
    const RowMajorMatrixXf got = forward_logits(w, tokens, 256, h);
    CHECK((got - ref).cwiseAbs().maxCoeff() < 1e-4f * std::max(1.0f, ref.cwiseAbs().maxCoeff()));
    forward_hooks none;
    CHECK((forward_logits(w, tokens, 256, none) - ref).cwiseAbs().maxCoeff() > 0.1f);  // the rotation matters
  }
  // GPTQ with the rotation: a real run, and named errors where it cannot apply.
  const auto calib = first_windows("code-calib-128x256.u16", 8);
  recipe rc = make(false, false, true);
  rc.rotation = parse_rotation("hadamard:32", "test");
  CHECK(rc.name() == "hadamard32+gptq");
  model_weights w = original();
  quantize_model<mxfp4>(w, calib, rc);
  perplexity_options po;
  po.windows = 8;
  po.act_quant = with_rotation(rc.rotation, {});
  const double rotated = perplexity(w, first_windows("code-test.u16", 8), po).ppl;
  INFO("mxfp4 hadamard32+gptq ppl " << rotated << " (bf16 " << ppl(original()) << ")");
  CHECK(rotated < 1.2 * ppl(original()));
  model_weights w2 = original();
  rc.rotation = parse_rotation("hadamard:128", "test");  // 704 MLP channels are not 128-blocks
  CHECK_THROWS_WITH(quantize_model<mxfp4>(w2, calib, rc), Catch::Contains("mlp.down_proj.weight") && Catch::Contains("704 columns"));
  rc.awq = st::awq{};
  CHECK_THROWS_WITH(quantize_model<mxfp4>(w2, calib, rc), Catch::Contains("SmoothQuant/AWQ"));
  CHECK_THROWS_WITH(parse_rotation("hadamard:24", "--rotate"), Catch::Contains("--rotate: rotation 'hadamard:24'"));
  CHECK_THROWS_WITH(parse_rotation("walsh", "--rotate"), Catch::Contains("not hadamard:B"));
  CHECK(!parse_rotation("none", "x"));
}

TEST_CASE("pipeline: a streamed writer that is not finished leaves no checkpoint behind", "[pipeline][stream]") {
  const fs::path dir = fs::temp_directory_path() / ("mxq-unfinished-" + std::to_string(::getpid()));
  {
    const model_reader src(model_dir);
    quantized_checkpoint_writer<mxint4> out(dir, model_dir, src.config(), src.source(), {});
    model_weights w = original();
    const auto q = quantize_model<mxint4>(w, {}, recipe{});
    out.put_linear(q.linears[0].first, q.linears[0].second);
    CHECK_THROWS_WITH(out.put_linear(q.linears[0].first, q.linears[0].second), Catch::Contains("written twice"));
  }  // destroyed before finish(), as when quantization throws
  for (const auto& e : fs::directory_iterator(dir)) FAIL("left behind: " << e.path());
  {  // writing into the source model's own directory would replace (or delete) its shards
    const model_reader src(model_dir);
    CHECK_THROWS_WITH(quantized_checkpoint_writer<mxint4>(model_dir / "." , model_dir, src.config(), src.source(), {}),
                      Catch::Contains("source model's directory"));
    CHECK(fs::exists(model_dir / "model.safetensors"));
  }
  safetensors_stream_writer sw;
  sw.declare("a", st_dtype::F32, {2});
  sw.open(dir / "x.safetensors");
  CHECK_THROWS_WITH(sw.commit(), Catch::Contains("never written"));
  CHECK_THROWS_WITH(sw.put("b", {}), Catch::Contains("not declared"));
  CHECK(!fs::exists(dir / "x.safetensors"));
  fs::remove_all(dir);
}

TEST_CASE("pipeline: model_reader embeds by rows like the whole model, and names bad ids", "[pipeline][stream]") {
  const model_reader src(model_dir);
  const auto t = first_windows("code-test.u16", 1);
  CHECK(src.embed(t) == embed(original(), t));
  CHECK(src.final_norm() == original().norm);
  const decoder_layer_weights L = src.layer(3);
  for (linear l : all_linears) CHECK(L[l].weight == original().layers[3][l].weight);
  const std::vector<token_id> bad = {1, 4096};
  CHECK_THROWS_WITH(src.embed(bad), Catch::Contains("token id 4096") && Catch::Contains("vocabulary"));
  CHECK_THROWS_WITH(src.layer(6), Catch::Contains("out of range"));
  const decoder_layer_weights N = src.layer_norms_and_biases(3);
  for (linear l : all_linears) CHECK((N[l].weight.size() == 0 && N[l].bias == L[l].bias));
  CHECK(N.input_layernorm == L.input_layernorm);
  CHECK(N.post_attention_layernorm == L.post_attention_layernorm);
  src.prefetch_layer(5);  // a hint: no effect on the values
  CHECK_THROWS_WITH(src.prefetch_layer(6), Catch::Contains("out of range"));
}

TEST_CASE("pipeline: checkpoints do not depend on the thread count", "[pipeline][determinism]") {
  const auto calib = first_windows("code-calib-128x256.u16", 4);
  const recipe recipes[] = {make(false, false, true), make(false, true, true), make(true, false, true),
                            make(true, true, true, "mxint8")};
  for (const recipe& rc : recipes) {
    INFO(rc.name());
    std::vector<std::vector<float>> first;
    for (unsigned threads : {1u, 2u, 3u}) {
      INFO("threads " << threads);
      model_weights w = original();
      model_options mo;
      mo.threads = threads;
      mo.awq_block_windows = 2;
      const auto q = quantize_model<mxint4>(w, calib, rc, mo);
      std::vector<std::vector<float>> all;
      for (const auto& L : w.layers) {
        for (linear l : all_linears) all.emplace_back(L[l].weight.data(), L[l].weight.data() + L[l].weight.size());
        all.emplace_back(L.input_layernorm.data(), L.input_layernorm.data() + L.input_layernorm.size());
        all.emplace_back(L.post_attention_layernorm.data(), L.post_attention_layernorm.data() + L.post_attention_layernorm.size());
      }
      if (first.empty()) first = std::move(all);
      else CHECK(all == first);
    }
  }
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
    const auto q = quantize_model<F>(w, calib, make(false, false, false));
    const fs::path out = fs::temp_directory_path() / ("mxq-packed-" + std::to_string(::getpid())) / name;
    write_quantized_checkpoint(out, model_dir, w, q, {{"mxq.method", "rtn"}});
    const model_weights back = load_model(out);
    const packed_linears pl = load_packed_linears(out, back.config);
    CHECK(pl.size() == 6 * 7);
    CHECK(pl.contains(5, linear::down_proj));
    std::atomic<std::size_t> calls{0};
    const linear_fn inner = pl.hook();
    const auto test = first_windows("code-test.u16", 4);
    perplexity_options po;
    po.windows = 4;
    po.linear = [&](std::size_t l, linear n, matrix_view<const float> x, matrix_view<float> y) {
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

}  // namespace test_pipeline
