// mxq eval-ppl: perplexity of a Hugging Face Llama/Qwen2 model on a uint16 token file.
// stdout ends with "ppl: X"; progress goes to stderr.
#include <chrono>
#include <cstdio>
#include <functional>
#include <unistd.h>
#include <string>

#include <mxq/llm/packed_forward.hpp>
#include <mxq/llm/perplexity.hpp>
#include <mxq/llm/quantize_model.hpp>
#include <mxq/llm/weights.hpp>
#include <mxq/stats.hpp>

#include <mxq/llm/tokenizer.hpp>

#include "args.hpp"
#include "command.hpp"
#include "text_input.hpp"

namespace cmd_eval {  // each command apart: mxq_cli is a unity build
namespace {

struct eval_args {
  std::string model, tokens, text;  // token ids from a file, or the text the model's tokenizer encodes
  std::size_t windows = 0;  // 0 = default: 256, or fewer when the file holds fewer
  std::size_t seq = 256;
  unsigned threads = 0;  // 0 = all hardware threads
  std::size_t batch = 4;
  std::string act_format;  // "" = the checkpoint's recorded mxq.act_format, if any
  bool act_format_given = false;
  std::string packed;  // "" = dense dequantized weights; f32 / int8 = packed GEMM with those activations
};

std::size_t count(const mxq::cli::parsed_args& p, const std::string& k, std::size_t def, bool allow_zero = false) {
  const long v = p.integer(k, static_cast<long>(def));
  if (v < 0 || (!allow_zero && v == 0))
    throw mxq::error("option --" + k + " expects a " + (allow_zero ? "non-negative" : "positive") + " integer");
  return static_cast<std::size_t>(v);
}

// Flags with a value; a new option is one name here and one line below.
eval_args parse_eval_args(const mxq::cli::args_t& args) {
  const auto p = mxq::cli::parse(args, {"model", "tokens", "text", "windows", "seq", "threads", "batch", "act-format", "packed"});
  if (!p.positional.empty()) throw mxq::error("unexpected argument '" + p.positional.front() + "'");
  eval_args a;
  a.model = p.require("model");
  if (p.has("tokens") == p.has("text")) throw mxq::error("give one of --tokens FILE.u16|.u32 or --text FILE");
  a.tokens = p.get("tokens", "");
  a.text = p.get("text", "");
  a.windows = p.has("windows") ? count(p, "windows", 0) : 0;
  a.seq = count(p, "seq", a.seq);
  a.threads = static_cast<unsigned>(count(p, "threads", 0, true));
  a.batch = count(p, "batch", a.batch);
  a.act_format_given = p.has("act-format");
  a.act_format = p.get("act-format", "");
  a.packed = p.get("packed", "");
  if (!a.packed.empty() && a.packed != "f32" && a.packed != "int8")
    throw mxq::error("--packed must be f32 or int8, not '" + a.packed + "'");
  if (a.seq < 2) throw mxq::error("--seq must be at least 2");
  return a;
}

// What a quantized checkpoint recorded under `key` (the first shard that has it), else "".
std::string recorded(const mxq::checkpoint& ck, const std::string& key) {
  for (const auto& shard : ck.shards())
    if (auto it = shard.metadata().find(key); it != shard.metadata().end()) return it->second;
  return {};
}

// The activation fake-quant for every decoder linear input: --act-format, else what a quantized
// checkpoint recorded (mxq.act_format), else none ("none" turns a recorded one off).
std::string resolve_act_format(const eval_args& a, const mxq::checkpoint& ck) {
  if (a.act_format_given) {
    if (a.act_format != "none" && !mxq::is_known_format(a.act_format))
      throw mxq::error("unknown activation format '" + a.act_format + "' (see `mxq formats`)");
    return a.act_format == "none" ? "" : a.act_format;
  }
  return recorded(ck, "mxq.act_format");
}

int run_eval_ppl(const mxq::cli::args_t& args) {
  const eval_args a = parse_eval_args(args);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  // Everything that can be wrong with the request is checked before the weights are loaded.
  const mxq::llm::model_config cfg = mxq::llm::load_model_config(a.model);
  std::vector<mxq::llm::token_id> tokens;
  if (!a.text.empty()) {
    const mxq::llm::tokenizer tok(a.model);
    try {
      tokens = tok.encode(mxq::cli::read_text(a.text));
    } catch (const mxq::error& e) {
      throw mxq::error(a.text + ": " + e.what());
    }
    for (auto t : tokens)
      if (t >= cfg.vocab_size)
        throw mxq::error(tok.file().string() + ": token id " + std::to_string(t) + " is outside the model's vocabulary (" +
                         std::to_string(cfg.vocab_size) + ")");
  } else {
    tokens = mxq::llm::read_tokens(a.tokens, cfg.vocab_size);
  }
  const std::string source = a.text.empty() ? a.tokens : a.text;
  const std::size_t available = tokens.size() / a.seq;

  mxq::llm::perplexity_options opt;
  opt.seq_len = a.seq;
  opt.windows = a.windows ? a.windows : std::min<std::size_t>(256, available);
  if (opt.windows == 0 || opt.windows > available)
    throw mxq::error(source + ": asked for " + std::to_string(opt.windows) + " windows of " + std::to_string(a.seq) +
                     " tokens, the file holds " + std::to_string(available) + " (" + std::to_string(tokens.size()) +
                     " tokens)");
  opt.threads = mxq::llm::resolve_threads(a.threads);
  opt.windows_per_batch = a.batch;
  const mxq::checkpoint ck(a.model);
  const std::string act_format = resolve_act_format(a, ck);
  // A checkpoint quantized with rotated linear inputs (mxq.rotation) gets them rotated here too.
  opt.act_quant = mxq::llm::with_rotation(mxq::llm::parse_rotation(recorded(ck, "mxq.rotation"), a.model + ": mxq.rotation"),
                                          mxq::llm::make_act_quant_fn(mxq::activation_quant_by_name(act_format)));
  const mxq::llm::model_weights w = mxq::llm::load_model(a.model);
  std::size_t packed = 0;
  if (!a.packed.empty()) {  // decoder linears through the packed MX GEMM kernels
    mxq::gemm_options g = mxq::llm::packed_linears::default_options();
    g.activations = a.packed == "int8" ? mxq::activation_precision::automatic : mxq::activation_precision::f32;
    const mxq::llm::packed_linears pl = mxq::llm::load_packed_linears(a.model, w.config, g);
    packed = pl.size();
    opt.linear = pl.hook();
  }
  // A live counter on a terminal; about ten lines otherwise (logs, ctest).
  const bool tty = ::isatty(2) != 0;
  opt.progress = [tty, next = std::size_t{0}](std::size_t done, std::size_t total) mutable {
    if (tty) {
      std::fprintf(stderr, "\reval-ppl: %zu/%zu windows%s", done, total, done == total ? "\n" : "");
    } else if (done * 10 >= next * total || done == total) {
      std::fprintf(stderr, "eval-ppl: %zu/%zu windows\n", done, total);
      next = done * 10 / total + 1;
    }
  };
  std::fprintf(stderr, "eval-ppl: %s (%s, %zu layers), %zu windows x %zu tokens of %s, %u threads, activations %s\n",
               a.model.c_str(), w.config.model_type.c_str(), w.layers.size(), opt.windows, a.seq,
               source.c_str(), opt.threads, act_format.empty() ? "fp32" : act_format.c_str());
  if (packed) std::fprintf(stderr, "eval-ppl: %zu linears through the packed GEMM (%s activations)\n", packed, a.packed.c_str());
  const auto t1 = clock::now();
  const mxq::llm::perplexity_result r = mxq::llm::perplexity(w, tokens, opt);
  const auto t2 = clock::now();
  std::fprintf(stderr, "eval-ppl: load %.2f s, eval %.2f s\n", std::chrono::duration<double>(t1 - t0).count(),
               std::chrono::duration<double>(t2 - t1).count());
  std::printf("windows: %zu\nscored_tokens: %zu\nmean_nll: %.6f\nppl: %.4f\n", r.windows, r.scored_tokens, r.mean_nll,
              r.ppl);
  return 0;
}

const mxq::cli::registrar reg_eval_ppl(
    "eval-ppl", "perplexity of an original or quantized checkpoint on a token file or text",
    "usage: mxq eval-ppl --model DIR (--tokens FILE.u16|FILE.u32 | --text FILE) [--windows N (256)] [--seq 256]\n"
    "       [--threads T] [--batch 4]\n"
    "       [--act-format NAME|none] [--packed f32|int8]\n"
    "  --text: encoded with the model directory's tokenizer.json (mxq tokenize's tokenizer)\n"
    "  --act-format: defaults to the activation format a quantized checkpoint recorded; none turns it off\n"
    "  --packed: run the decoder linears through the packed MX GEMM (f32 or int8 activations)",
    run_eval_ppl);

}  // namespace
}  // namespace cmd_eval
