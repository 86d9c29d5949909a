// mxq export: a quantized (or original) model directory in a format an engine loads.
// stdout ends with "exported: PATH"; what cannot be exported exactly is refused before writing.
#include <cstdio>
#include <string>

#include "args.hpp"
#include "command.hpp"
#include "export_run.hpp"

namespace cmd_export {  // each command apart: mxq_cli is a unity build
namespace {

constexpr const char* export_usage =
    "usage: mxq export --model DIR --to gguf|compressed-tensors|modelopt --out PATH\n"
    "       [--gguf-float source|f32] [--gguf-embed source|f32|q8_0] [--name NAME] (gguf)\n"
    "       [--act nvfp4|none] [--max-shard-size 5GB] (compressed-tensors, modelopt)\n"
    "  DIR: an mxq quantized checkpoint (mxq quantize-model) or an original Hugging Face one (exported\n"
    "  unquantized). What cannot be exported exactly is refused, naming it, before anything is written.\n"
    "  gguf: one file for llama.cpp (architectures llama, mistral -> llama, qwen2, qwen3). Packed linears\n"
    "    keep their exact values: mxfp4 -> MXFP4, mxint4 -> Q4_0, mxint8 -> Q8_0, nvfp4 -> NVFP4 (+ tensor\n"
    "    scale); other formats are refused. Unquantized linears and the embeddings keep their stored\n"
    "    dtype (--gguf-float f32 writes them as F32; --gguf-embed q8_0 quantizes token_embd / output);\n"
    "    norms and biases are F32. No vocabulary\n"
    "    is written (tokenizer.ggml.model = none): llama.cpp runs it on token ids.\n"
    "  compressed-tensors: a Hugging Face directory for vLLM: nvfp4 -> nvfp4-pack-quantized, mxfp4 ->\n"
    "    mxfp4-pack-quantized, int4_g128[_sym] / int4_pc[_sym] -> pack-quantized; codes and block scales\n"
    "    are mxq's bytes. modelopt: nvfp4 for TensorRT-LLM / vLLM (hf_quant_config.json).\n"
    "    --act nvfp4 writes W4A4 (static input scales from the calibration a calibrating quantize-model\n"
    "    run records), --act none weight-only; the default follows the recipe's --act-format.";

int run_export(const mxq::cli::args_t& raw) {
  std::set<std::string> options = {"model", "to", "out", "max-shard-size"};
  options.insert(mxq::cli::export_option_names.begin(), mxq::cli::export_option_names.end());
  const auto a = mxq::cli::parse(raw, options);
  if (!a.positional.empty()) throw mxq::error("unexpected argument '" + a.positional.front() + "'");
  const std::string model = a.require("model"), to = a.require("to"), out = a.require("out");
  const std::size_t shard = a.has("max-shard-size") ? mxq::cli::parse_size(a.require("max-shard-size"), "max-shard-size")
                                                    : mxq::llm::default_max_shard_bytes;
  mxq::cli::export_model(to, model, out, a, shard);
  return 0;
}

const mxq::cli::registrar reg_export("export", "write a model for an engine: GGUF (llama.cpp), compressed-tensors (vLLM), ModelOpt NVFP4 (see --help)",
                                     export_usage, run_export);

}  // namespace
}  // namespace cmd_export
