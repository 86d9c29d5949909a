// mxq quantize-model and mxq table: whole-model calibration and the paper-style grid.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <mxq/llm/checkpoint.hpp>
#include <mxq/llm/journal.hpp>
#include <mxq/llm/memory.hpp>
#include <mxq/llm/perplexity.hpp>
#include <mxq/llm/quantize_model.hpp>
#include <mxq/llm/weights.hpp>

#include <mxq/llm/calibration.hpp>
#include <mxq/llm/tokenizer.hpp>

#include "args.hpp"
#include "export_run.hpp"
#include "text_input.hpp"
#include "parse.hpp"

namespace fs = std::filesystem;

namespace cmd_model {  // each command apart: mxq_cli is a unity build
namespace {

using clock_type = std::chrono::steady_clock;
double seconds(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

std::vector<mxq::llm::token_id> windows_of(const std::vector<mxq::llm::token_id>& tokens, std::size_t n, std::size_t seq,
                                      const std::string& what) {
  if (tokens.size() / seq < n)
    throw mxq::error(what + " holds " + std::to_string(tokens.size() / seq) + " windows of " + std::to_string(seq) +
                     " tokens, " + std::to_string(n) + " requested");
  return {tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(n * seq)};
}

// The model-level knobs (the recipe itself comes from parse.hpp's grammar): --seq, --threads,
// --awq-loss block|linear, --awq-windows N (the block loss runs on N windows, the linear-output
// losses sample N * seq tokens).
const std::set<std::string> model_option_names = {"seq", "awq-loss", "awq-windows"};

mxq::llm::model_options model_options_from(const mxq::cli::parsed_args& a, mxq::recipe& rc) {
  mxq::llm::model_options o;
  const long seq = a.integer("seq", 256);
  if (seq < 2) throw mxq::error("--seq must be at least 2");
  o.seq = static_cast<std::size_t>(seq);
  o.threads = static_cast<unsigned>(rc.threads);
  const std::string loss = a.get("awq-loss", "block");
  if (loss != "block" && loss != "linear") throw mxq::error("--awq-loss must be block or linear, not '" + loss + "'");
  o.awq_loss = loss == "block" ? mxq::llm::awq_loss_kind::block : mxq::llm::awq_loss_kind::linear;
  const long n = a.integer("awq-windows", 16);
  if (n < 0) throw mxq::error("--awq-windows must be >= 0 (0 = every calibration window)");
  o.awq_block_windows = static_cast<std::size_t>(n);
  if (rc.awq) rc.awq->options.search_tokens = o.awq_block_windows * o.seq;
  return o;
}

// Quantizes `w` in place (the table keeps whole models in memory: it evaluates each cell).
template <class Sink>
void run_quantization(mxq::llm::model_weights& w, const std::vector<mxq::llm::token_id>& calib, const std::string& format,
                      const mxq::recipe& rc, const mxq::llm::model_options& mo, Sink&& sink) {
  mxq::visit_format(format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    sink(mxq::llm::quantize_model<F>(w, calib, rc, mo));
  });
}

// What makes a quantize-model run that run, for its journal: every option that changes the
// output (not --threads, --out, nor the evaluation's --tokens/--windows; the model and calibration
// by content, not path): the model's config and tensor table, and the calibration tokens.
std::string run_key(const mxq::cli::parsed_args& a, const mxq::llm::model_reader& src,
                    std::span<const mxq::llm::token_id> calib) {
  static const std::set<std::string> ignored = {"threads", "out", "tokens", "text", "windows", "out-format", "mxq-out",
                                                "keep-mxq", "gguf-embed", "gguf-float", "name", "act"};
  std::string text = "mxq " + std::to_string(MXQ_VERSION_MAJOR) + "." + std::to_string(MXQ_VERSION_MINOR) + "." +
                     std::to_string(MXQ_VERSION_PATCH) + "\n";
  for (const auto& [k, v] : a.values)
    if (!ignored.count(k) && k != "model" && k != "calib") text += k + "=" + v + "\n";
  for (const auto& f : a.flags)
    if (!ignored.count(f)) text += f + "\n";
  std::uint64_t h = mxq::llm::fnv1a64(text);
  if (const fs::path cfg = fs::path(src.path()) / "config.json"; fs::exists(cfg)) {
    const mxq::mapped_file m(cfg);
    h = mxq::llm::fnv1a64(m.bytes(), h);
  }
  const mxq::checkpoint& ck = src.source();
  for (const auto& name : ck.names()) {
    const auto& t = ck.info(name);
    std::string row = name + " " + std::string(mxq::st_dtype_name(t.dtype)) + " " + mxq::shape_to_string(t.shape) + " " +
                      ck.file_of(name).path().filename().string() + " " + std::to_string(t.begin) + " " +
                      std::to_string(fs::file_size(ck.file_of(name).path())) + "\n";
    h = mxq::llm::fnv1a64(row, h);
  }
  h = mxq::llm::fnv1a64(std::as_bytes(calib), h);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

// Test hooks for the resume tests: MXQ_TEST_KILL_AFTER_LAYERS=k SIGKILLs the run once the journal
// records k layers, MXQ_TEST_KILL_IN_LAYER=k in the middle of writing layer k.
struct test_kill {
  long after = env("MXQ_TEST_KILL_AFTER_LAYERS"), in = env("MXQ_TEST_KILL_IN_LAYER");
  static long env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::atol(v) : -1;
  }
  void after_layers(std::size_t done) const {
    if (after >= 0 && static_cast<long>(done) == after) ::raise(SIGKILL);
  }
  void in_layer(std::size_t li) const {
    if (in >= 0 && static_cast<long>(li) == in) ::raise(SIGKILL);
  }
};

// Progress on stderr: on a terminal one line rewritten in place, with the resident set; plain
// lines otherwise (logs, pipes).
struct progress_line {
  bool tty = ::isatty(STDERR_FILENO) == 1;
  bool open = false;
  void show(const std::string& s) {
    if (!tty) {
      std::fprintf(stderr, "quantize-model: %s\n", s.c_str());
      return;
    }
    std::fprintf(stderr, "\r\033[Kquantize-model: %s  rss %.2f GiB", s.c_str(), rss_gib());
    std::fflush(stderr);
    open = true;
  }
  void done() {
    if (open) std::fprintf(stderr, "\n");
    open = false;
  }
  static double rss_gib() {
    std::ifstream f("/proc/self/statm");
    std::size_t pages = 0, resident = 0;
    f >> pages >> resident;
    return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / 1073741824.0;
  }
};

constexpr const char* quantize_model_usage =
    "usage: mxq quantize-model --model DIR --format NAME --method METHOD --out DIR\n"
    "       [--calib FILE.u16|.u32 | --calib-text FILE|DIR [--glob '*.py'] [--seed 0] (one required unless METHOD is rtn)]\n"
    "       [--calib-windows 128] [--seq 256]\n"
    "       [--act-format NAME] [--alpha 0.5] [--alpha-grid] [--awq-gptq off|verify|grid] [--awq-loss block|linear]\n"
    "       [--awq-windows 16] [--damp 0.01] [--block 128] [--act-order] [--order none|blockwise|global] [--refine K]\n"
    "       [--static-scales] [--mse-weights hseq|hinv|hdiag|uniform] [--scale-rule floor|ceil|mse|4over6]\n"
    "       [--mse-grid N (mse: FP-Quant's N-shrink grid)] [--mse-norm 2 (error exponent of mse/4over6)]\n"
    "       [--qep [--qep-alpha 0.5] [--qep-damp 1.0] (QEP: correct each group for the error upstream)]\n"
    "       [--rotate hadamard:B | none (block Hadamard rotation of every linear's input, B a power of two;\n"
    "        recorded in the checkpoint, applied by eval-ppl; not with sq/awq, not exportable)]\n"
    "       [--threads N (0 = every core; the checkpoint does not depend on it)] [--tokens FILE.u16 | --text FILE [--windows 256]]\n"
    "       [--max-shard-size 5GB (output shards, Hugging Face naming and index)]\n"
    "       [--max-memory SIZE (refuse, before any work, a run whose printed estimate is larger)]\n"
    "       [--out-format mxq|gguf|compressed-tensors|modelopt [--mxq-out DIR] [--keep-mxq] (+ mxq export's options)]\n"
    "  --out-format other than mxq: the mxq checkpoint goes to --mxq-out (default: --out with .mxq appended;\n"
    "  removed after a successful export unless --keep-mxq), then is exported to --out as `mxq export`\n"
    "  does (stdout then ends with \"exported: PATH\").\n"
    "  --calib-text: encoded with the model's tokenizer.json and sampled as GPTQ's reference does: windows\n"
    "  at random offsets (std::mt19937_64 from --seed) of the concatenated tokens.\n"
    "  The checkpoint is streamed: one decoder layer in memory at a time, each written when done.\n"
    "  A run killed part way continues after its last finished layer when started again with the same\n"
    "  command (the journal mxq-run.json in --out; a directory holding another run's journal is refused).\n"
    "  METHOD: rtn, gptq, awq, awq+gptq, sq+rtn, sq+gptq, sq+awq, sq+awq+gptq (steps sq, awq, gptq|rtn joined by '+'),\n"
    "  or mr-gptq (gptq --rotate hadamard:32 --act-order --scale-rule mse --mse-grid 100 --mse-norm 2.4)";

int run_quantize_model(const mxq::cli::args_t& raw) {
  std::set<std::string> options = {"model", "format", "calib", "calib-windows", "out", "tokens", "windows",
                                   "max-shard-size", "max-memory", "out-format", "mxq-out", "calib-text", "glob", "seed", "text"};
  options.insert(model_option_names.begin(), model_option_names.end());
  options.insert(mxq::cli::export_option_names.begin(), mxq::cli::export_option_names.end());
  const auto a = mxq::cli::parse_recipe_command(raw, "quantize-model", options, {"model", "format", "out"}, {"keep-mxq"});
  // Every argument and input file is checked before the weights are loaded.
  const std::string out_format = a.get("out-format", "mxq");
  const bool exporting = out_format != "mxq";
  if (exporting && !mxq::cli::is_export_target(out_format))
    throw mxq::error("--out-format must be mxq, " + std::string(mxq::cli::export_targets) + ", not '" + out_format + "'");
  if (!exporting)
    for (const char* k : {"mxq-out", "keep-mxq", "gguf-embed", "gguf-float", "name", "act"})
      if (a.has(k)) throw mxq::error("--" + std::string(k) + " needs --out-format gguf, compressed-tensors or modelopt");
  const std::string export_path = a.require("out");
  const std::string model_dir = a.require("model"), format = a.require("format");
  const std::string out_dir = exporting ? a.get("mxq-out", export_path + ".mxq") : export_path;
  if (exporting && fs::path(out_dir).lexically_normal() == fs::path(export_path).lexically_normal())
    throw mxq::error("--mxq-out is --out; the mxq checkpoint and the export need two places");
  if (!mxq::is_known_format(format)) throw mxq::error("unknown format '" + format + "' (see `mxq formats`)");
  const std::string method = a.get("method", "rtn");
  mxq::recipe rc = mxq::cli::recipe_from_args(a);
  mxq::cli::check_scale_rule(format, rc);
  if (rc.rotation && exporting)
    throw mxq::error("--rotate: " + out_format + " cannot apply the rotation at run time; export a recipe without it");
  if (exporting) mxq::cli::check_exportable(out_format, format, rc.act ? rc.act.name : "");
  mxq::llm::model_options mo = model_options_from(a, rc);
  if (fs::exists(out_dir) && !fs::is_directory(out_dir))
    throw mxq::error(out_dir + ": --out exists and is not a directory");
  if (std::error_code ec; fs::exists(out_dir) && fs::equivalent(out_dir, model_dir, ec))
    throw mxq::error(out_dir + ": --out is the --model directory; write the quantized checkpoint elsewhere");
  const std::size_t max_shard = a.has("max-shard-size") ? mxq::cli::parse_size(a.require("max-shard-size"), "max-shard-size")
                                                        : mxq::llm::default_max_shard_bytes;
  const std::size_t max_memory = a.has("max-memory") ? mxq::cli::parse_size(a.require("max-memory"), "max-memory") : 0;
  const mxq::llm::model_config cfg = mxq::llm::load_model_config(model_dir);
  std::vector<mxq::llm::token_id> calib;
  const long n_calib = a.integer("calib-windows", 128);
  if (n_calib <= 0) throw mxq::error("--calib-windows must be a positive number of windows");
  if (a.has("calib") && a.has("calib-text")) throw mxq::error("give one of --calib FILE.u16 or --calib-text FILE|DIR");
  if (rc.calibrates()) {
    if (a.has("calib-text")) {
      // Text: the model's tokenizer, then GPTQ's sampling (random windows of the token stream).
      const mxq::llm::tokenizer tok(model_dir);
      std::vector<mxq::llm::token_id> stream;
      const fs::path src = a.require("calib-text");
      const std::vector<fs::path> files = mxq::cli::files_of(src, a.get("glob", "*"));
      for (const auto& f : files) {
        try {
          const auto t = tok.encode(mxq::cli::read_text(f));
          stream.insert(stream.end(), t.begin(), t.end());
        } catch (const mxq::error& e) {
          throw mxq::error(f.string() + ": " + e.what());
        }
      }
      const long seed = a.integer("seed", 0);
      if (seed < 0) throw mxq::error("--seed must be a non-negative integer");
      try {
        calib = mxq::llm::sample_windows(stream, static_cast<std::size_t>(n_calib), mo.seq, static_cast<std::uint64_t>(seed));
      } catch (const mxq::error& e) {
        throw mxq::error(src.string() + ": " + e.what());
      }
      std::fprintf(stderr, "quantize-model: %s: %zu files, %zu tokens, %ld windows of %zu sampled (seed %ld)\n",
                   src.c_str(), files.size(), stream.size(), n_calib, mo.seq, seed);
    } else {
      if (!a.values.count("calib"))
        throw mxq::error("method '" + method + "' needs calibration tokens: --calib FILE.u16 (token ids) or --calib-text FILE|DIR (text)");
      const std::string calib_file = a.require("calib");
      calib = windows_of(mxq::llm::read_tokens(calib_file, cfg.vocab_size), static_cast<std::size_t>(n_calib), mo.seq,
                         calib_file);
    }
  }
  std::vector<mxq::llm::token_id> tokens;
  mxq::llm::perplexity_options po;
  if (a.has("tokens") && a.has("text")) throw mxq::error("give one of --tokens FILE.u16 or --text FILE");
  if (a.has("tokens") || a.has("text")) {
    if (a.has("text")) {
      try {
        tokens = mxq::llm::tokenizer(model_dir).encode(mxq::cli::read_text(a.require("text")));
      } catch (const mxq::error& e) {
        throw mxq::error(a.require("text") + ": " + e.what());
      }
    } else {
      tokens = mxq::llm::read_tokens(a.require("tokens"), cfg.vocab_size);
    }
    po.seq_len = mo.seq;
    const long nw = a.integer("windows", 256);
    if (nw <= 0) throw mxq::error("--windows must be a positive number of windows");
    po.windows = static_cast<std::size_t>(nw);
    if (tokens.size() / mo.seq < po.windows)
      throw mxq::error(a.get("tokens", a.get("text", "")) + " holds " + std::to_string(tokens.size() / mo.seq) + " windows of " +
                       std::to_string(mo.seq) + " tokens, " + std::to_string(po.windows) + " requested");
  }
  progress_line progress;
  mo.progress = [&progress](const std::string& s) { progress.show(s); };
  const auto t0 = clock_type::now();
  // Streamed: one decoder layer in memory at a time, each written as soon as it is quantized.
  const mxq::llm::model_reader src(model_dir);
  std::fprintf(stderr, "quantize-model: %s -> %s, %s %s, %zu calibration windows\n", model_dir.c_str(), out_dir.c_str(),
               format.c_str(), rc.name().c_str(), calib.size() / mo.seq);
  {  // what the run will hold, said (and checked against --max-memory) before any work
    const std::string w0 = mxq::llm::tensor_prefix(0, mxq::llm::linear::q_proj) + ".weight";
    const std::size_t bits = src.source().contains(w0) ? mxq::st_dtype_bits(src.source().info(w0).dtype) : 32;
    mxq::llm::memory_estimate m;
    mxq::visit_format(format, [&](auto tag) {
      m = mxq::llm::estimate_memory<typename decltype(tag)::type>(src.config(), bits, calib.size(), rc);
    });
    constexpr double gib = 1073741824.0;
    std::fprintf(stderr,
                 "quantize-model: memory estimate %.2f GiB (weights %.2f, activations %.2f, solver %.2f, output %.2f)\n",
                 m.total() / gib, m.weights / gib, m.activations / gib, m.solver / gib, m.output / gib);
    if (max_memory && m.total() > max_memory) {
      char buf[256];
      std::snprintf(buf, sizeof buf, "the run needs about %.2f GiB, over --max-memory %.2f GiB", m.total() / gib,
                    max_memory / gib);
      throw mxq::error(std::string(buf) + (rc.calibrates() ? " (fewer --calib-windows need less)" : ""));
    }
  }
  std::size_t n_linears = 0, packed_bytes = 0;
  const std::string act_format = rc.act ? rc.act.name : "";
  const std::map<std::string, std::string> metadata = {{"mxq.method", method},
                                                       {"mxq.act_format", act_format},
                                                       {"mxq.rotation", mxq::llm::rotation_name(rc.rotation)},
                                                       {"mxq.calib_windows", std::to_string(calib.size() / mo.seq)}};
  // Resumable: the journal in --out says how far an interrupted run of this very job got.
  mxq::llm::run_journal journal(out_dir, run_key(a, src, calib));
  const std::optional<mxq::llm::resume_point> resume = journal.load();
  const std::size_t first_layer = resume ? resume->layers_done : 0;
  if (first_layer > 0)
    std::fprintf(stderr, "quantize-model: resuming after layer %zu of %zu (%s)\n", first_layer, src.num_layers(),
                 journal.file().c_str());
  const test_kill kill;
  mxq::visit_format(format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    mxq::llm::quantized_checkpoint_writer<F> out(out_dir, model_dir, src.config(), src.source(), metadata, max_shard,
                                                 mxq::resumable::yes, rc.calibrates());
    out.resume_layers(first_layer);
    for (std::size_t li = 0; li < first_layer; ++li)  // the totals printed cover the whole model
      for (mxq::llm::linear l : mxq::llm::all_linears) {
        const auto [rows, cols] = mxq::llm::expected_linear_shape(src.config(), l);
        ++n_linears, packed_bytes += mxq::packed_matrix<F>::storage_bytes_for(rows, cols);
      }
    const mxq::llm::layer_sink<F> sink = [&](std::size_t li, const mxq::llm::decoder_layer_weights& L,
                                             mxq::llm::quantized_model<F>& q) {
      out.copy_source_tensors();  // with the first layer: the copy overlaps the quantization
      for (const auto& [name, p] : q.linears) {
        ++n_linears, packed_bytes += p.storage_bytes();
        out.put_linear(name, p);
        kill.in_layer(li);
      }
      for (const auto& [name, amax] : q.input_amax) out.put_input_amax(name, amax);
      out.put_layer(li, L);
    };
    mxq::llm::stream_options so;
    so.first_layer = first_layer;
    if (resume) so.hidden = std::move(resume->hidden);
    so.layer_done = [&](std::size_t done, const mxq::llm::RowMajorMatrixXf& hidden) {
      // On disk before the journal says so, where a layer takes long enough for it not to matter;
      // plain RTN (a fraction of a second per layer, bound by the disk's writes: measured 20 s ->
      // 24 s on 7B with it) relies on the page cache, which a killed process does not lose.
      if (rc.calibrates()) out.flush();
      journal.save(done, hidden);
      kill.after_layers(done);
    };
    mxq::llm::quantize_model_streaming<F>(src, calib, rc, sink, mo, so);
    out.finish(src.final_norm());
  });
  journal.finish();
  progress.done();
  std::printf("linears: %zu\npacked_bytes: %zu\nseconds: %.1f\n", n_linears, packed_bytes, seconds(t0));
  if (!tokens.empty()) {  // the written checkpoint, read back: the model an engine would run
    po.threads = mxq::llm::resolve_threads(mo.threads);
    po.act_quant = mxq::llm::with_rotation(rc.rotation, mxq::llm::make_act_quant_fn(rc.act));
    std::printf("ppl: %.4f\n", mxq::llm::perplexity(mxq::llm::load_model(out_dir), tokens, po).ppl);
  }
  std::printf("quantized: %s\n", out_dir.c_str());
  if (exporting) {
    std::fflush(stdout);
    mxq::cli::export_model(out_format, out_dir, export_path, a, max_shard);
    if (!a.has("keep-mxq")) fs::remove_all(out_dir);
  }
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

// --best: per format row of the grid, the best mxq recipe found (issue 14), as quantize-model
// flags (the recipe grammar of parse.hpp, every other option at its default). Chosen on the
// bundled model's test windows 256-511, never on the first 256 that the table reports
// (benchmarks/RESULTS.md, "table --best").
struct best_cell {
  const char* group;
  const char* format;
  const char* act;    // "" = fp32 activations
  const char* flags;  // the recipe
};

constexpr best_cell best_grid[] = {
    {"W-only", "mxint4", "", "--method mr-gptq --qep"},
    {"W-only", "mxfp4", "", "--method gptq --rotate hadamard:16 --qep --refine 4"},
    {"W-only", "int4_g128", "", "--method gptq --rotate hadamard:32 --qep --scale-rule mse --act-order"},
    {"W-only", "nvfp4", "", "--method gptq --qep --scale-rule mse --mse-grid 100 --refine 4"},
    {"W4A8", "mxint4", "mxint8", "--method gptq --rotate hadamard:32 --qep --scale-rule mse"},
    {"W4A4", "mxfp4", "mxfp4", "--method mr-gptq --rotate hadamard:16 --qep --refine 4"},
};

// The flags as words: "--method gptq --qep" -> {"--method", "gptq", "--qep"}.
mxq::cli::args_t words_of(std::string_view s) {
  mxq::cli::args_t out;
  while (!s.empty()) {
    const std::size_t b = s.find_first_not_of(' ');
    if (b == std::string_view::npos) break;
    s.remove_prefix(b);
    const std::size_t e = std::min(s.find(' '), s.size());
    out.emplace_back(s.substr(0, e));
    s.remove_prefix(e);
  }
  return out;
}

constexpr const char* table_usage =
    "usage: mxq table --model DIR (--tokens FILE.u16 | --text FILE) (--calib FILE.u16 | --calib-text FILE)\n"
    "       [--windows 256] [--calib-windows 128] [--seq 256]\n"
    "       [--only KEY] [--reference FILE.json] [--threads N] [--awq-loss block|linear] [--awq-windows 16]\n"
    "       [--alpha 0.5] [--awq-gptq off|verify|grid] [--damp 0.01] [--block 128] [--act-order] ...\n"
    "       [--best]\n"
    "  every cell of the grid (formats x methods, W-only / W4A8 / W8A8 / W4A4); KEY filters cells by\n"
    "  substring of format/method[/Aact], e.g. --only mxfp4 or --only mxint4/awq. Text goes through the\n"
    "  model's tokenizer.json; the calibration is the first --calib-windows windows of its tokens.\n"
    "  --best adds per format row the best mxq recipe found (key format/best[/Aact], method column\n"
    "  \"best: RECIPE\", its own flags, the rest at their defaults), compared with that row's best\n"
    "  reference cell, with the share of the reference's gap to the baseline it closes and its time.";

int run_table(const mxq::cli::args_t& raw) {
  std::set<std::string> options = {"model", "tokens", "calib", "text", "calib-text", "windows", "calib-windows", "only",
                                   "reference"};
  options.insert(model_option_names.begin(), model_option_names.end());
  // The grid gives each cell its method and activation format.
  const auto a = mxq::cli::parse_recipe_command(raw, "table", options, {"model"}, {"best"}, {"method", "act-format", "rotate"});
  if (a.has("tokens") == a.has("text")) throw mxq::error("give one of --tokens FILE.u16 or --text FILE (see mxq table --help)");
  if (a.has("calib") == a.has("calib-text"))
    throw mxq::error("give one of --calib FILE.u16 or --calib-text FILE (see mxq table --help)");
  const std::string model_dir = a.require("model");
  const std::string tokens_file = a.get("tokens", a.get("text", "")), calib_file = a.get("calib", a.get("calib-text", ""));
  // Token ids from a file, or a text file through the model's tokenizer (the same ids when the
  // text is what the ids spell: the bundled .txt files are).
  auto token_source = [&](const std::string& ids_key, const std::string& file, std::size_t vocab) {
    if (a.has(ids_key)) return mxq::llm::read_tokens(file, vocab);
    try {
      return mxq::llm::tokenizer(model_dir).encode(mxq::cli::read_text(file));
    } catch (const mxq::error& e) {
      throw mxq::error(file + ": " + e.what());
    }
  };
  const long n_windows_arg = a.integer("windows", 256), n_calib_arg = a.integer("calib-windows", 128);
  if (n_windows_arg <= 0 || n_calib_arg <= 0) throw mxq::error("--windows and --calib-windows must be positive");
  const std::size_t n_windows = static_cast<std::size_t>(n_windows_arg);
  const std::size_t n_calib = static_cast<std::size_t>(n_calib_arg);
  // Each cell's recipe: the grid's method and activation format with the command's flags.
  auto recipe_of = [&](const std::string& method, const std::string& act) {
    mxq::cli::parsed_args ca = a;
    ca.values["method"] = method;
    ca.values["act-format"] = act;
    if (mxq::cli::parse_method(method).gptq == std::nullopt) ca.values.erase("refine");  // GPTQ's codes only
    return mxq::cli::recipe_from_args(ca);
  };
  // A --best cell's recipe: its own flags over the defaults; only the threads come from the command.
  auto best_recipe = [&](const best_cell& b) {
    mxq::cli::parsed_args ca = mxq::cli::parse_recipe_command(words_of(b.flags), "table", {}, {}, {}, {"act-format", "threads"});
    ca.values["act-format"] = b.act;
    if (a.has("threads")) ca.values["threads"] = a.get("threads", "0");
    mxq::recipe rc = mxq::cli::recipe_from_args(ca);
    mxq::cli::check_scale_rule(b.format, rc);
    return rc;
  };
  mxq::recipe probe = recipe_of("awq+gptq", "");  // validates the flags before any work
  std::vector<best_cell> best;
  if (a.has("best"))
    for (const best_cell& b : best_grid)
      if (const std::string key = cell_key(b.format, "best", b.act); a.get("only", "").empty() || key.find(a.get("only", "")) != std::string::npos)
        best.push_back(b), best_recipe(b);
  const mxq::llm::model_options mo_base = model_options_from(a, probe);
  const std::size_t seq = mo_base.seq;
  const unsigned threads = mxq::llm::resolve_threads(mo_base.threads);
  const std::string only = a.get("only", "");
  const auto t_all = clock_type::now();

  const mxq::llm::model_config cfg = mxq::llm::load_model_config(model_dir);
  const auto tokens = windows_of(token_source("tokens", tokens_file, cfg.vocab_size), n_windows, seq, tokens_file);
  // The first windows (the reference numbers' calibration), from token ids or from text.
  const auto calib = windows_of(token_source("calib", calib_file, cfg.vocab_size), n_calib, seq, calib_file);
  const mxq::llm::model_weights original = mxq::llm::load_model(model_dir);

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

  // A rotated recipe's inputs are rotated online before activation quantization (as eval-ppl
  // does for a checkpoint that records mxq.rotation).
  auto eval = [&](const mxq::llm::model_weights& w, const mxq::recipe& rc) {
    mxq::llm::perplexity_options po;
    po.seq_len = seq;
    po.windows = n_windows;
    po.threads = threads;
    po.act_quant = mxq::llm::with_rotation(rc.rotation, mxq::llm::make_act_quant_fn(rc.act));
    return mxq::llm::perplexity(w, tokens, po).ppl;
  };

  std::fprintf(stderr, "table: %s, %zu test windows, %zu calibration windows of %zu tokens, %u threads\n",
               model_dir.c_str(), n_windows, n_calib, seq, threads);
  auto t0 = clock_type::now();
  const double base = eval(original, mxq::recipe{});
  const double base_s = seconds(t0);
  std::fprintf(stderr, "table: baseline ppl %.4f (%.1f s)\n", base, base_s);

  std::printf("| config | format | method | act | PPL | Δ vs fp | ref PPL | Δ vs ref | time (s) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  // One table row; r = its reference ppl (0: none).
  auto row = [&](const std::string& group, const std::string& format, const std::string& method, const std::string& act,
                 double ppl, double secs, double r) {
    char refs[64] = "–", dref[64] = "–";
    if (r > 0) std::snprintf(refs, sizeof refs, "%.3f", r), std::snprintf(dref, sizeof dref, "%+.2f%%", 100.0 * (ppl / r - 1.0));
    std::printf("| %s | %s | %s | %s | %.3f | %+.2f%% | %s | %s | %.1f |\n", group.c_str(), format.c_str(), method.c_str(),
                act.empty() ? "fp32" : act.c_str(), ppl, 100.0 * (ppl / base - 1.0), refs, dref, secs);
    std::fflush(stdout);
  };
  row("baseline", "bf16", "–", "", base, base_s, 0.0);
  // Quantizes a copy of the model by `rc` and evaluates it: {ppl, seconds}.
  auto run_cell = [&](const std::string& format, mxq::recipe rc) {
    const auto t = clock_type::now();
    mxq::llm::model_weights w = original;
    const mxq::llm::model_options mo = model_options_from(a, rc);  // (sets AWQ's search tokens in rc)
    run_quantization(w, calib, format, rc, mo, [](const auto&) {});
    const double ppl = eval(w, rc);
    return std::pair{ppl, seconds(t)};
  };
  std::size_t done = 0;
  std::map<std::string, double> cell_secs, cell_ppl;  // a cell's time and ppl, for the --best rows
  for (const cell& c : grid) {
    const std::string key = cell_key(c.format, c.method, c.act);
    if (!only.empty() && key.find(only) == std::string::npos) continue;
    const auto [ppl, secs] = run_cell(c.format, recipe_of(c.method, c.act));
    std::fprintf(stderr, "table: %-28s ppl %.4f (%.1f s)\n", key.c_str(), ppl, secs);
    row(c.group, c.format, c.method, c.act, ppl, secs, ref_of(key));
    cell_secs[key] = secs;
    cell_ppl[key] = ppl;
    ++done;
  }
  std::vector<std::string> best_lines;
  for (const best_cell& b : best) {
    const std::string key = cell_key(b.format, "best", b.act), label = b.flags;
    const auto [ppl, secs] = run_cell(b.format, best_recipe(b));
    std::fprintf(stderr, "table: %-28s ppl %.4f (%.1f s)\n", (key + " " + label).c_str(), ppl, secs);
    // The row's best reference cell (the grid's cells of the same group, format and activations);
    // without one (NVFP4's row, another window count), the row's best cell of this run.
    double r = 0.0;
    std::string r_method;
    for (const bool measured : {false, true}) {
      if (r > 0.0) break;
      for (const cell& c : grid) {
        if (std::string(c.group) != b.group || std::string(c.format) != b.format || std::string(c.act) != b.act) continue;
        const std::string ck = cell_key(c.format, c.method, c.act);
        const auto it = cell_ppl.find(ck);
        const double v = !measured ? ref_of(ck) : it == cell_ppl.end() ? 0.0 : it->second;
        if (v > 0 && (r == 0.0 || v < r)) r = v, r_method = std::string(c.method) + (measured ? ", this run" : "");
      }
    }
    row(b.group, b.format, "best: " + label, b.act, ppl, secs, r);
    char line[512];
    const int n = r > base ? std::snprintf(line, sizeof line, "best %s %s%s%s: %s, ppl %.4f, best reference %.4f (%s): closes %.1f%% of its gap to the baseline",
                                           b.group, b.format, *b.act ? " / " : "", b.act, label.c_str(), ppl, r, r_method.c_str(),
                                           100.0 * (r - ppl) / (r - base))
                           : std::snprintf(line, sizeof line, "best %s %s%s%s: %s, ppl %.4f (no reference cell for this window count, no cell of its row run)",
                                           b.group, b.format, *b.act ? " / " : "", b.act, label.c_str(), ppl);
    std::string text(line, static_cast<std::size_t>(std::max(n, 0)));
    const auto g = cell_secs.find(cell_key(b.format, "gptq", b.act));
    if (g != cell_secs.end() && g->second > 0) {
      std::snprintf(line, sizeof line, "; %.1f s = %.1fx this row's gptq cell", secs, secs / g->second);
      text += line;
    } else {
      std::snprintf(line, sizeof line, "; %.1f s", secs);
      text += line;
    }
    best_lines.push_back(text);
    ++done;
  }
  if (!best_lines.empty()) std::printf("\n");
  for (const auto& l : best_lines) std::printf("%s\n", l.c_str());
  std::printf("\n%zu cells, %zu test windows, %zu calibration windows, total %.1f s\n", done, n_windows, n_calib,
              seconds(t_all));
  return 0;
}

const mxq::cli::registrar reg_qm("quantize-model",
                                 "whole model, layer-wise calibration by a recipe, packed checkpoint (see --help)",
                                 quantize_model_usage, run_quantize_model);
const mxq::cli::registrar reg_table("table", "the paper-style grid of formats x methods on one model (see --help)",
                                    table_usage, run_table);

}  // namespace
}  // namespace cmd_model
