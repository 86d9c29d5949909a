// mxq export: a quantized (or original) model directory in a format an engine loads.
// stdout ends with "exported: PATH"; what cannot be exported exactly is refused before writing.
#include <cstdio>
#include <string>

#include <mxq/llm/export_gguf.hpp>

#include "args.hpp"
#include "command.hpp"

namespace cmd_export {  // each command apart: mxq_cli is a unity build
namespace {

constexpr const char* export_usage =
    "usage: mxq export --model DIR --to gguf --out FILE [--gguf-float source|f32] [--gguf-embed source|f32|q8_0]\n"
    "       [--name NAME]\n"
    "  DIR: an mxq quantized checkpoint (mxq quantize-model) or an original Hugging Face one.\n"
    "  gguf: one file for llama.cpp (architectures llama, mistral -> llama, qwen2, qwen3). Packed linears\n"
    "    keep their exact values: mxfp4 -> MXFP4, mxint4 -> Q4_0, mxint8 -> Q8_0, nvfp4 -> NVFP4 (+ tensor\n"
    "    scale); other formats are refused. Unquantized linears and the embeddings keep their stored\n"
    "    dtype (--gguf-float f32 writes them as F32; --gguf-embed q8_0 quantizes token_embd / output);\n"
    "    norms and biases are F32. No vocabulary\n"
    "    is written (tokenizer.ggml.model = none): llama.cpp runs it on token ids.";

int run_export(const mxq::cli::args_t& raw) {
  const auto a = mxq::cli::parse(raw, {"model", "to", "out", "gguf-embed", "gguf-float", "name"});
  if (!a.positional.empty()) throw mxq::error("unexpected argument '" + a.positional.front() + "'");
  const std::string model = a.require("model"), to = a.require("to"), out = a.require("out");
  if (to != "gguf") throw mxq::error("--to must be gguf, not '" + to + "'");
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
  std::printf("architecture: %s\ntensors: %zu\nlinears: %s\nbytes: %zu\nexported: %s\n", r.architecture.c_str(), r.tensors,
              types.c_str(), r.bytes, out.c_str());
  return 0;
}

const mxq::cli::registrar reg_export("export", "write a model for an engine: GGUF for llama.cpp (see --help)",
                                     export_usage, run_export);

}  // namespace
}  // namespace cmd_export
