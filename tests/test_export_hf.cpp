// compressed-tensors and ModelOpt NVFP4 exports (issue 12): every exported linear, decoded by a
// reader written from the format description (shared docs checkpoint-formats.md §3-4: the E2M1
// table, float8_e4m3fn bits, E8M0 bias 127, int32 words of offset nibbles, zero points packed
// along the output dimension), is what mxq dequantizes, bit for bit; fused q/k/v and gate/up
// share their NVFP4 scales; quantization_config / hf_quant_config.json carry what the loaders
// check; what has no exact form is refused by name before anything is written.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mxq/llm/checkpoint.hpp>
#include <mxq/llm/export_hf.hpp>
#include <mxq/llm/quantize_model.hpp>
#include <mxq/llm/weights.hpp>
#include <mxq/recipe.hpp>

#include "support.hpp"
#include "synthetic_model.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_export_hf {

namespace fs = std::filesystem;
using namespace mxq;
using namespace mxq::llm;
using Catch::Matchers::Contains;

namespace {

// ---- the reader, from the spec -------------------------------------------------------------

// E2M1: codes 0-7 = 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 the sign.
double e2m1(unsigned c) {
  static constexpr double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return (c & 8 ? -1.0 : 1.0) * mag[c & 7];
}
// float8_e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; S.1111.111 is NaN, no Inf.
double e4m3fn(std::uint8_t b) {
  const int e = (b >> 3) & 0xF, m = b & 7;
  if (e == 15 && m == 7) return NAN;
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return b & 0x80 ? -v : v;
}

struct st_file {  // the safetensors files of an export directory, as mxq's container reader sees them
  checkpoint ck;
  explicit st_file(const fs::path& d) : ck(d) {}
  template <class T>
  std::vector<T> get(const std::string& n, std::vector<std::size_t> shape, st_dtype dt) const {
    INFO(n);
    REQUIRE(ck.contains(n));
    CHECK(ck.info(n).dtype == dt);
    CHECK(ck.info(n).shape == shape);
    const auto b = ck.bytes(n);
    std::vector<T> v(b.size() / sizeof(T));
    std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
    return v;
  }
};

// The dequantized [rows, cols] weight of linear `base` as the spec defines it for the target.
std::vector<float> decode(const st_file& f, const std::string& base, const std::string& scheme, std::size_t R,
                          std::size_t C, double* tensor_scale = nullptr) {
  std::vector<float> w(R * C);
  if (scheme == "nvfp4-ct" || scheme == "nvfp4-modelopt" || scheme == "mxfp4-ct") {
    const bool nv = scheme != "mxfp4-ct", mo = scheme == "nvfp4-modelopt";
    const std::size_t g = nv ? 16 : 32;
    const auto packed = f.get<std::uint8_t>(base + (mo ? ".weight" : ".weight_packed"), {R, C / 2}, st_dtype::U8);
    const auto sc = f.get<std::uint8_t>(base + ".weight_scale", {R, C / g}, nv ? st_dtype::F8_E4M3 : st_dtype::U8);
    double t = 1.0;
    if (mo) {
      t = f.get<float>(base + ".weight_scale_2", {}, st_dtype::F32)[0];  // a multiplier
    } else if (nv) {
      // A divisor; vLLM inverts it in fp32 on load and multiplies by that.
      const float gs = f.get<float>(base + ".weight_global_scale", {1}, st_dtype::F32)[0];
      t = static_cast<double>(1.0f / gs);
    }
    if (tensor_scale) *tensor_scale = t;
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t c = 0; c < C; ++c) {
        const std::uint8_t byte = packed[r * (C / 2) + c / 2];
        const unsigned code = c % 2 ? byte >> 4 : byte & 0xF;  // element 2i in the low nibble
        const std::uint8_t s = sc[r * (C / g) + c / g];
        const double scale = nv ? e4m3fn(s) * t : std::ldexp(1.0, int(s) - 127);
        w[r * C + c] = static_cast<float>(e2m1(code) * scale);
      }
    return w;
  }
  // pack-quantized INT4: word w of a row holds elements 8w..8w+7 at bits 4k, as q + 8.
  const bool group = scheme.find("g128") != std::string::npos, asym = scheme.find("asym") != std::string::npos;
  const std::size_t G = group ? C / 128 : 1, gl = group ? 128 : C;
  const auto words = f.get<std::uint32_t>(base + ".weight_packed", {R, C / 8}, st_dtype::I32);
  const auto sc = f.get<float>(base + ".weight_scale", {R, G}, st_dtype::F32);
  CHECK(f.get<std::int64_t>(base + ".weight_shape", {2}, st_dtype::I64) == std::vector<std::int64_t>{std::int64_t(R), std::int64_t(C)});
  std::vector<std::uint32_t> zp;
  if (asym) zp = f.get<std::uint32_t>(base + ".weight_zero_point", {(R + 7) / 8, G}, st_dtype::I32);
  else CHECK(!f.ck.contains(base + ".weight_zero_point"));
  for (std::size_t r = 0; r < R; ++r)
    for (std::size_t c = 0; c < C; ++c) {
      const int q = static_cast<int>((words[r * (C / 8) + c / 8] >> (4 * (c % 8))) & 0xF) - 8;
      const std::size_t b = c / gl;
      const int z = asym ? static_cast<int>((zp[(r / 8) * G + b] >> (4 * (r % 8))) & 0xF) - 8 : 0;
      w[r * C + c] = static_cast<float>((q - z) * static_cast<double>(sc[r * G + b]));
    }
  return w;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

hf_export_options opts(hf_target t, std::optional<bool> w4a4 = std::nullopt) {
  hf_export_options o;
  o.target = t;
  o.w4a4 = w4a4;
  return o;
}

// ---- fixtures --------------------------------------------------------------------------------

mxq::test::synthetic_spec spec() {
  mxq::test::synthetic_spec s;
  s.H = 128, s.I = 256, s.heads = 4, s.kv = 2, s.hd = 32, s.V = 96;  // whole groups of 128 everywhere
  return s;
}
const std::vector<token_id>& calib() { return mxq::test::synthetic_calib(); }
template <format_type F>
void quantize_to(const fs::path& src, const fs::path& out, recipe rc) {
  mxq::test::quantize_synthetic<F>(src, out, std::move(rc));
}

// Every linear of the export `out` (scheme as decode() names it) against mxq's own dequantized
// weights of the checkpoint `dir`; returns each linear's tensor scale (NVFP4).
template <format_type F>
std::map<std::string, double> check_linears(const fs::path& dir, const fs::path& out, const std::string& scheme,
                                            bool exact_ct_division = true) {
  const model_config cfg = load_model_config(dir);
  const checkpoint ck(dir);
  const st_file f(out);
  std::map<std::string, double> ts;
  for (std::size_t li = 0; li < cfg.num_hidden_layers; ++li)
    for (linear l : all_linears) {
      const std::string base = tensor_prefix(li, l);
      const auto [R, C] = expected_linear_shape(cfg, l);
      const std::vector<float> want = dequantize(read_packed<F>(ck, base));
      double t = 1.0;
      const std::vector<float> got = decode(f, base, scheme, R, C, &t);
      ts[base] = t;
      std::size_t differ = 0;
      for (std::size_t i = 0; i < want.size(); ++i) differ += std::bit_cast<std::uint32_t>(want[i]) != std::bit_cast<std::uint32_t>(got[i]) && !(want[i] == 0.0f && got[i] == 0.0f);
      INFO(base << " " << scheme);
      CHECK(differ == 0);
      if (scheme == "nvfp4-ct" && exact_ct_division) {  // CT's own decompress: scale / global_scale in fp32
        const float gs = f.get<float>(base + ".weight_global_scale", {1}, st_dtype::F32)[0];
        CHECK(static_cast<double>(gs) * t == Approx(1.0).epsilon(1e-7));
      }
      // Nothing else of the linear changed: its bias, if any, is the checkpoint's bytes.
      if (ck.contains(base + ".bias")) CHECK(f.ck.read_f32(base + ".bias") == ck.read_f32(base + ".bias"));
    }
  // The other tensors are copied byte for byte.
  for (const std::string n : {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                              "model.layers.1.input_layernorm.weight"}) {
    INFO(n);
    REQUIRE(f.ck.contains(n));
    const auto a = ck.bytes(n), b = f.ck.bytes(n);
    CHECK((a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0));
  }
  return ts;
}

void check_fused_share(const std::map<std::string, double>& ts, std::size_t layers) {
  for (std::size_t li = 0; li < layers; ++li) {
    CHECK(ts.at(tensor_prefix(li, linear::q_proj)) == ts.at(tensor_prefix(li, linear::k_proj)));
    CHECK(ts.at(tensor_prefix(li, linear::q_proj)) == ts.at(tensor_prefix(li, linear::v_proj)));
    CHECK(ts.at(tensor_prefix(li, linear::gate_proj)) == ts.at(tensor_prefix(li, linear::up_proj)));
  }
}

}  // namespace

