// A Hugging Face tokenizer.json (byte-level BPE) as llama.cpp's GGUF vocabulary: the keys
// tokenizer.ggml.{model, pre, tokens, token_type, merges, *_token_id, add_bos_token} with the
// values llama.cpp's converter writes (facts: the llama.cpp snapshot's src/llama-vocab.cpp and
// src/llama-arch.cpp):
//
// - model "gpt2" (llama.cpp's BPE); merges as "left right" strings in rank order (tokenizer.json
//   holds either form).
// - pre: the pre-tokenizer's regex names llama.cpp's: ByteLevel with its own regex -> "gpt-2";
//   a Split with Llama 3's / Qwen2's regex -> "llama-bpe" / "qwen2". Another pre-tokenizer would
//   split text differently in llama.cpp, so it has no vocabulary here (hf_vocab::why says so).
// - token types: added special tokens CONTROL (3), other added tokens USER_DEFINED (4), the
//   rest NORMAL (1); ids the tokenizer leaves empty up to the model's vocab_size become
//   "[PAD<id>]" UNUSED (5), as llama.cpp's converter pads.
// - special ids from config.json (bos/eos/pad_token_id), add_bos_token from
//   tokenizer_config.json or the post-processor's template.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/error.hpp"
#include "json_file.hpp"

namespace mxq::llm {

struct hf_vocab {
  std::string why;  // non-empty: no vocabulary can be written (and why)
  std::string model = "gpt2", pre;
  std::vector<std::string> tokens, merges;
  std::vector<std::int32_t> types;
  std::optional<std::uint32_t> bos, eos, pad, unk;
  std::optional<bool> add_bos;
};

namespace detail_vocab {
struct known_pre {
  std::string_view regex, name;
};
// The regexes as tokenizer.json spells them (llama-vocab.cpp quotes each as "original regex").
inline constexpr std::array<known_pre, 2> split_regexes{{
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "llama-bpe"},
    {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
     "qwen2"},
}};

using detail_json::read_json;

// The llama.cpp pre-tokenizer name of a tokenizer.json pre_tokenizer, or empty.
inline std::string pre_name(const nlohmann::json& pt) {
  if (!pt.is_object()) return "";
  const std::string type = pt.value("type", "");
  // (add_prefix_space would put a space before the text, which llama.cpp's gpt-2 does not)
  if (type == "ByteLevel") return pt.value("use_regex", true) && !pt.value("add_prefix_space", false) ? "gpt-2" : "";
  if (type != "Sequence" || !pt.contains("pretokenizers")) return "";
  const auto& seq = pt.at("pretokenizers");
  if (seq.size() != 2 || seq[0].value("type", "") != "Split" || seq[1].value("type", "") != "ByteLevel" ||
      seq[1].value("use_regex", true))
    return "";
  const auto& pat = seq[0].contains("pattern") ? seq[0].at("pattern") : nlohmann::json();
  const std::string re = pat.is_object() ? pat.value("Regex", "") : "";
  for (const auto& k : split_regexes)
    if (re == k.regex) return std::string(k.name);
  return "";
}
}  // namespace detail_vocab

