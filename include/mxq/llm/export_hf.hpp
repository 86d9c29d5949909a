// A model directory (an mxq quantized checkpoint, or an original Hugging Face one) as a Hugging
// Face directory that vLLM / TensorRT-LLM load (facts: shared docs checkpoint-formats.md §3-4):
//
//   mxq::llm::hf_export_options o;
//   o.target = mxq::llm::hf_target::modelopt;
//   mxq::llm::export_hf("Llama-2-7b-nvfp4-gptq", "out", o);
//
// - compressed-tensors (vLLM, transformers): nvfp4 -> nvfp4-pack-quantized, mxfp4 ->
//   mxfp4-pack-quantized, int4_g128[_sym] / int4_pc[_sym] -> pack-quantized (group 128 or
//   channel, symmetric or with zero points); config.json gains quantization_config.
// - ModelOpt (hf_quant_config.json + config.json "modelopt"): nvfp4 only.
// - The codes and block scales are mxq's bytes unchanged (every format here packs element 2k in
//   the low nibble, like mxq); what differs is said per format in hf_quant_traits. NVFP4's tensor
//   scale t is ModelOpt's weight_scale_2 as it is; compressed-tensors stores a divisor g, chosen
//   so that 1/g rounds back to t in fp32 (what vLLM computes on load) wherever such a g exists.
// - Fused linears (q/k/v, gate/up) must share NVFP4 tensor and input scales (TensorRT-LLM asserts
//   it, vLLM would run the others with the largest); mxq quantizes them so, and the export
//   refuses a checkpoint that does not.
// - W4A4 (NVFP4 activations with static input scales) needs the calibrated input amax a
//   calibrating quantize-model run records (<linear>.input_amax); W4A16 otherwise.
// - Streamed: one tensor in memory at a time; everything refused (a format with no exact form, an
//   activation format the engine would not apply, unshared fused scales) is refused, naming it,
//   before anything is written.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../format/registry.hpp"
#include "../io/packed_io.hpp"
#include "checkpoint.hpp"
#include "config.hpp"
#include "json_file.hpp"
#include "linear.hpp"
#include "weights.hpp"

namespace mxq::llm {

enum class hf_target { compressed_tensors, modelopt };

struct hf_target_info {
  hf_target target;
  std::string_view name;
};
inline constexpr hf_target_info hf_targets[] = {{hf_target::compressed_tensors, "compressed-tensors"},
                                                {hf_target::modelopt, "modelopt"}};
inline std::string_view hf_target_name(hf_target t) {
  for (const auto& i : hf_targets)
    if (i.target == t) return i.name;
  return "?";
}

struct hf_export_options {
  hf_target target = hf_target::compressed_tensors;
  // NVFP4 activations (W4A4, static input scales from the recorded calibration amax): unset = as
  // the recipe quantized them (act format nvfp4 -> W4A4), true/false to choose.
  std::optional<bool> w4a4 = std::nullopt;
  std::size_t max_shard_bytes = default_max_shard_bytes;
};

struct hf_export_report {
  std::string scheme;  // "nvfp4-pack-quantized W4A4", "modelopt NVFP4", "pack-quantized", "unquantized"
  std::size_t tensors = 0, bytes = 0, linears = 0;
  // compressed-tensors NVFP4: tensors whose divisor does not invert back to t exactly (none
  // expected; such a tensor's values are within one fp32 rounding of mxq's).
  std::size_t inexact_global_scales = 0;
};

// How a format's packed weight becomes an engine's tensors. A user format becomes exportable by
// specializing this (see the predefined ones below).
template <format_type F>
struct hf_quant_traits {
  static constexpr bool compressed_tensors = false;
  static constexpr bool modelopt = false;
};

}  // namespace mxq::llm

