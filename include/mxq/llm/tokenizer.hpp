// The tokenizer a Hugging Face model directory ships (tokenizer.json), as the `tokenizers`
// library runs it:
//
//   mxq::llm::tokenizer tok("Llama-3-8B");          // the directory or its tokenizer.json
//   std::vector<mxq::llm::token_id> ids = tok.encode("def f(x):\n    return x\n");
//   std::string text = tok.decode(ids);             // the text again (byte-level BPE)
//
// Supported (anything else the file declares is an error naming it, never a silently different
// tokenization):
// - model BPE (merges as "a b" or ["a", "b"], ignore_merges, no dropout, no subword prefix or
//   word suffix, no byte fallback);
// - pre-tokenizer ByteLevel (GPT-2's regex; add_prefix_space false) or Sequence[Split(Regex,
//   Isolated), ByteLevel(use_regex false)] (Llama 3, Qwen2); regexes run in PCRE2 with UTF-8 and
//   Unicode properties (\p{L}, \p{N} exactly as Unicode defines them);
// - no normalizer; decoder ByteLevel; post-processor ByteLevel or TemplateProcessing (its special
//   tokens around a single sequence, e.g. BOS);
// - added tokens, matched in the raw text before pre-tokenization (the longest at the leftmost
//   position), without lstrip / rstrip / single_word.
// Text must be valid UTF-8 (Hugging Face takes Rust strings): invalid bytes are an error naming
// their offset.
#pragma once
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/error.hpp"
#include "json_file.hpp"

namespace mxq::llm {

using token_id = std::uint32_t;  // as forward.hpp declares it (this header needs no Eigen)

namespace detail_tok {

// GPT-2's byte <-> printable code point map (bytes_to_unicode): printable Latin-1 bytes map to
// themselves, the other 68 to U+0100 onwards in byte order.
inline const std::array<std::uint32_t, 256>& byte_to_cp() {
  static const std::array<std::uint32_t, 256> t = [] {
    std::array<std::uint32_t, 256> m{};
    std::uint32_t next = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      m[b] = keep ? b : next++;
    }
    return m;
  }();
  return t;
}
inline void append_utf8(std::string& s, std::uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6)), s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12)), s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
        s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18)), s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}
// Byte length of the UTF-8 sequence starting with lead byte c (1 for invalid leads; the text is
// validated before).
inline std::size_t utf8_len(unsigned char c) noexcept { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

// Offset of the first byte that is not valid UTF-8 (RFC 3629: no overlongs, no surrogates, at
// most U+10FFFF), or npos.
inline std::size_t invalid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n;
    std::uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07, min = 0x10000;
    else return i;
    if (i + n > s.size()) return i;
    for (std::size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n;
  }
  return std::string_view::npos;
}

// A compiled PCRE2 pattern (UTF-8, Unicode properties), matched over a subject piece by piece.
class regex {
 public:
  regex(const std::string& pattern, const std::filesystem::path& file) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err, &off,
                              nullptr));
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      mxq::detail::io::fail(file, "pre-tokenizer regex does not compile at offset " + std::to_string(off) + ": " +
                                      reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE);  // best effort: the interpreter otherwise
  }
  // Calls piece(begin, end) for the matches and the gaps between them in order (Split's
  // "Isolated" behaviour), over a subject already checked to be valid UTF-8.
  template <class Fn>
  void split(std::string_view s, Fn&& piece) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code_.get(), nullptr), &pcre2_match_data_free);
    std::size_t pos = 0, last = 0;
    while (pos < s.size()) {
      const int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos, PCRE2_NO_UTF_CHECK,
                                 md.get(), nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      if (ov[1] == ov[0]) {  // an empty match: step one character
        pos = ov[0] + utf8_len(static_cast<unsigned char>(s[ov[0]]));
        continue;
      }
      if (ov[0] > last) piece(last, ov[0]);
      piece(ov[0], ov[1]);
      last = pos = ov[1];
    }
    if (last < s.size()) piece(last, s.size());
  }

 private:
  struct free_code {
    void operator()(pcre2_code* c) const noexcept { pcre2_code_free(c); }
  };
  std::unique_ptr<pcre2_code, free_code> code_;
};

// GPT-2's pre-tokenizer regex (the ByteLevel pre-tokenizer with use_regex).
inline constexpr const char* gpt2_regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

