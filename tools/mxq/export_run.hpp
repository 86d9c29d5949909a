// The export step both `mxq export` and `mxq quantize-model --out-format` run: the target's
// options from the command line, the export, and its report (stdout ending "exported: PATH").
#pragma once
#include <cstdio>
#include <set>
#include <string>

#include <mxq/llm/export_gguf.hpp>
#include <mxq/llm/export_hf.hpp>

#include "args.hpp"

namespace mxq::cli {

// --max-shard-size: bytes, or a number with KB/MB/GB (powers of 1000, as Hugging Face) or KiB/MiB/GiB.
inline std::size_t parse_size(const std::string& text, const std::string& option) {
  static constexpr struct { const char* suffix; double scale; } units[] = {
      {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1.0}};
  std::string num = text;
  double scale = 1.0;
  for (const auto& u : units) {
    const std::string sfx = u.suffix;
    if (num.size() > sfx.size() && num.compare(num.size() - sfx.size(), sfx.size(), sfx) == 0) {
      num.resize(num.size() - sfx.size());
      scale = u.scale;
      break;
    }
  }
  std::size_t used = 0;
  double v = 0.0;
  try {
    v = std::stod(num, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != num.size() || !(v > 0.0) || v * scale > 1e18)
    throw mxq::error("--" + option + " expects a positive size such as 5GB, 500MB or 1048576, not '" + text + "'");
  return static_cast<std::size_t>(v * scale);
}

// Options of the export targets (values), for the commands' option lists.
inline const std::set<std::string> export_option_names = {"gguf-embed", "gguf-float", "name", "act"};
inline constexpr const char* export_targets = "gguf, compressed-tensors, modelopt";

inline bool is_export_target(const std::string& to) {
  if (to == "gguf") return true;
  for (const auto& t : mxq::llm::hf_targets)
    if (t.name == to) return true;
  return false;
}

// What quantize-model --out-format can refuse before any work: a weight format the target has
// no exact form for, an activation format its engines would not apply.
inline void check_exportable(const std::string& to, const std::string& format, const std::string& act_format) {
  bool ok = false;
  std::string list;
  mxq::visit_format(format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    if (to == "gguf") {
      ok = mxq::gguf_block_traits<F>::exportable;
      list = mxq::llm::gguf_exportable_formats();
    } else {
      const bool modelopt = to == "modelopt";
      ok = modelopt ? mxq::llm::hf_quant_traits<F>::modelopt : mxq::llm::hf_quant_traits<F>::compressed_tensors;
      list = mxq::llm::hf_exportable_formats(modelopt ? mxq::llm::hf_target::modelopt : mxq::llm::hf_target::compressed_tensors);
    }
  });
  if (!ok) throw mxq::error("format " + format + " has no exact " + to + " form; exportable: " + list);
  if (!act_format.empty() && (to == "gguf" || act_format != "nvfp4" || format != "nvfp4"))
    throw mxq::error("--act-format " + act_format + " is not what " + to + " engines run" +
                     (to == "gguf" ? " (llama.cpp quantizes activations to Q8_0 itself)" : " (only nvfp4 weights with nvfp4 activations)"));
}

inline void export_model(const std::string& to, const std::string& model, const std::string& out, const parsed_args& a,
                         std::size_t max_shard_bytes) {
  if (!is_export_target(to)) throw mxq::error("--to must be one of " + std::string(export_targets) + ", not '" + to + "'");
  if (to == "gguf") {
    if (a.has("act")) throw mxq::error("--act applies to compressed-tensors and modelopt exports, not gguf");
    mxq::llm::gguf_export_options opt;
    opt.name = a.get("name", "");
    const std::string embed = a.get("gguf-embed", "source");
    if (embed == "q8_0") opt.embeddings = mxq::ggml_type::q8_0;
    else if (embed == "f32") opt.embeddings = mxq::ggml_type::f32;
    else if (embed != "source") throw mxq::error("--gguf-embed must be source, f32 or q8_0, not '" + embed + "'");
    const std::string dense = a.get("gguf-float", "source");
    if (dense == "f32") opt.dense = mxq::ggml_type::f32;
    else if (dense != "source") throw mxq::error("--gguf-float must be source or f32, not '" + dense + "'");
    const mxq::llm::gguf_export_report r = mxq::llm::export_gguf(model, out, opt);
    std::string types;
    for (const auto& [t, n] : r.linears_by_type) types += (types.empty() ? "" : ", ") + std::to_string(n) + " " + t;
    std::printf("architecture: %s\ntensors: %zu\nlinears: %s\ntokenizer: %s\nbytes: %zu\nexported: %s\n",
                r.architecture.c_str(), r.tensors, types.c_str(), r.tokenizer.c_str(), r.bytes, out.c_str());
    return;
  }
  for (const char* k : {"gguf-embed", "gguf-float", "name"})
    if (a.has(k)) throw mxq::error("--" + std::string(k) + " applies to gguf exports, not " + to);
  mxq::llm::hf_export_options opt;
  for (const auto& t : mxq::llm::hf_targets)
    if (t.name == to) opt.target = t.target;
  opt.max_shard_bytes = max_shard_bytes;
  if (a.has("act")) {
    const std::string act = a.require("act");
    if (act == "nvfp4") opt.w4a4 = true;
    else if (act == "none") opt.w4a4 = false;
    else throw mxq::error("--act must be nvfp4 (W4A4, static input scales) or none (weight-only), not '" + act + "'");
  }
  const mxq::llm::hf_export_report r = mxq::llm::export_hf(model, out, opt);
  std::printf("scheme: %s\ntensors: %zu\nlinears: %zu\nbytes: %zu\n", r.scheme.c_str(), r.tensors, r.linears, r.bytes);
  if (r.inexact_global_scales)
    std::printf("inexact_global_scales: %zu (within one fp32 rounding)\n", r.inexact_global_scales);
  std::printf("exported: %s\n", out.c_str());
}

}  // namespace mxq::cli