TEST_CASE("finish_group gives fused linears one NVFP4 tensor scale (RTN, GPTQ, streamed RTN)", "[export]") {
  const mxq::test::temp_dir tmp("hf-share");
  write_synthetic(tmp / "m", spec());
  model_weights w = load_model(tmp / "m");
  w.layers[0].k_proj.weight *= 3.0f;  // its own amax would differ from q's and v's
  for (const recipe& rc : {recipe{}, recipe{step::gptq{}}}) {
    model_weights c = w;
    model_options mo;
    mo.seq = 16;
    const auto q = quantize_model<nvfp4>(c, rc.calibrates() ? std::span<const token_id>(calib()) : std::span<const token_id>(), rc, mo);
    std::map<std::string, float> t;
    for (const auto& [n, p] : q.linears) t[n] = p.tensor().scale;
    const float amax = w.layers[0].k_proj.weight.cwiseAbs().maxCoeff();
    const float ts = t.at(tensor_prefix(0, linear::q_proj));  // amax / 2688, or the next invertible float up
    CHECK(ts >= amax / (6.0f * 448.0f));
    CHECK(ts == Approx(amax / (6.0 * 448.0)).epsilon(1e-6));
    CHECK(1.0f / (1.0f / ts) == ts);
    CHECK(t.at(tensor_prefix(0, linear::v_proj)) == t.at(tensor_prefix(0, linear::k_proj)));
    CHECK(t.at(tensor_prefix(0, linear::gate_proj)) == t.at(tensor_prefix(0, linear::up_proj)));
    CHECK(t.at(tensor_prefix(0, linear::o_proj)) != t.at(tensor_prefix(0, linear::q_proj)));
    CHECK(q.input_amax.size() == (rc.calibrates() ? q.linears.size() : 0u));
  }
}