using detail_json::read_json;

}  // namespace detail_tok

class tokenizer {
 public:
  // `path`: a model directory (its tokenizer.json) or a tokenizer.json file.
  explicit tokenizer(const std::filesystem::path& path) {
    namespace dt = detail_tok;
    file_ = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
    if (!std::filesystem::exists(file_)) mxq::detail::io::fail(file_, "no such tokenizer file");
    const nlohmann::json t = dt::read_json(file_);
    auto unsupported = [&](const std::string& what) { mxq::detail::io::fail(file_, what + " is not supported"); };
    auto type_of = [](const nlohmann::json& j) { return j.is_object() ? j.value("type", "") : std::string(); };
    if (t.contains("normalizer") && !t.at("normalizer").is_null())
      unsupported("normalizer '" + type_of(t.at("normalizer")) + "'");
    // ---- model
    if (!t.contains("model") || type_of(t.at("model")) != "BPE") unsupported("model '" + (t.contains("model") ? type_of(t.at("model")) : "") + "' (only BPE)");
    const auto& m = t.at("model");
    for (const char* k : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"})
      if (m.contains(k) && !m.at(k).is_null() && !(m.at(k).is_string() && m.at(k).get<std::string>().empty()))
        unsupported(std::string("BPE ") + k);
    if (m.value("byte_fallback", false)) unsupported("BPE byte_fallback");
    ignore_merges_ = m.value("ignore_merges", false);
    if (!m.contains("vocab") || !m.at("vocab").is_object()) mxq::detail::io::fail(file_, "model.vocab is not an object");
    for (const auto& [tok, id] : m.at("vocab").items()) {
      if (!id.is_number_unsigned()) mxq::detail::io::fail(file_, "token '" + tok + "' has no valid id");
      add_token(tok, id.get<token_id>());
    }
    if (m.contains("merges")) {
      if (!m.at("merges").is_array()) mxq::detail::io::fail(file_, "model.merges is not a list");
      std::uint32_t rank = 0;
      for (const auto& mg : m.at("merges")) {
        std::string a, b;
        if (mg.is_string()) {
          const std::string s = mg.get<std::string>();
          const auto sp = s.find(' ', 1);
          if (sp == std::string::npos) mxq::detail::io::fail(file_, "merge '" + s + "' is not \"a b\"");
          a = s.substr(0, sp), b = s.substr(sp + 1);
        } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
          a = mg[0].get<std::string>(), b = mg[1].get<std::string>();
        } else {
          mxq::detail::io::fail(file_, "a merge is neither \"a b\" nor [\"a\", \"b\"]: " + mg.dump());
        }
        const auto ia = ids_.find(a), ib = ids_.find(b), ic = ids_.find(a + b);
        if (ia == ids_.end() || ib == ids_.end() || ic == ids_.end())
          mxq::detail::io::fail(file_, "merge '" + a + " " + b + "' names a token not in the vocabulary");
        merges_.emplace(key(ia->second, ib->second), merge{rank++, ic->second});
      }
    }
    // ---- pre-tokenizer
    const nlohmann::json pt = t.contains("pre_tokenizer") ? t.at("pre_tokenizer") : nlohmann::json();
    auto byte_level = [&](const nlohmann::json& j, bool with_regex) {
      if (j.value("add_prefix_space", false)) unsupported("ByteLevel add_prefix_space");
      if (j.value("use_regex", true) != with_regex)
        unsupported(std::string("ByteLevel use_regex ") + (with_regex ? "false" : "true") + " here");
    };
    if (type_of(pt) == "ByteLevel") {
      byte_level(pt, true);
      split_ = std::make_unique<dt::regex>(dt::gpt2_regex, file_);
    } else if (type_of(pt) == "Sequence" && pt.contains("pretokenizers") && pt.at("pretokenizers").size() == 2 &&
               type_of(pt.at("pretokenizers")[0]) == "Split" && type_of(pt.at("pretokenizers")[1]) == "ByteLevel") {
      const auto& sp = pt.at("pretokenizers")[0];
      if (sp.value("behavior", "") != "Isolated") unsupported("Split behavior '" + sp.value("behavior", "") + "'");
      if (sp.value("invert", false)) unsupported("Split invert");
      if (!sp.contains("pattern") || !sp.at("pattern").is_object() || !sp.at("pattern").contains("Regex"))
        unsupported("Split without a Regex pattern");
      byte_level(pt.at("pretokenizers")[1], false);
      split_ = std::make_unique<dt::regex>(sp.at("pattern").at("Regex").get<std::string>(), file_);
    } else {
      unsupported("pre-tokenizer '" + type_of(pt) + "' (ByteLevel, or Split + ByteLevel)");
    }
    if (t.contains("decoder") && !t.at("decoder").is_null() && type_of(t.at("decoder")) != "ByteLevel")
      unsupported("decoder '" + type_of(t.at("decoder")) + "'");
    // ---- added tokens, then the post-processor's template
    if (t.contains("added_tokens") && t.at("added_tokens").is_array())
      for (const auto& a : t.at("added_tokens")) {
        const std::string c = a.value("content", "");
        for (const char* k : {"lstrip", "rstrip", "single_word"})
          if (a.value(k, false)) unsupported("added token '" + c + "' with " + k);
        if (c.empty()) mxq::detail::io::fail(file_, "an added token has no content");
        const token_id id = a.value("id", token_id{0});
        add_token(c, id);
        added_.push_back({c, id, a.value("special", false)});
        if (id >= added_id_.size()) added_id_.resize(id + 1, false);
        added_id_[id] = true;  // decode asks per token: a flag, not a search of added_
      }
    if (t.contains("post_processor") && !t.at("post_processor").is_null()) {
      const auto& pp = t.at("post_processor");
      const std::string ty = type_of(pp);
      if (ty == "TemplateProcessing") {
        if (!pp.contains("single") || !pp.at("single").is_array()) unsupported("TemplateProcessing without 'single'");
        bool seq = false;
        for (const auto& piece : pp.at("single")) {
          if (piece.contains("Sequence")) {
            seq = true;
          } else if (piece.contains("SpecialToken")) {
            const std::string n = piece.at("SpecialToken").value("id", "");
            const auto it = ids_.find(n);
            if (it == ids_.end()) mxq::detail::io::fail(file_, "post-processor token '" + n + "' is not in the vocabulary");
            (seq ? suffix_ : prefix_).push_back(it->second);
          } else {
            unsupported("TemplateProcessing piece " + piece.dump());
          }
        }
      } else if (ty != "ByteLevel") {
        unsupported("post-processor '" + ty + "'");
      }
    }
  }

