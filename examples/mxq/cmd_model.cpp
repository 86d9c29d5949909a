// mxq quantize-model and mxq table: whole-model calibration and the paper-style grid.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <mxq/io/quantized_checkpoint.hpp>
#include <mxq/model/perplexity.hpp>
#include <mxq/model/weights.hpp>
#include <mxq/pipeline.hpp>

#include "args.hpp"

namespace fs = std::filesystem;

namespace {

using clock_type = std::chrono::steady_clock;
double seconds(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

std::vector<mxq::token_id> windows_of(const std::vector<mxq::token_id>& tokens, std::size_t n, std::size_t seq,
                                      const std::string& what) {
  if (tokens.size() / seq < n)
    throw mxq::error(what + " holds " + std::to_string(tokens.size() / seq) + " windows of " + std::to_string(seq) +
                     " tokens, " + std::to_string(n) + " requested");
  return {tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(n * seq)};
}

struct quant_request {
  std::string format, method, act_format;
  mxq::model_quant_options opt;
};

// Quantizes `w` in place with the request; returns the packed result through `sink` (typed).
template <class Sink>
void run_quantization(mxq::model_weights& w, const std::vector<mxq::token_id>& calib, const quant_request& q, Sink&& sink) {
  if (!q.act_format.empty() && !mxq::is_known_format(q.act_format))
    throw mxq::error("unknown activation format '" + q.act_format + "' (see `mxq formats`)");
  mxq::visit_format(q.format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    sink(mxq::quantize_model<F>(w, calib, q.opt));
  });
}

// --awq-loss block|linear, --awq-windows N (shared by quantize-model and table).
void apply_awq_flags(const mxq::cli::parsed_args& a, mxq::model_quant_options& o) {
  const std::string loss = a.get("awq-loss", "block");
  if (loss != "block" && loss != "linear") throw mxq::error("--awq-loss must be block or linear, not '" + loss + "'");
  o.awq_block_loss = loss == "block";
  const long n = a.integer("awq-windows", static_cast<long>(o.awq_search_windows));
  if (n < 0) throw mxq::error("--awq-windows must be >= 0 (0 = every calibration window)");
  o.awq_search_windows = static_cast<std::size_t>(n);
}

quant_request parse_request(const mxq::cli::parsed_args& a) {
  quant_request q;
  q.format = a.require("format");
  if (!mxq::is_known_format(q.format)) throw mxq::error("unknown format '" + q.format + "' (see `mxq formats`)");
  q.method = a.get("method", "rtn");
  mxq::parse_method(q.method);  // validates
  q.act_format = a.get("act-format", "");
  if (!q.act_format.empty() && !mxq::is_known_format(q.act_format))
    throw mxq::error("unknown activation format '" + q.act_format + "' (see `mxq formats`)");
  q.opt.method = q.method;
  q.opt.act_format = q.act_format;
  q.opt.alpha = static_cast<float>(a.number("alpha", 0.5));
  q.opt.damp = a.number("damp", 0.01);
  q.opt.act_order = a.has("act-order");
  q.opt.quant.scale_rule = mxq::parse_scale_rule(a.get("scale-rule", "floor"));
  q.opt.seq = static_cast<std::size_t>(a.integer("seq", 256));
  q.opt.threads = static_cast<unsigned>(a.integer("threads", 0));
  apply_awq_flags(a, q.opt);
  return q;
}

int run_quantize_model(const mxq::cli::args_t& raw) {
  const auto a = mxq::cli::parse(raw, {"model", "format", "method", "act-format", "calib", "calib-windows", "seq", "out",
                                       "alpha", "damp", "scale-rule", "threads", "tokens", "windows", "awq-loss",
                                       "awq-windows"},
                                 {"act-order"});
  const std::string model_dir = a.require("model"), out_dir = a.require("out");
  const std::string calib_file = a.get("calib", (fs::path(model_dir) / ".." / ".." / "data" / "code" / "code-calib-128x256.u16").string());
  quant_request q = parse_request(a);
  q.opt.progress = [](const std::string& s) { std::fprintf(stderr, "quantize-model: %s\n", s.c_str()); };
  const auto t0 = clock_type::now();
  mxq::model_weights w = mxq::load_model(model_dir);
  const auto calib = windows_of(mxq::read_tokens_u16(calib_file, w.config.vocab_size),
                                static_cast<std::size_t>(a.integer("calib-windows", 128)), q.opt.seq, calib_file);
  std::fprintf(stderr, "quantize-model: %s -> %s, %s %s%s, %zu calibration windows\n", model_dir.c_str(), out_dir.c_str(),
               q.format.c_str(), q.method.c_str(), q.act_format.empty() ? "" : (" A=" + q.act_format).c_str(),
               calib.size() / q.opt.seq);
  std::size_t n_linears = 0, packed_bytes = 0;
  run_quantization(w, calib, q, [&](const auto& qm) {
    for (const auto& [name, p] : qm.linears) ++n_linears, packed_bytes += p.storage_bytes();
    mxq::write_quantized_checkpoint(out_dir, model_dir, w, qm,
                                    {{"mxq.method", q.method}, {"mxq.act_format", q.act_format},
                                     {"mxq.calib_windows", std::to_string(calib.size() / q.opt.seq)}});
  });
  std::printf("linears: %zu\npacked_bytes: %zu\nseconds: %.1f\n", n_linears, packed_bytes, seconds(t0));
  if (a.has("tokens")) {
    const auto tokens = mxq::read_tokens_u16(a.require("tokens"), w.config.vocab_size);
    mxq::perplexity_options po;
    po.seq_len = q.opt.seq;
    po.windows = static_cast<std::size_t>(a.integer("windows", 256));
    po.threads = mxq::resolve_threads(q.opt.threads);
    po.act_quant = mxq::make_act_quant_fn(q.act_format);
    std::printf("ppl: %.4f\n", mxq::perplexity(w, tokens, po).ppl);
  }
  std::printf("quantized: %s\n", out_dir.c_str());
  return 0;
}

// ---------------------------------------------------------------------------------------------
// mxq table

struct cell {
  const char* group;  // W-only, W4A8, ...
  const char* format;
  const char* method;
  const char* act;  // "" = fp32 activations
};

constexpr cell grid[] = {
    {"W-only", "mxint8", "rtn", ""},         {"W-only", "mxint4", "rtn", ""},
    {"W-only", "mxint4", "gptq", ""},        {"W-only", "mxint4", "awq", ""},
    {"W-only", "mxint4", "awq+gptq", ""},    {"W-only", "mxfp4", "rtn", ""},
    {"W-only", "mxfp4", "gptq", ""},         {"W-only", "mxfp4", "awq", ""},
    {"W-only", "mxfp4", "awq+gptq", ""},     {"W-only", "mxfp6_e2m3", "rtn", ""},
    {"W-only", "mxfp8_e4m3", "rtn", ""},     {"W-only", "int4_g128", "rtn", ""},
    {"W-only", "int4_g128", "gptq", ""},     {"W-only", "int4_g128", "awq", ""},
    {"W-only", "int4_g128", "awq+gptq", ""}, {"W-only", "int4_pc", "rtn", ""},
    {"W-only", "int4_pc", "gptq", ""},       {"W-only", "nvfp4", "rtn", ""},
    {"W-only", "nvfp4", "gptq", ""},         {"W4A8", "mxint4", "rtn", "mxint8"},
    {"W4A8", "mxint4", "sq+rtn", "mxint8"},  {"W4A8", "mxint4", "gptq", "mxint8"},
    {"W4A8", "mxint4", "sq+gptq", "mxint8"}, {"W4A8", "mxint4", "awq+gptq", "mxint8"},
    {"W4A8", "mxint4", "sq+awq+gptq", "mxint8"}, {"W8A8", "mxint8", "rtn", "mxint8"},
    {"W4A4", "mxfp4", "rtn", "mxfp4"},       {"W4A4", "mxfp4", "gptq", "mxfp4"},
};

std::string cell_key(const std::string& format, const std::string& method, const std::string& act) {
  return format + "/" + method + (act.empty() ? "" : "/A" + act);
}

int run_table(const mxq::cli::args_t& raw) {
  const auto a = mxq::cli::parse(raw, {"model", "tokens", "calib", "windows", "calib-windows", "seq", "threads", "only",
                                       "reference", "awq-loss", "awq-windows"});
  const std::string model_dir = a.require("model"), tokens_file = a.require("tokens"), calib_file = a.require("calib");
  const std::size_t seq = static_cast<std::size_t>(a.integer("seq", 256));
  const std::size_t n_windows = static_cast<std::size_t>(a.integer("windows", 256));
  const std::size_t n_calib = static_cast<std::size_t>(a.integer("calib-windows", 128));
  const unsigned threads = mxq::resolve_threads(static_cast<unsigned>(a.integer("threads", 0)));
  const std::string only = a.get("only", "");
  const auto t_all = clock_type::now();

  const mxq::model_weights original = mxq::load_model(model_dir);
  const auto tokens = windows_of(mxq::read_tokens_u16(tokens_file, original.config.vocab_size), n_windows, seq, tokens_file);
  const auto calib = windows_of(mxq::read_tokens_u16(calib_file, original.config.vocab_size), n_calib, seq, calib_file);

  // Reference perplexities, if the model directory ships them (reference-ppl.json: key -> ppl).
  nlohmann::json ref;
  const fs::path ref_file = a.get("reference", (fs::path(model_dir) / "reference-ppl.json").string());
  if (fs::exists(ref_file)) {
    std::ifstream f(ref_file);
    try {
      ref = nlohmann::json::parse(f);
    } catch (const std::exception& e) {
      throw mxq::error(ref_file.string() + ": invalid JSON: " + e.what());
    }
    if (ref.value("windows", 0) != static_cast<int>(n_windows)) ref = nlohmann::json();  // other window count
  }
  auto ref_of = [&](const std::string& key) -> double {
    if (!ref.is_object() || !ref.contains("ppl") || !ref["ppl"].contains(key)) return 0.0;
    return ref["ppl"][key].get<double>();
  };

  auto eval = [&](const mxq::model_weights& w, const std::string& act) {
    mxq::perplexity_options po;
    po.seq_len = seq;
    po.windows = n_windows;
    po.threads = threads;
    po.act_quant = mxq::make_act_quant_fn(act);
    return mxq::perplexity(w, tokens, po).ppl;
  };

  std::fprintf(stderr, "table: %s, %zu test windows, %zu calibration windows of %zu tokens, %u threads\n",
               model_dir.c_str(), n_windows, n_calib, seq, threads);
  auto t0 = clock_type::now();
  const double base = eval(original, "");
  const double base_s = seconds(t0);
  std::fprintf(stderr, "table: baseline ppl %.4f (%.1f s)\n", base, base_s);

  std::printf("| config | format | method | act | PPL | Δ vs fp | ref PPL | Δ vs ref | time (s) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  auto row = [&](const std::string& group, const std::string& format, const std::string& method, const std::string& act,
                 double ppl, double secs) {
    const double r = ref_of(cell_key(format, method, act).c_str());
    char refs[64] = "–", dref[64] = "–";
    if (r > 0) std::snprintf(refs, sizeof refs, "%.3f", r), std::snprintf(dref, sizeof dref, "%+.2f%%", 100.0 * (ppl / r - 1.0));
    std::printf("| %s | %s | %s | %s | %.3f | %+.2f%% | %s | %s | %.1f |\n", group.c_str(), format.c_str(), method.c_str(),
                act.empty() ? "fp32" : act.c_str(), ppl, 100.0 * (ppl / base - 1.0), refs, dref, secs);
    std::fflush(stdout);
  };
  row("baseline", "bf16", "–", "", base, base_s);
  std::size_t done = 0;
  for (const cell& c : grid) {
    const std::string key = cell_key(c.format, c.method, c.act);
    if (!only.empty() && key.find(only) == std::string::npos) continue;
    t0 = clock_type::now();
    mxq::model_weights w = original;
    quant_request q;
    q.format = c.format, q.method = c.method, q.act_format = c.act;
    q.opt.method = c.method, q.opt.act_format = c.act, q.opt.seq = seq, q.opt.threads = threads;
    apply_awq_flags(a, q.opt);
    run_quantization(w, calib, q, [](const auto&) {});
    const double ppl = eval(w, c.act);
    const double secs = seconds(t0);
    std::fprintf(stderr, "table: %-28s ppl %.4f (%.1f s)\n", key.c_str(), ppl, secs);
    row(c.group, c.format, c.method, c.act, ppl, secs);
    ++done;
  }
  std::printf("\n%zu cells, %zu test windows, %zu calibration windows, total %.1f s\n", done, n_windows, n_calib,
              seconds(t_all));
  return 0;
}

const mxq::cli::registrar reg_qm(
    "quantize-model",
    "--model DIR --format NAME --method rtn|gptq|awq|awq+gptq|sq+rtn|sq+gptq|sq+awq+gptq [--act-format NAME] "
    "[--calib FILE.u16] [--calib-windows 128] [--seq 256] --out DIR",
    run_quantize_model);
const mxq::cli::registrar reg_table("table",
                                    "--model DIR --tokens FILE.u16 --calib FILE.u16 [--windows 256]: the paper-style grid",
                                    run_table);

}  // namespace