TEST_CASE("compressed-tensors / ModelOpt exports decode to mxq's values, bit for bit", "[export]") {
  const mxq::test::temp_dir tmp("hf-export");
  write_synthetic(tmp / "m", spec());
  const std::size_t L = spec().L;

  SECTION("nvfp4 GPTQ: compressed-tensors W4A16 and W4A4, ModelOpt NVFP4 and W4A16_NVFP4") {
    quantize_to<nvfp4>(tmp / "m", tmp / "q", recipe{step::gptq{}});
    const checkpoint ck(tmp / "q");
    const hf_export_report a16 = export_hf(tmp / "q", tmp / "ct", opts(hf_target::compressed_tensors, false));
    CHECK(a16.scheme == "nvfp4-pack-quantized W4A16");
    CHECK(a16.linears == 7 * L);
    CHECK(a16.inexact_global_scales == 0);
    check_fused_share(check_linears<nvfp4>(tmp / "q", tmp / "ct", "nvfp4-ct"), L);
    const auto qc = read_json(tmp / "ct" / "config.json").at("quantization_config");
    CHECK(qc.at("quant_method") == "compressed-tensors");
    CHECK(qc.at("format") == "nvfp4-pack-quantized");
    CHECK(qc.at("quantization_status") == "compressed");
    CHECK(qc.at("ignore") == nlohmann::json::array({"lm_head"}));
    const auto g = qc.at("config_groups").at("group_0");
    CHECK(g.at("targets") == nlohmann::json::array({"Linear"}));
    CHECK(g.at("weights").at("strategy") == "tensor_group");
    CHECK(g.at("weights").at("group_size") == 16);
    CHECK(g.at("weights").at("type") == "float");
    CHECK(g.at("weights").at("num_bits") == 4);
    CHECK(g.at("weights").at("symmetric") == true);
    CHECK(g.at("input_activations").is_null());
    CHECK(read_json(tmp / "ct" / "config.json").at("model_type") == "llama");  // the rest of config.json kept

    // W4A4: input global scales (divisors) from the calibration amax, equal across fused linears.
    const hf_export_report a4 = export_hf(tmp / "q", tmp / "ct4", opts(hf_target::compressed_tensors, true));
    CHECK(a4.scheme == "nvfp4-pack-quantized W4A4");
    check_linears<nvfp4>(tmp / "q", tmp / "ct4", "nvfp4-ct");
    const st_file f4(tmp / "ct4");
    for (std::size_t li = 0; li < L; ++li)
      for (linear l : all_linears) {
        const std::string base = tensor_prefix(li, l);
        const float amax = ck.read_f32(base + ".input_amax")[0];
        CHECK(amax > 0.0f);
        const float gs = f4.get<float>(base + ".input_global_scale", {1}, st_dtype::F32)[0];
        CHECK(gs == 6.0f * 448.0f / amax);  // llm-compressor's divisor
      }
    const auto ia = read_json(tmp / "ct4" / "config.json").at("quantization_config").at("config_groups").at("group_0").at("input_activations");
    CHECK(ia.at("dynamic") == "local");
    CHECK(ia.at("strategy") == "tensor_group");
    CHECK(ia.at("group_size") == 16);

    for (bool w4a4 : {true, false}) {
      const fs::path out = tmp / (w4a4 ? "mo4" : "mo16");
      const hf_export_report r = export_hf(tmp / "q", out, opts(hf_target::modelopt, w4a4));
      CHECK(r.scheme == std::string("modelopt ") + (w4a4 ? "NVFP4" : "W4A16_NVFP4"));
      check_fused_share(check_linears<nvfp4>(tmp / "q", out, "nvfp4-modelopt"), L);
      const auto hq = read_json(out / "hf_quant_config.json").at("quantization");
      CHECK(hq.at("quant_algo") == (w4a4 ? "NVFP4" : "W4A16_NVFP4"));
      CHECK(hq.at("group_size") == 16);
      CHECK(hq.contains("kv_cache_quant_algo"));
      CHECK(hq.at("kv_cache_quant_algo").is_null());
      CHECK(hq.at("exclude_modules") == nlohmann::json::array({"lm_head"}));
      const auto mq = read_json(out / "config.json").at("quantization_config");
      CHECK(mq.at("quant_method") == "modelopt");
      CHECK(mq.at("quant_algo") == hq.at("quant_algo"));
      const st_file f(out);
      for (linear l : all_linears) {
        const std::string base = tensor_prefix(1, l);
        if (w4a4) {  // a multiplier ~ amax / (6 * 448), not the reciprocal: the fp32 inverse of CT's divisor
          const float s = f.get<float>(base + ".input_scale", {}, st_dtype::F32)[0], amax = ck.read_f32(base + ".input_amax")[0];
          CHECK(s == 1.0f / (6.0f * 448.0f / amax));
          CHECK(s == Approx(amax / (6.0 * 448.0)).epsilon(1e-7));
        }
        else
          CHECK(!f.ck.contains(base + ".input_scale"));
      }
    }
  }
  SECTION("mxfp4 -> mxfp4-pack-quantized") {
    quantize_to<mxfp4>(tmp / "m", tmp / "q", recipe{step::gptq{}});
    const hf_export_report r = export_hf(tmp / "q", tmp / "ct");
    CHECK(r.scheme == "mxfp4-pack-quantized");
    check_linears<mxfp4>(tmp / "q", tmp / "ct", "mxfp4-ct");
    const auto w = read_json(tmp / "ct" / "config.json").at("quantization_config").at("config_groups").at("group_0").at("weights");
    CHECK(w.at("strategy") == "group");
    CHECK(w.at("group_size") == 32);
    CHECK(w.at("scale_dtype") == "torch.uint8");
  }
  SECTION("int4 group 128 and per channel, symmetric and with zero points -> pack-quantized") {
    quantize_to<int4_g128_sym>(tmp / "m", tmp / "gs", recipe{step::gptq{}});
    export_hf(tmp / "gs", tmp / "gs-ct");
    check_linears<int4_g128_sym>(tmp / "gs", tmp / "gs-ct", "int4-g128-sym");
    quantize_to<int4_g128>(tmp / "m", tmp / "ga", recipe{step::gptq{}});
    export_hf(tmp / "ga", tmp / "ga-ct");
    check_linears<int4_g128>(tmp / "ga", tmp / "ga-ct", "int4-g128-asym");
    const auto w = read_json(tmp / "ga-ct" / "config.json").at("quantization_config").at("config_groups").at("group_0").at("weights");
    CHECK(w.at("type") == "int");
    CHECK(w.at("group_size") == 128);
    CHECK(w.at("symmetric") == false);
    CHECK(read_json(tmp / "ga-ct" / "config.json").at("quantization_config").at("format") == "pack-quantized");
    quantize_to<int4_pc>(tmp / "m", tmp / "pa", recipe{});
    export_hf(tmp / "pa", tmp / "pa-ct");
    check_linears<int4_pc>(tmp / "pa", tmp / "pa-ct", "int4-pc-asym");
    const auto pw = read_json(tmp / "pa-ct" / "config.json").at("quantization_config").at("config_groups").at("group_0").at("weights");
    CHECK(pw.at("strategy") == "channel");
    CHECK(!pw.contains("group_size"));  // a group_size with another strategy is refused by CT
  }
  SECTION("an original checkpoint exports unquantized") {
    const hf_export_report r = export_hf(tmp / "m", tmp / "plain", opts(hf_target::modelopt));
    CHECK(r.scheme == "unquantized");
    CHECK(r.linears == 0);
    const checkpoint a(tmp / "m"), b(tmp / "plain");
    CHECK(a.names() == b.names());
    for (const auto& n : a.names()) CHECK(a.read_f32(n) == b.read_f32(n));
    CHECK(!read_json(tmp / "plain" / "config.json").contains("quantization_config"));
    CHECK(!fs::exists(tmp / "plain" / "hf_quant_config.json"));
  }
}