  std::size_t vocab_size() const noexcept { return tokens_.size(); }
  const std::filesystem::path& file() const noexcept { return file_; }
  // The token string of `id` (as the vocabulary spells it).
  const std::string& token(token_id id) const {
    if (id >= tokens_.size()) throw error(file_.string() + ": token id " + std::to_string(id) + " is out of range");
    return tokens_[id];
  }

  // `text` as token ids; add_special: the post-processor's tokens (e.g. BOS) around it.
  std::vector<token_id> encode(std::string_view text, bool add_special = true) const {
    if (const std::size_t bad = detail_tok::invalid_utf8(text); bad != std::string_view::npos)
      throw error(file_.string() + ": the text is not valid UTF-8 at byte " + std::to_string(bad));
    std::vector<token_id> out;
    if (add_special) out = prefix_;
    std::size_t pos = 0;
    while (pos < text.size()) {
      // The next added token (leftmost, then longest) splits the text; the part before it is
      // pre-tokenized and merged.
      std::size_t at = text.size(), len = 0;
      token_id id = 0;
      for (const auto& a : added_) {
        const std::size_t f = text.find(a.content, pos);
        if (f != std::string_view::npos && (f < at || (f == at && a.content.size() > len))) at = f, len = a.content.size(), id = a.id;
      }
      encode_plain(text.substr(pos, at - pos), out);
      if (len) out.push_back(id);
      pos = at + len;
    }
    if (add_special) out.insert(out.end(), suffix_.begin(), suffix_.end());
    return out;
  }