// The vocabulary of model directory `dir` for a model of `vocab_size` tokens, or why it has none
// (no tokenizer.json: why is "no tokenizer.json"). Malformed files throw, naming the file.
inline hf_vocab read_hf_vocab(const std::filesystem::path& dir, std::size_t vocab_size) {
  namespace dv = detail_vocab;
  hf_vocab v;
  const std::filesystem::path tj = dir / "tokenizer.json";
  if (!std::filesystem::exists(tj)) {
    v.why = "no tokenizer.json";
    return v;
  }
  const nlohmann::json t = dv::read_json(tj);
  const nlohmann::json& m = t.contains("model") ? t.at("model") : nlohmann::json();
  if (!m.is_object() || m.value("type", "") != "BPE" || !m.contains("vocab") || !m.at("vocab").is_object())
    return v.why = "tokenizer.json is not a BPE tokenizer", v;
  if (!t.contains("pre_tokenizer") || (v.pre = dv::pre_name(t.at("pre_tokenizer"))).empty())
    return v.why = "tokenizer.json's pre-tokenizer is not one llama.cpp runs the same way (byte-level GPT-2, Llama 3, Qwen2)", v;
  if (t.contains("normalizer") && !t.at("normalizer").is_null())
    return v.why = "tokenizer.json has a normalizer, which llama.cpp's BPE does not apply", v;
  v.tokens.assign(vocab_size, "");
  std::vector<bool> seen(vocab_size, false);
  v.types.assign(vocab_size, 1);
  auto put = [&](const std::string& tok, std::size_t id, std::int32_t type) {
    if (id >= vocab_size)
      mxq::detail::io::fail(tj, "token '" + tok + "' has id " + std::to_string(id) + ", beyond the model's vocab_size " +
                                    std::to_string(vocab_size) + " (a tokenizer of another model?)");
    if (seen[id] && v.tokens[id] != tok)
      mxq::detail::io::fail(tj, "id " + std::to_string(id) + " is both '" + v.tokens[id] + "' and '" + tok + "'");
    v.tokens[id] = tok, seen[id] = true, v.types[id] = type;
  };
  for (const auto& [tok, id] : m.at("vocab").items()) {
    if (!id.is_number_unsigned()) mxq::detail::io::fail(tj, "token '" + tok + "' has no valid id");
    put(tok, id.get<std::size_t>(), 1);
  }
  if (t.contains("added_tokens") && t.at("added_tokens").is_array())
    for (const auto& a : t.at("added_tokens"))
      put(a.value("content", ""), a.value("id", std::size_t{0}), a.value("special", false) ? 3 : 4);
  for (std::size_t i = 0; i < vocab_size; ++i)
    if (!seen[i]) v.tokens[i] = "[PAD" + std::to_string(i) + "]", v.types[i] = 5;
  if (m.contains("merges") && !m.at("merges").is_array()) mxq::detail::io::fail(tj, "model.merges is not a list");
  if (m.contains("merges"))
    for (const auto& mg : m.at("merges")) {
      if (mg.is_string()) v.merges.push_back(mg.get<std::string>());
      else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string())
        v.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
      else mxq::detail::io::fail(tj, "a merge is neither \"a b\" nor [\"a\", \"b\"]: " + mg.dump());
    }
  const nlohmann::json cfg = dv::read_json(dir / "config.json");
  auto id_of = [&](const char* key) -> std::optional<std::uint32_t> {
    if (!cfg.contains(key) || !cfg.at(key).is_number_unsigned()) return std::nullopt;  // null, absent or a list
    const std::size_t id = cfg.at(key).get<std::size_t>();
    return id < vocab_size ? std::optional<std::uint32_t>(static_cast<std::uint32_t>(id)) : std::nullopt;
  };
  v.bos = id_of("bos_token_id"), v.eos = id_of("eos_token_id"), v.pad = id_of("pad_token_id");
  if (std::filesystem::exists(dir / "tokenizer_config.json")) {
    const nlohmann::json tc = dv::read_json(dir / "tokenizer_config.json");
    if (tc.contains("add_bos_token") && tc.at("add_bos_token").is_boolean()) v.add_bos = tc.at("add_bos_token").get<bool>();
  }
  if (!v.add_bos && t.contains("post_processor") && t.at("post_processor").is_object()) {
    const auto& pp = t.at("post_processor");
    // A template that starts single sequences with a special token adds BOS.
    if (pp.value("type", "") == "TemplateProcessing" && pp.contains("single") && pp.at("single").is_array() &&
        !pp.at("single").empty())
      v.add_bos = pp.at("single")[0].contains("SpecialToken");
    else v.add_bos = false;
  }
  return v;
}

}  // namespace mxq::llm