TEST_CASE("compressed-tensors / ModelOpt: what has no exact form is refused by name before anything is written", "[export]") {
  const mxq::test::temp_dir tmp("hf-refuse");
  write_synthetic(tmp / "m", spec());
  auto refused = [&](const fs::path& dir, hf_export_options o, const std::string& needle) {
    INFO(dir.string());
    const fs::path out = tmp / "out";
    try {
      export_hf(dir, out, o);
      FAIL("exported");
    } catch (const mxq::error& e) {
      CHECK_THAT(std::string(e.what()), Contains(needle));
    }
    CHECK(!fs::exists(out));
  };
  quantize_to<mxint4>(tmp / "m", tmp / "mxint4", recipe{});
  refused(tmp / "mxint4", {}, "format mxint4 has no exact compressed-tensors form; exportable: mxfp4, nvfp4, int4_pc, int4_g128, int4_pc_sym, int4_g128_sym");
  quantize_to<mxfp4>(tmp / "m", tmp / "mxfp4", recipe{});
  refused(tmp / "mxfp4", opts(hf_target::modelopt), "format mxfp4 has no exact modelopt form; exportable: nvfp4");
  refused(tmp / "mxfp4", opts(hf_target::compressed_tensors, true), "W4A4 export needs nvfp4 weights");
  quantize_to<nvfp4>(tmp / "m", tmp / "nv-rtn", recipe{});
  refused(tmp / "nv-rtn", opts(hf_target::modelopt, true), "needs the calibrated input scales");
  quantize_to<mxfp4>(tmp / "m", tmp / "a8", recipe{step::gptq{}, activation_quant_by_name("mxint8")});
  refused(tmp / "a8", {}, "quantized for mxint8 activations");
  // Fused linears with their own tensor scales (a checkpoint of an older mxq): refused.
  {
    fs::copy(tmp / "nv-rtn", tmp / "unshared", fs::copy_options::recursive);
    const checkpoint ck(tmp / "nv-rtn");
    safetensors_writer w;
    for (const auto& n : ck.names()) {
      const auto b = ck.bytes(n);
      std::vector<std::byte> v(b.begin(), b.end());
      if (n == tensor_prefix(1, linear::up_proj) + ".weight_tensor_scale") {
        float t;
        std::memcpy(&t, v.data(), 4);
        t *= 2.0f;
        std::memcpy(v.data(), &t, 4);
      }
      w.add(n, ck.info(n).dtype, ck.info(n).shape, v);
    }
    for (const auto& [k, v] : ck.shards().front().metadata()) w.set_metadata(k, v);
    w.write(tmp / "unshared" / "model.safetensors");
  }
  refused(tmp / "unshared", {}, "model.layers.1.mlp.gate_proj and model.layers.1.mlp.up_proj have different NVFP4 tensor scales");
}