  // The text of `ids` (added tokens as their content; byte-level tokens back to their bytes).
  std::string decode(std::span<const token_id> ids) const {
    std::string s;
    for (token_id id : ids) {
      if (id >= tokens_.size() || !known_[id]) throw error(file_.string() + ": token id " + std::to_string(id) + " is not in the vocabulary");
      if (is_added(id)) {
        s += tokens_[id];
        continue;
      }
      const std::string& t = tokens_[id];
      for (std::size_t i = 0; i < t.size();) {  // each code point back to its byte
        const auto c = static_cast<unsigned char>(t[i]);
        const std::size_t n = detail_tok::utf8_len(c);
        std::uint32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
        for (std::size_t k = 1; k < n && i + k < t.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(t[i + k]) & 0x3F);
        i += n;
        const auto it = cp_to_byte().find(cp);
        if (it == cp_to_byte().end()) throw error(file_.string() + ": token '" + t + "' is not byte-level");
        s += static_cast<char>(it->second);
      }
    }
    return s;
  }

 private:
  struct merge {
    std::uint32_t rank;
    token_id result;
  };
  struct added_token {
    std::string content;
    token_id id;
    bool special;
  };
  static std::uint64_t key(token_id a, token_id b) noexcept { return (std::uint64_t{a} << 32) | b; }
  static const std::unordered_map<std::uint32_t, std::uint8_t>& cp_to_byte() {
    static const std::unordered_map<std::uint32_t, std::uint8_t> m = [] {
      std::unordered_map<std::uint32_t, std::uint8_t> r;
      for (std::uint32_t b = 0; b < 256; ++b) r[detail_tok::byte_to_cp()[b]] = static_cast<std::uint8_t>(b);
      return r;
    }();
    return m;
  }
  bool is_added(token_id id) const { return id < added_id_.size() && added_id_[id]; }
  void add_token(const std::string& tok, token_id id) {
    if (id >= (1u << 24)) mxq::detail::io::fail(file_, "token '" + tok + "' has id " + std::to_string(id) + " (too large)");
    if (id >= tokens_.size()) tokens_.resize(id + 1), known_.resize(id + 1, false);
    if (known_[id] && tokens_[id] != tok)
      mxq::detail::io::fail(file_, "id " + std::to_string(id) + " is both '" + tokens_[id] + "' and '" + tok + "'");
    tokens_[id] = tok, known_[id] = true;
    ids_.emplace(tok, id);
  }

  void encode_plain(std::string_view text, std::vector<token_id>& out) const {
    if (text.empty()) return;
    split_->split(text, [&](std::size_t b, std::size_t e) { encode_word(text.substr(b, e - b), out); });
  }
  // One pre-tokenized piece: its bytes as GPT-2 code points, merged by rank.
  void encode_word(std::string_view piece, std::vector<token_id>& out) const {
    std::string mapped;
    for (unsigned char c : piece) detail_tok::append_utf8(mapped, detail_tok::byte_to_cp()[c]);
    if (ignore_merges_)
      if (const auto it = ids_.find(mapped); it != ids_.end()) {
        out.push_back(it->second);
        return;
      }
    std::vector<token_id> sym;
    sym.reserve(piece.size());
    for (std::size_t i = 0; i < mapped.size();) {
      const std::size_t n = detail_tok::utf8_len(static_cast<unsigned char>(mapped[i]));
      const auto it = ids_.find(mapped.substr(i, n));
      if (it == ids_.end())
        throw error(file_.string() + ": byte 0x" + std::to_string(static_cast<unsigned char>(piece[sym.size()])) +
                    " has no token (a byte-level vocabulary holds all 256)");
      sym.push_back(it->second);
      i += n;
    }
    // The lowest-ranked adjacent pair merges first, leftmost among equals, until none is left.
    while (sym.size() > 1) {
      std::uint32_t best = UINT32_MAX;
      std::size_t at = 0;
      token_id result = 0;
      for (std::size_t i = 0; i + 1 < sym.size(); ++i) {
        const auto it = merges_.find(key(sym[i], sym[i + 1]));
        if (it != merges_.end() && it->second.rank < best) best = it->second.rank, at = i, result = it->second.result;
      }
      if (best == UINT32_MAX) break;
      sym[at] = result;
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    out.insert(out.end(), sym.begin(), sym.end());
  }

  std::filesystem::path file_;
  std::vector<std::string> tokens_;
  std::vector<bool> known_;
  std::unordered_map<std::string, token_id> ids_;
  std::unordered_map<std::uint64_t, merge> merges_;
  std::vector<added_token> added_;
  std::vector<bool> added_id_;  // id -> is an added token
  std::vector<token_id> prefix_, suffix_;
  std::unique_ptr<detail_tok::regex> split_;
  bool ignore_merges_ = false;
};

}  // namespace mxq::llm