namespace mxq::detail::hf_export {
using namespace ::mxq::llm;

// One tensor of the output: its name, dtype, shape and how its bytes are made (when its turn comes).
struct job {
  std::string name;
  st_dtype dtype;
  std::vector<std::size_t> shape;
  std::function<std::vector<std::byte>()> make;
};

template <class T>
std::vector<std::byte> bytes_of(std::span<const T> v) {
  std::vector<std::byte> b(v.size_bytes());
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
inline std::vector<std::byte> f32_scalar(float v) { return bytes_of(std::span<const float>(&v, 1)); }

// The compressed-tensors divisor g for a multiplier t: vLLM loads 1/g, so the g whose fp32
// reciprocal is t, when one of the floats around 1/t has it; else the nearest (1/t rounded).
inline float divisor_for(float t, bool* exact = nullptr) {
  const float g0 = 1.0f / t;
  float g = g0;
  for (int k = 0; k < 8 && 1.0f / g != t; ++k) g = std::nextafter(g, 1.0f / g > t ? INFINITY : 0.0f);
  const bool ok = 1.0f / g == t;
  if (exact) *exact = ok;
  return ok ? g : g0;
}

// A packed matrix's rows, the bytes of each row copied side by side (codes or scales).
inline std::vector<std::byte> copy_bytes(std::span<const std::uint8_t> b) {
  std::vector<std::byte> o(b.size());
  std::memcpy(o.data(), b.data(), b.size());
  return o;
}

}  // namespace mxq::detail::hf_export

namespace mxq::llm {

// The tensors of one quantized linear: (suffix, dtype, shape, bytes) given its packed weight.
struct hf_tensor {
  std::string suffix;
  st_dtype dtype;
  std::vector<std::size_t> shape;
  std::vector<std::byte> bytes;
};

namespace detail_hf {
// E2M1 codes with NVFP4 / MXFP4 scales: mxq's lsb_first packing is the engines' (2k low nibble).
template <format_type F>
std::vector<std::byte> fp4_codes(const packed_matrix<F>& q) {
  return mxq::detail::hf_export::copy_bytes(q.code_bytes());
}
template <format_type F>
std::vector<std::byte> byte_scales(const packed_matrix<F>& q) {
  return mxq::detail::hf_export::copy_bytes(std::span<const std::uint8_t>(q.scale_data().data(), q.scale_data().size()));
}
}  // namespace detail_hf

template <>
struct hf_quant_traits<nvfp4> {
  static constexpr bool compressed_tensors = true, modelopt = true, has_tensor_scale = true;
  static constexpr std::string_view ct_format = "nvfp4-pack-quantized";
  static constexpr std::size_t group = 16;
  // Why a block scale byte has no form in the engines' float8_e4m3fn (empty: it has one).
  static std::string scale_problem(std::uint8_t s) { return s >= 0x7F ? "NaN scale" : ""; }
  static nlohmann::json ct_weights() {
    return {{"num_bits", 4},     {"type", "float"},  {"strategy", "tensor_group"},           {"group_size", 16},
            {"symmetric", true}, {"dynamic", false}, {"scale_dtype", "torch.float8_e4m3fn"}, {"zp_dtype", nullptr}};
  }
  static std::vector<hf_tensor> tensors(const packed_matrix<nvfp4>& q, hf_target t, bool* exact_global) {
    const std::size_t R = q.rows(), C = q.cols();
    std::vector<hf_tensor> v;
    v.push_back({t == hf_target::modelopt ? "weight" : "weight_packed", st_dtype::U8, {R, C / 2}, detail_hf::fp4_codes(q)});
    v.push_back({"weight_scale", st_dtype::F8_E4M3, {R, C / 16}, detail_hf::byte_scales(q)});
    const float ts = q.tensor().scale;
    if (t == hf_target::modelopt) {
      v.push_back({"weight_scale_2", st_dtype::F32, {}, mxq::detail::hf_export::f32_scalar(ts)});
    } else {
      v.push_back({"weight_global_scale", st_dtype::F32, {1},
                   mxq::detail::hf_export::f32_scalar(mxq::detail::hf_export::divisor_for(ts, exact_global))});
    }
    return v;
  }
};

template <>
struct hf_quant_traits<mxfp4> {
  static constexpr bool compressed_tensors = true, modelopt = false, has_tensor_scale = false;
  static constexpr std::string_view ct_format = "mxfp4-pack-quantized";
  static constexpr std::size_t group = 32;
  static std::string scale_problem(std::uint8_t e) { return e == 0xFF ? "NaN scale (E8M0 0xFF)" : ""; }
  static nlohmann::json ct_weights() {
    return {{"num_bits", 4},     {"type", "float"},  {"strategy", "group"},         {"group_size", 32},
            {"symmetric", true}, {"dynamic", false}, {"scale_dtype", "torch.uint8"}, {"zp_dtype", nullptr}};
  }
  static std::vector<hf_tensor> tensors(const packed_matrix<mxfp4>& q, hf_target, bool*) {
    const std::size_t R = q.rows(), C = q.cols();
    return {{"weight_packed", st_dtype::U8, {R, C / 2}, detail_hf::fp4_codes(q)},
            {"weight_scale", st_dtype::U8, {R, C / 32}, detail_hf::byte_scales(q)}};
  }
};

namespace detail_hf {
// pack-quantized INT4: q = round(x / s) (+ zp) in [-8, 7] stored as q + 8, eight per int32 word
// (element 8w+k at bits 4k). mxq's uint4 code c decodes as (c - zero) * s with zero = 8 when
// symmetric, so q = c - 8 and the stored nibble is c itself: mxq's lsb_first bytes are the
// little-endian words. Zero points: zp = zero - 8, stored zero, packed the same way along the
// output dimension. Scales are written as mxq's fp32 values.
template <format_type F, bool Symmetric, std::size_t Group>
struct int4_traits {
  static constexpr bool compressed_tensors = true, modelopt = false, has_tensor_scale = false;
  static constexpr std::string_view ct_format = "pack-quantized";
  static constexpr std::size_t group = Group;  // 0: a whole row (channel strategy)
  static std::string scale_problem(std::uint32_t bits) {
    const float s = std::bit_cast<float>(bits);
    return std::isfinite(s) ? "" : "NaN scale";
  }
  static nlohmann::json ct_weights() {
    nlohmann::json j = {{"num_bits", 4},
                        {"type", "int"},
                        {"symmetric", Symmetric},
                        {"dynamic", false},
                        {"strategy", Group ? "group" : "channel"},
                        {"scale_dtype", "torch.float32"},
                        {"zp_dtype", Symmetric ? nlohmann::json(nullptr) : nlohmann::json("torch.int8")}};
    if (Group) j["group_size"] = Group;
    return j;
  }
  static std::vector<hf_tensor> tensors(const packed_matrix<F>& q, hf_target, bool*) {
    const std::size_t R = q.rows(), C = q.cols(), G = q.blocks_per_row();
    std::vector<hf_tensor> v;
    v.push_back({"weight_packed", st_dtype::I32, {R, C / 8}, copy_bytes_rows(q)});
    std::vector<float> s(R * G);
    for (std::size_t r = 0; r < R; ++r)
      for (std::size_t b = 0; b < G; ++b) s[r * G + b] = std::bit_cast<float>(q.scale(r, b));
    v.push_back({"weight_scale", st_dtype::F32, {R, G}, mxq::detail::hf_export::bytes_of(std::span<const float>(s))});
    const std::int64_t shape[2] = {static_cast<std::int64_t>(R), static_cast<std::int64_t>(C)};
    v.push_back({"weight_shape", st_dtype::I64, {2}, mxq::detail::hf_export::bytes_of(std::span<const std::int64_t>(shape, 2))});
    if constexpr (!Symmetric) {
      const std::size_t W = (R + 7) / 8;
      std::vector<std::uint32_t> zp(W * G, 0);
      for (std::size_t r = 0; r < R; ++r)
        for (std::size_t b = 0; b < G; ++b) zp[(r / 8) * G + b] |= static_cast<std::uint32_t>(q.zero(r, b) & 0xF) << (4 * (r % 8));
      v.push_back({"weight_zero_point", st_dtype::I32, {W, G}, mxq::detail::hf_export::bytes_of(std::span<const std::uint32_t>(zp))});
    }
    return v;
  }
  static std::vector<std::byte> copy_bytes_rows(const packed_matrix<F>& q) {
    if (q.row_bytes() * 2 != q.cols())
      throw error("pack-quantized export: rows of " + std::to_string(q.cols()) + " codes are not whole bytes");
    return mxq::detail::hf_export::copy_bytes(q.code_bytes());
  }
};
}  // namespace detail_hf

template <>
struct hf_quant_traits<int4_g128_sym> : detail_hf::int4_traits<int4_g128_sym, true, 128> {};
template <>
struct hf_quant_traits<int4_g128> : detail_hf::int4_traits<int4_g128, false, 128> {};
template <>
struct hf_quant_traits<int4_pc_sym> : detail_hf::int4_traits<int4_pc_sym, true, 0> {};
template <>
struct hf_quant_traits<int4_pc> : detail_hf::int4_traits<int4_pc, false, 0> {};

// The formats a target exports exactly.
template <class Formats = predefined_formats>
std::string hf_exportable_formats(hf_target t) {
  std::string s;
  for_each_format(
      [&](auto tag) {
        using F = typename decltype(tag)::type;
        using T = hf_quant_traits<F>;
        if (t == hf_target::compressed_tensors ? T::compressed_tensors : T::modelopt)
          s += (s.empty() ? "" : ", ") + std::string(format_traits<F>::name);
      },
      Formats{});
  return s;
}

template <class Formats = predefined_formats>
hf_export_report export_hf(const std::filesystem::path& model_dir, const std::filesystem::path& out_dir,
                           const hf_export_options& opt = {}) {
  namespace he = mxq::detail::hf_export;
  namespace fs = std::filesystem;
  using mxq::detail::io::fail;
  if (!fs::is_directory(model_dir)) fail(model_dir, "not a model directory (expected config.json and model.safetensors inside)");
  std::error_code ec;
  if (fs::exists(out_dir) && fs::equivalent(out_dir, model_dir, ec))
    fail(out_dir, "the output directory is the model directory; export elsewhere");
  if (fs::exists(out_dir) && !fs::is_directory(out_dir)) fail(out_dir, "exists and is not a directory");
  const model_config cfg = load_model_config(model_dir);
  const checkpoint ck(model_dir);
  const std::string target(hf_target_name(opt.target));
  hf_export_report report;

  // ---- the format of the packed linears (one per checkpoint) and what the target makes of it
  const auto& meta = ck.shards().front().metadata();
  const std::string act_format = meta.count("mxq.act_format") ? meta.at("mxq.act_format") : "";
  if (auto it = meta.find("mxq.rotation"); it != meta.end() && !it->second.empty())
    fail(model_dir, "was quantized with its linear inputs rotated (" + it->second + "), which " + target +
                        " does not apply at run time; export a recipe without --rotate");
  std::string fmt;
  for (std::size_t li = 0; li < cfg.num_hidden_layers && fmt.empty(); ++li)
    for (linear l : all_linears)
      if (has_packed(ck, tensor_prefix(li, l))) {
        fmt = packed_format_name(ck, tensor_prefix(li, l));
        break;
      }
  if (!fmt.empty() && !is_known_format(fmt)) fail(ck.path(), "packed weights of unknown format '" + fmt + "'");
  bool w4a4 = false;
  if (!fmt.empty()) {
    const bool nv = fmt == format_traits<nvfp4>::name;
    w4a4 = opt.w4a4.value_or(act_format == format_traits<nvfp4>::name);
    if (!act_format.empty() && act_format != format_traits<nvfp4>::name)
      fail(model_dir, "was quantized for " + act_format + " activations, which " + target +
                          " engines do not apply; export a weight-only recipe (or nvfp4 weights with nvfp4 activations)");
    if (w4a4 && !nv) fail(model_dir, "W4A4 export needs nvfp4 weights, not " + fmt);
    if (w4a4 && !ck.contains(tensor_prefix(0, linear::q_proj) + ".input_amax"))
      fail(model_dir, "W4A4 export needs the calibrated input scales a calibrating quantize-model run records "
                      "(<linear>.input_amax); this checkpoint has none (quantize with a calibrating method, or export W4A16)");
  }

  std::vector<he::job> jobs;
  auto copy = [&](const std::string& name) {
    const auto& i = ck.info(name);
    jobs.push_back({name, i.dtype, i.shape, [&ck, name] {
                      const auto s = ck.bytes(name);
                      std::vector<std::byte> b(s.begin(), s.end());
                      ck.release(name);
                      return b;
                    }});
  };
  std::vector<std::string> fused_problem;  // refused before writing
  copy("model.embed_tokens.weight");
  for (std::size_t li = 0; li < cfg.num_hidden_layers; ++li) {
    const std::string p = "model.layers." + std::to_string(li);
    for (linear_group g : all_groups) {
      std::optional<float> shared_t, shared_in;
      std::string first;
      for (linear l : members(g)) {
        const std::string base = tensor_prefix(li, l);
        const auto [rows, cols] = expected_linear_shape(cfg, l);
        if (!has_packed(ck, base)) {
          mxq::detail::model::check_shape(ck, base + ".weight", {rows, cols});
          if (!fmt.empty()) fail(model_dir, "linear '" + base + "' is not quantized while others are (" + fmt + ")");
          copy(base + ".weight");
        } else {
          const std::string f = packed_format_name(ck, base);
          if (f != fmt) fail(model_dir, "linear '" + base + "' is " + f + " while others are " + fmt);
          visit_format(
              f,
              [&](auto tag) {
                using F = typename decltype(tag)::type;
                using T = hf_quant_traits<F>;
                if constexpr (!T::compressed_tensors && !T::modelopt) {
                  fail(model_dir, "format " + f + " has no exact " + target + " form; exportable: " +
                                      hf_exportable_formats<Formats>(opt.target));
                } else {
                  if (!(opt.target == hf_target::modelopt ? T::modelopt : T::compressed_tensors))
                    fail(model_dir, "format " + f + " has no exact " + target + " form; exportable: " +
                                        hf_exportable_formats<Formats>(opt.target));
                  if ((T::group && cols % T::group != 0) || cols % 8 != 0)
                    fail(model_dir, base + ": " + std::to_string(cols) + " inputs are not whole groups of " +
                                        std::to_string(T::group ? T::group : 8));
                  {  // every block scale representable, checked before anything is written
                    const auto sc = ck.bytes(base + ".weight_scales");
                    using S = typename F::scale::storage;
                    const std::size_t n = sc.size() / sizeof(S), bpr = packed_matrix<F>::geometry_for(cols).blocks_per_row;
                    for (std::size_t k = 0; k < n; ++k) {
                      S s;
                      std::memcpy(&s, sc.data() + k * sizeof(S), sizeof(S));
                      if (const std::string why = T::scale_problem(s); !why.empty())
                        fail(model_dir, "tensor '" + base + ".weight' row " + std::to_string(k / bpr) + " block " +
                                            std::to_string(k % bpr) + ": " + why);
                    }
                    ck.release(base + ".weight_scales");
                  }
                  if constexpr (T::has_tensor_scale) {
                    float t = 1.0f;
                    std::memcpy(&t, ck.bytes(base + ".weight_tensor_scale").data(), sizeof t);
                    if (shared_t && *shared_t != t)
                      fused_problem.push_back(first + " and " + base + " have different NVFP4 tensor scales (" +
                                              std::to_string(*shared_t) + ", " + std::to_string(t) + ")");
                    if (!shared_t) shared_t = t, first = base;
                  }
                  // Declared from the shapes the traits give an empty matrix of this shape; made
                  // once, when the first of them is written, and handed out tensor by tensor.
                  auto made = std::make_shared<std::vector<hf_tensor>>();
                  const packed_matrix<F> shape_only(rows, cols);
                  for (const hf_tensor& t : T::tensors(shape_only, opt.target, nullptr)) {
                    jobs.push_back({base + "." + t.suffix, t.dtype, t.shape,
                                    [&ck, &report, made, base, suffix = t.suffix, target = opt.target] {
                                      if (made->empty()) {
                                        const packed_matrix<F> q = read_packed<F>(ck, base);
                                        bool exact = true;
                                        *made = T::tensors(q, target, &exact);
                                        if (!exact) ++report.inexact_global_scales;
                                        for (const char* part : {".weight_blocks", ".weight_scales", ".weight_zeros",
                                                                 ".weight_tensor_scale"})
                                          if (ck.contains(base + part)) ck.release(base + part);
                                      }
                                      for (auto& x : *made)
                                        if (x.suffix == suffix) return std::move(x.bytes);
                                      throw error("export_hf: no tensor '" + suffix + "' for " + base);
                                    }});
                  }
                  ++report.linears;
                }
              },
              Formats{});
          if (w4a4) {
            const std::string n = base + ".input_amax";
            mxq::detail::model::check_shape(ck, n, {1});
            const std::vector<float> a = ck.read_f32(n);
            const float amax = a[0] > 0.0f && std::isfinite(a[0]) ? a[0] : 1.0f;
            if (shared_in && *shared_in != amax)
              fused_problem.push_back(first + " and " + base + " have different input scales");
            if (!shared_in) shared_in = amax;
            // NVFP4 activations: compressed-tensors' divisor 6 * 448 / amax(x) as llm-compressor
            // computes it, and ModelOpt's multiplier its fp32 reciprocal, so both exports (and
            // vLLM, which inverts the divisor) use the same value.
            const float g = 6.0f * 448.0f / amax, s = 1.0f / g;
            if (opt.target == hf_target::modelopt)
              jobs.push_back({base + ".input_scale", st_dtype::F32, {}, [s] { return he::f32_scalar(s); }});
            else
              jobs.push_back({base + ".input_global_scale", st_dtype::F32, {1}, [g] { return he::f32_scalar(g); }});
          }
        }
        if (ck.contains(base + ".bias")) copy(base + ".bias");
      }
    }
    copy(p + ".input_layernorm.weight");
    copy(p + ".post_attention_layernorm.weight");
    if (cfg.qk_norm) {
      copy(p + ".self_attn.q_norm.weight");
      copy(p + ".self_attn.k_norm.weight");
    }
  }
  copy("model.norm.weight");
  if (ck.contains("lm_head.weight")) copy("lm_head.weight");
  if (!fused_problem.empty())
    fail(model_dir, fused_problem.front() + ": engines fuse these linears and need one scale for them all "
                                            "(quantize again with this mxq, which shares them)");

  // ---- config.json with the target's quantization_config
  nlohmann::json config = detail_json::read_json(model_dir / "config.json");
  const std::string mxq_version = std::to_string(MXQ_VERSION_MAJOR) + "." + std::to_string(MXQ_VERSION_MINOR) + "." +
                                  std::to_string(MXQ_VERSION_PATCH);
  std::optional<nlohmann::json> hf_quant_config;
  if (fmt.empty()) {
    report.scheme = "unquantized";
    config.erase("quantization_config");
  } else if (opt.target == hf_target::modelopt) {
    const std::string algo = w4a4 ? "NVFP4" : "W4A16_NVFP4";
    report.scheme = "modelopt " + algo;
    const nlohmann::json producer = {{"name", "mxq"}, {"version", mxq_version}};
    nlohmann::json args = {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
    nlohmann::json group = {{"weights", args}, {"targets", {"Linear"}}};
    if (w4a4) group["input_activations"] = args;
    config["quantization_config"] = {{"config_groups", {{"group_0", group}}},
                                     {"ignore", {"lm_head"}},
                                     {"quant_algo", algo},
                                     {"producer", producer},
                                     {"quant_method", "modelopt"}};
    hf_quant_config = nlohmann::json{{"producer", producer},
                                     {"quantization",
                                      {{"quant_algo", algo},
                                       {"kv_cache_quant_algo", nullptr},
                                       {"group_size", 16},
                                       {"exclude_modules", {"lm_head"}}}}};
  } else {
    nlohmann::json weights, ct_format;
    visit_format(fmt, [&](auto tag) {
      using F = typename decltype(tag)::type;
      if constexpr (hf_quant_traits<F>::compressed_tensors) {
        weights = hf_quant_traits<F>::ct_weights();
        ct_format = std::string(hf_quant_traits<F>::ct_format);
      }
    });
    nlohmann::json group = {{"targets", {"Linear"}},          {"weights", weights}, {"format", ct_format},
                            {"input_activations", nullptr}, {"output_activations", nullptr}};
    if (w4a4)
      group["input_activations"] = {{"num_bits", 4},     {"type", "float"},     {"strategy", "tensor_group"},
                                    {"group_size", 16},  {"symmetric", true},   {"dynamic", "local"},
                                    {"observer", "static_minmax"}, {"scale_dtype", "torch.float8_e4m3fn"},
                                    {"zp_dtype", nullptr}};
    report.scheme = ct_format.get<std::string>() + (fmt == format_traits<nvfp4>::name ? (w4a4 ? " W4A4" : " W4A16") : "");
    config["quantization_config"] = {{"quant_method", "compressed-tensors"},
                                     {"format", ct_format},
                                     {"quantization_status", "compressed"},
                                     {"ignore", {"lm_head"}},
                                     {"kv_cache_scheme", nullptr},
                                     {"sparsity_config", nlohmann::json::object()},
                                     {"transform_config", nlohmann::json::object()},
                                     {"version", "0.18.0"},
                                     {"config_groups", {{"group_0", group}}}};
  }

  // ---- write: the tensors (streamed), then the JSON files, the index and config last
  sharded_checkpoint_writer w(out_dir, opt.max_shard_bytes);
  w.set_metadata("format", "pt");
  for (const char* k : {"mxq.format", "mxq.method", "mxq.calib_windows", "mxq.version"})
    if (auto it = meta.find(k); it != meta.end()) w.set_metadata(k, it->second);
  for (const auto& j : jobs) w.declare(j.name, j.dtype, j.shape);
  w.open();
  for (auto& j : jobs) {
    const std::vector<std::byte> b = j.make();
    w.put(j.name, b);
    report.bytes += b.size();
  }
  staged_copies side;  // copied before the shards are committed, renamed into place after them
  for (const char* f : hf_side_files)  // config.json is written below, with its quantization_config
    if (std::string_view(f) != "config.json" && fs::exists(model_dir / f)) side.add(model_dir / f, out_dir / f);
  w.commit();
  side.commit();
  report.tensors = jobs.size();
  if (hf_quant_config)
    write_file_atomically(out_dir / "hf_quant_config.json", [&](std::ostream& o) { o << hf_quant_config->dump(2) << "\n"; });
  else
    fs::remove(out_dir / "hf_quant_config.json", ec);
  write_file_atomically(out_dir / "config.json", [&](std::ostream& o) { o << config.dump(2) << "\n"; });
  return report;
}

}  // namespace mxq::llm
