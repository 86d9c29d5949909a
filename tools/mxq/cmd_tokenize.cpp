// mxq tokenize: text files as token ids with the model's own tokenizer (tokenizer.json).
// stdout ends with "tokens: N".
#include <fnmatch.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <mxq/llm/tokenizer.hpp>

#include "args.hpp"
#include "command.hpp"
#include "text_input.hpp"

namespace cmd_tokenize {  // each command apart: mxq_cli is a unity build
namespace {

constexpr const char* tokenize_usage =
    "usage: mxq tokenize --model DIR (--text FILE | --text-dir DIR [--glob PATTERN]) --out FILE.u16|FILE.u32\n"
    "  The model's tokenizer.json, as Hugging Face's tokenizers runs it: byte-level BPE (GPT-2, Llama 3,\n"
    "  Qwen2/3 pre-tokenizers, NFC), SentencePiece-style BPE (Llama 2, Mistral: Prepend/Replace or\n"
    "  Metaspace, byte fallback); added tokens; the post-processor's special tokens around each file.\n"
    "  --text-dir: every file under DIR whose name matches PATTERN (default *), in path order, each\n"
    "  encoded on its own and the ids concatenated. .u16 needs a vocabulary of at most 65536 tokens.";

int run_tokenize(const mxq::cli::args_t& raw) {
  const auto a = mxq::cli::parse(raw, {"model", "text", "text-dir", "glob", "out"});
  if (!a.positional.empty()) throw mxq::error("unexpected argument '" + a.positional.front() + "'");
  const std::string model = a.require("model"), out = a.require("out");
  const mxq::llm::tokenizer tok(model);
  const std::vector<std::filesystem::path> files = mxq::cli::text_files(a);
  std::size_t bytes = 0;
  std::vector<mxq::llm::token_id> ids;
  for (const auto& f : files) {
    const std::string text = mxq::cli::read_text(f);
    bytes += text.size();
    try {
      const std::vector<mxq::llm::token_id> t = tok.encode(text);
      ids.insert(ids.end(), t.begin(), t.end());
    } catch (const mxq::error& e) {
      throw mxq::error(f.string() + ": " + e.what());
    }
  }
  mxq::cli::write_tokens(out, ids, tok.vocab_size());
  std::printf("files: %zu\nbytes: %zu\ntokens: %zu\n", files.size(), bytes, ids.size());
  return 0;
}

const mxq::cli::registrar reg_tokenize("tokenize", "text as token ids with the model's tokenizer.json (see --help)",
                                       tokenize_usage, run_tokenize);

}  // namespace
}  // namespace cmd_tokenize