#ifdef MXQ_CLI_PATH
TEST_CASE("mxq export / quantize-model --out-format: the last line names what was written", "[export][cli]") {
  const mxq::test::temp_dir tmp("hf-cli");
  write_synthetic(tmp / "m", spec());
  auto run = [](const std::string& args) { return mxq::test::run_program(MXQ_CLI_PATH, args, MXQ_REPO_DIR); };
  {
    const fs::path out = tmp / "ct";
    const auto r = run("quantize-model --model " + (tmp / "m").string() + " --format nvfp4 --method rtn --out-format modelopt --out " +
                       out.string());
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(mxq::test::last_line(r.out) == "exported: " + out.string());
    CHECK(r.out.find("scheme: modelopt W4A16_NVFP4") != std::string::npos);
    CHECK(fs::exists(out / "hf_quant_config.json"));
    CHECK(!fs::exists(tmp / "ct.mxq"));  // the intermediate mxq checkpoint is removed
  }
  {
    const fs::path q = tmp / "q", out = tmp / "q-ct";
    REQUIRE(run("quantize-model --model " + (tmp / "m").string() + " --format int4_g128_sym --method rtn --out " + q.string()).status == 0);
    const auto r = run("export --model " + q.string() + " --to compressed-tensors --out " + out.string());
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(mxq::test::last_line(r.out) == "exported: " + out.string());
    check_linears<int4_g128_sym>(q, out, "int4-g128-sym");
  }
  const std::pair<std::string, std::string> cases[] = {
      {"export --model " + (tmp / "m").string() + " --to onnx --out /tmp/x", "--to must be one of gguf, compressed-tensors, modelopt"},
      {"export --model " + (tmp / "m").string() + " --to gguf --act nvfp4 --out /tmp/x", "--act applies to"},
      {"export --model " + (tmp / "m").string() + " --to modelopt --act int8 --out /tmp/x", "--act must be nvfp4"},
      {"quantize-model --model " + (tmp / "m").string() + " --format mxfp4 --out-format modelopt --out /tmp/x",
       "format mxfp4 has no exact modelopt form"},
      {"quantize-model --model " + (tmp / "m").string() + " --format mxfp6_e2m3 --out-format gguf --out /tmp/x",
       "format mxfp6_e2m3 has no exact gguf form"},
      {"quantize-model --model " + (tmp / "m").string() + " --format mxfp4 --out-format tflite --out /tmp/x", "--out-format must be"},
      {"quantize-model --model " + (tmp / "m").string() + " --format mxfp4 --keep-mxq --out /tmp/x", "--keep-mxq needs --out-format"},
  };
  mxq::test::expect_one_line_errors(run, cases);
}
#endif

}  // namespace test_export_hf
