// The tokenizer a Hugging Face model directory ships (tokenizer.json), as the `tokenizers`
// library runs it:
//
//   mxq::llm::tokenizer tok("Llama-3-8B");          // the directory or its tokenizer.json
//   std::vector<mxq::llm::token_id> ids = tok.encode("def f(x):\n    return x\n");
//   std::string text = tok.decode(ids);             // the text again
//
// Supported (anything else the file declares is an error naming it, never a silently different
// tokenization):
// - model BPE: merges as "a b" or ["a", "b"], ignore_merges, byte_fallback (<0xXX> tokens),
//   unk_token with fuse_unk; no dropout, no subword prefix or word suffix;
// - normalizers NFC (Qwen2/3), Prepend and Replace of a string (Llama 2 / Mistral's
//   SentencePiece-style files), and Sequences of them;
// - pre-tokenizers ByteLevel (GPT-2's regex; add_prefix_space false), Sequence[Split(Regex,
//   Isolated), ByteLevel(use_regex false)] (Llama 3, Qwen2/3), Metaspace (prepend_scheme always /
//   first / never, split or not), or none; regexes run in PCRE2 with UTF-8 and Unicode properties
//   (\p{L}, \p{N} exactly as Unicode defines them);
// - decoders ByteLevel, Metaspace, and Sequences of Replace, ByteFallback, Fuse and Strip;
// - post-processor ByteLevel or TemplateProcessing (its special tokens around a single
//   sequence, e.g. BOS);
// - added tokens, matched in the raw text before normalization (the longest at the leftmost
//   position), without lstrip / rstrip / single_word, and not `normalized` under a normalizer.
// Text must be valid UTF-8 (Hugging Face takes Rust strings): invalid bytes are an error naming
// their offset. A character without a token, where the file gives neither a byte fallback nor an
// unk_token, is an error too (Hugging Face would drop it silently).
#pragma once
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <queue>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/error.hpp"
#include "json_file.hpp"
#include "unicode_nfc.hpp"
#include "utf8.hpp"

namespace mxq::llm {

using token_id = std::uint32_t;  // as forward.hpp declares it (this header needs no Eigen)

namespace detail_tok {

namespace u8 = detail_utf8;

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
// The inverse: code point -> byte, -1 for code points that stand for no byte.
inline int cp_to_byte(std::uint32_t cp) {
  static const std::array<std::int16_t, 324> t = [] {
    std::array<std::int16_t, 324> m{};
    m.fill(-1);
    for (std::uint32_t b = 0; b < 256; ++b) m[byte_to_cp()[b]] = static_cast<std::int16_t>(b);
    return m;
  }();
  return cp < t.size() ? t[cp] : -1;
}

// A compiled PCRE2 pattern (UTF-8, Unicode properties), matched over a subject piece by piece.
class regex {
 public:
  regex(const std::string& pattern, const std::filesystem::path& file) : file_(file) {
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
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {  // e.g. the match limit of a pathological pattern: an error, not a silent split
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw error(file_.string() + ": pre-tokenizer regex failed on the text at byte " + std::to_string(pos) + ": " +
                    reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      if (ov[1] == ov[0]) {  // an empty match: step one character
        pos = ov[0] + u8::length(static_cast<unsigned char>(s[ov[0]]));
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
  std::filesystem::path file_;
};

// GPT-2's pre-tokenizer regex (the ByteLevel pre-tokenizer with use_regex).
inline constexpr const char* gpt2_regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string r;
  r.reserve(s.size());
  std::size_t pos = 0;
  for (std::size_t f; (f = s.find(from, pos)) != std::string::npos; pos = f + from.size()) r.append(s, pos, f - pos), r += to;
  r.append(s, pos);
  s = std::move(r);
}

// One normalizer step, in declaration order.
struct normalize_step {
  enum kind_t { nfc, prepend, replace } kind;
  std::string from, to;  // prepend: to; replace: from -> to
};

// One decoder step (Hugging Face's decode_chain): each works on the token strings in turn.
struct decode_step {
  enum kind_t { byte_level, replace, byte_fallback, fuse, strip, metaspace } kind;
  std::string from, to;              // replace; metaspace: from = the replacement
  std::uint32_t strip_cp = 0;        // strip: the character
  std::size_t start = 0, stop = 0;   // strip: how many at each end
  bool prepend = false;              // metaspace: a prefix was added when encoding
};

// The Metaspace pre-tokenizer's settings.
struct metaspace_t {
  std::string replacement;
  enum scheme_t { always, first, never } scheme = always;
  bool split = true;
};

// `<0xXX>` -> XX, or -1.
inline int fallback_byte(std::string_view t) noexcept {
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  const int h = hex(t[3]), l = hex(t[4]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

using detail_json::read_json;

}  // namespace detail_tok

class tokenizer {
 public:
  // `path`: a model directory (its tokenizer.json) or a tokenizer.json file.
  explicit tokenizer(const std::filesystem::path& path) {
    file_ = std::filesystem::is_directory(path) ? path / "tokenizer.json" : path;
    if (!std::filesystem::exists(file_)) mxq::detail::io::fail(file_, "no such tokenizer file");
    init_checked(detail_tok::read_json(file_));
  }
  // From tokenizer.json's text in memory; `name` is what errors call it.
  tokenizer(std::string_view json_text, std::filesystem::path name) : file_(std::move(name)) {
    init_checked(mxq::detail::io::parse_json(json_text, file_));
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
    if (const std::size_t bad = detail_utf8::invalid(text); bad != std::string_view::npos)
      throw error(file_.string() + ": the text is not valid UTF-8 at byte " + std::to_string(bad));
    std::vector<token_id> out;
    if (add_special) out = prefix_;
    // The next added token (leftmost, then longest) splits the text; the part before it is
    // normalized, pre-tokenized and merged. Each added token's next occurrence is searched for
    // again only once the position has passed it.
    std::vector<std::size_t> next(added_.size(), 0);
    std::vector<bool> searched(added_.size(), false);
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t at = text.size(), len = 0;
      token_id id = 0;
      for (std::size_t k = 0; k < added_.size(); ++k) {
        if (!searched[k] || (next[k] != std::string_view::npos && next[k] < pos))
          next[k] = text.find(added_[k].content, pos), searched[k] = true;
        const std::size_t f = next[k];
        if (f != std::string_view::npos && (f < at || (f == at && added_[k].content.size() > len))) at = f, len = added_[k].content.size(), id = added_[k].id;
      }
      encode_plain(text.substr(pos, at - pos), pos == 0, out);
      if (len) out.push_back(id);
      pos = at + len;
    }
    if (add_special) out.insert(out.end(), suffix_.begin(), suffix_.end());
    return out;
  }

  // The text of `ids`, through the file's decoder (added tokens as their content).
  std::string decode(std::span<const token_id> ids) const {
    namespace dt = detail_tok;
    std::vector<std::string> toks;
    std::vector<bool> added;
    toks.reserve(ids.size()), added.reserve(ids.size());
    for (token_id id : ids) {
      if (id >= tokens_.size() || !known_[id]) throw error(file_.string() + ": token id " + std::to_string(id) + " is not in the vocabulary");
      toks.push_back(tokens_[id]), added.push_back(is_added(id));
    }
    for (const auto& s : decode_) {
      switch (s.kind) {
        case dt::decode_step::byte_level:  // each code point back to its byte
          for (std::size_t k = 0; k < toks.size(); ++k) {
            if (added[k]) continue;
            std::string b;
            const std::string& t = toks[k];
            for (std::size_t i = 0; i < t.size();) {
              const int v = dt::cp_to_byte(detail_utf8::next(t, i));
              if (v < 0) throw error(file_.string() + ": token '" + t + "' is not byte-level");
              b += static_cast<char>(v);
            }
            toks[k] = std::move(b);
          }
          break;
        case dt::decode_step::replace:
          for (auto& t : toks) dt::replace_all(t, s.from, s.to);
          break;
        case dt::decode_step::byte_fallback: {  // runs of <0xXX> -> their bytes, U+FFFD each if not UTF-8
          std::vector<std::string> r;
          std::vector<bool> ra;
          std::string run;
          std::size_t run_len = 0;
          auto flush = [&] {
            if (!run_len) return;
            if (detail_utf8::invalid(run) == std::string::npos) r.push_back(run), ra.push_back(false);
            else
              for (std::size_t i = 0; i < run_len; ++i) r.emplace_back("\xEF\xBF\xBD"), ra.push_back(false);
            run.clear(), run_len = 0;
          };
          for (std::size_t k = 0; k < toks.size(); ++k) {
            const int b = added[k] ? -1 : dt::fallback_byte(toks[k]);
            if (b >= 0) {
              run += static_cast<char>(b), ++run_len;
              continue;
            }
            flush();
            r.push_back(std::move(toks[k])), ra.push_back(added[k]);
          }
          flush();
          toks = std::move(r), added = std::move(ra);
          break;
        }
        case dt::decode_step::fuse: {
          std::string all;
          for (const auto& t : toks) all += t;
          toks.assign(1, std::move(all)), added.assign(1, false);
          break;
        }
        case dt::decode_step::strip:
          for (auto& t : toks) {
            std::string c;
            detail_utf8::append(c, s.strip_cp);
            std::size_t b = 0, e = t.size();
            for (std::size_t n = 0; n < s.start && t.compare(b, c.size(), c) == 0 && b + c.size() <= e; ++n) b += c.size();
            for (std::size_t n = 0; n < s.stop && e >= b + c.size() && t.compare(e - c.size(), c.size(), c) == 0; ++n) e -= c.size();
            t = t.substr(b, e - b);
          }
          break;
        case dt::decode_step::metaspace:
          for (std::size_t k = 0; k < toks.size(); ++k) {
            dt::replace_all(toks[k], s.from, " ");
            if (k == 0 && s.prepend && !toks[k].empty() && toks[k][0] == ' ') toks[k].erase(0, 1);
          }
          break;
      }
    }
    std::string text;
    for (const auto& t : toks) text += t;
    return text;
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
  static constexpr token_id no_token = ~token_id{0};
  static std::uint64_t key(token_id a, token_id b) noexcept { return (std::uint64_t{a} << 32) | b; }

  // A value of the wrong JSON type where init reads one is an error naming the file, too.
  void init_checked(const nlohmann::json& t) {
    if (!t.is_object()) mxq::detail::io::fail(file_, "is not a JSON object");
    try {
      init(t);
    } catch (const nlohmann::json::exception& e) {
      mxq::detail::io::fail(file_, std::string("unexpected tokenizer structure: ") + e.what());
    }
  }
  void init(const nlohmann::json& t) {
    namespace dt = detail_tok;
    auto unsupported = [&](const std::string& what) { mxq::detail::io::fail(file_, what + " is not supported"); };
    auto type_of = [](const nlohmann::json& j) { return j.is_object() ? j.value("type", "") : std::string(); };
    auto string_of = [&](const nlohmann::json& j, const char* key, const std::string& where) {
      if (!j.contains(key) || !j.at(key).is_string()) mxq::detail::io::fail(file_, where + " has no string '" + key + "'");
      return j.at(key).get<std::string>();
    };
    // A Replace's pattern: {"String": s} only (a Regex pattern would need its own semantics).
    auto pattern_of = [&](const nlohmann::json& j, const std::string& where) {
      if (!j.contains("pattern") || !j.at("pattern").is_object() || !j.at("pattern").contains("String"))
        unsupported(where + " with a pattern other than a String");
      return string_of(j.at("pattern"), "String", where);
    };
    // ---- normalizer
    std::vector<nlohmann::json> norms;
    if (t.contains("normalizer") && !t.at("normalizer").is_null()) {
      const auto& n = t.at("normalizer");
      if (type_of(n) == "Sequence" && n.contains("normalizers") && n.at("normalizers").is_array())
        norms.assign(n.at("normalizers").begin(), n.at("normalizers").end());
      else norms.push_back(n);
    }
    for (const auto& n : norms) {
      const std::string ty = type_of(n);
      if (ty == "NFC") normalize_.push_back({dt::normalize_step::nfc, "", ""});
      else if (ty == "Prepend") normalize_.push_back({dt::normalize_step::prepend, "", string_of(n, "prepend", "normalizer Prepend")});
      else if (ty == "Replace")
        normalize_.push_back({dt::normalize_step::replace, pattern_of(n, "normalizer Replace"), string_of(n, "content", "normalizer Replace")});
      else unsupported("normalizer '" + ty + "' (NFC, Prepend, Replace, or a Sequence of them)");
    }
    // ---- model
    if (!t.contains("model") || type_of(t.at("model")) != "BPE") unsupported("model '" + (t.contains("model") ? type_of(t.at("model")) : "") + "' (only BPE)");
    const auto& m = t.at("model");
    for (const char* k : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"})
      if (m.contains(k) && !m.at(k).is_null() && !(m.at(k).is_string() && m.at(k).get<std::string>().empty()))
        unsupported(std::string("BPE ") + k);
    byte_fallback_ = m.value("byte_fallback", false);
    fuse_unk_ = m.value("fuse_unk", false);
    ignore_merges_ = m.value("ignore_merges", false);
    if (!m.contains("vocab") || !m.at("vocab").is_object()) mxq::detail::io::fail(file_, "model.vocab is not an object");
    for (const auto& [tok, id] : m.at("vocab").items()) {
      if (!id.is_number_unsigned()) mxq::detail::io::fail(file_, "token '" + tok + "' has no valid id");
      add_token(tok, id.get<token_id>());
      std::size_t i = 0;  // single-character tokens by code point: the BPE looks every character up
      const std::uint32_t cp = detail_utf8::next(tok, i);
      if (i == tok.size()) char_ids_.emplace(cp, id.get<token_id>());
    }
    if (m.contains("unk_token") && m.at("unk_token").is_string()) {
      const auto it = ids_.find(m.at("unk_token").get<std::string>());
      if (it == ids_.end()) mxq::detail::io::fail(file_, "unk_token '" + m.at("unk_token").get<std::string>() + "' is not in the vocabulary");
      unk_ = it->second, has_unk_ = true;
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
      byte_level_ = true;
    };
    if (pt.is_null()) {
      // The whole normalized text is one word (SentencePiece-style files).
    } else if (type_of(pt) == "ByteLevel") {
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
    } else if (type_of(pt) == "Metaspace") {
      metaspace_ = std::make_unique<dt::metaspace_t>(metaspace_of(pt));
    } else {
      unsupported("pre-tokenizer '" + type_of(pt) + "' (ByteLevel, Split + ByteLevel, Metaspace or none)");
    }
    // ---- decoder
    std::vector<nlohmann::json> decs;
    if (t.contains("decoder") && !t.at("decoder").is_null()) {
      const auto& d = t.at("decoder");
      if (type_of(d) == "Sequence" && d.contains("decoders") && d.at("decoders").is_array()) decs.assign(d.at("decoders").begin(), d.at("decoders").end());
      else decs.push_back(d);
    }
    for (const auto& d : decs) {
      const std::string ty = type_of(d);
      dt::decode_step s{};
      if (ty == "ByteLevel") {
        s.kind = dt::decode_step::byte_level;
      } else if (ty == "Replace") {
        s.kind = dt::decode_step::replace, s.from = pattern_of(d, "decoder Replace"), s.to = string_of(d, "content", "decoder Replace");
      } else if (ty == "ByteFallback") {
        s.kind = dt::decode_step::byte_fallback;
      } else if (ty == "Fuse") {
        s.kind = dt::decode_step::fuse;
      } else if (ty == "Strip") {
        const std::string c = string_of(d, "content", "decoder Strip");
        std::size_t i = 0;
        if (c.empty() || (s.strip_cp = detail_utf8::next(c, i), i != c.size())) unsupported("decoder Strip of '" + c + "' (one character)");
        s.kind = dt::decode_step::strip, s.start = d.value("start", std::size_t{0}), s.stop = d.value("stop", std::size_t{0});
      } else if (ty == "Metaspace") {
        const dt::metaspace_t ms = metaspace_of(d);
        s.kind = dt::decode_step::metaspace, s.from = ms.replacement, s.prepend = ms.scheme != dt::metaspace_t::never;
      } else {
        unsupported("decoder '" + ty + "' (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip)");
      }
      decode_.push_back(std::move(s));
    }
    // ---- added tokens, then the post-processor's template
    if (t.contains("added_tokens") && t.at("added_tokens").is_array())
      for (const auto& a : t.at("added_tokens")) {
        const std::string c = a.value("content", "");
        for (const char* k : {"lstrip", "rstrip", "single_word"})
          if (a.value(k, false)) unsupported("added token '" + c + "' with " + k);
        if (a.value("normalized", false) && !normalize_.empty()) unsupported("added token '" + c + "' matched after the normalizer (normalized)");
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
    if (byte_fallback_)
      for (std::uint32_t b = 0; b < 256; ++b) {
        static constexpr char hex[] = "0123456789ABCDEF";
        const auto it = ids_.find(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
        fallback_[b] = it == ids_.end() ? no_token : it->second;
      }
  }

  detail_tok::metaspace_t metaspace_of(const nlohmann::json& j) const {
    detail_tok::metaspace_t ms;
    ms.replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    ms.split = j.value("split", true);
    const std::string sch = j.contains("prepend_scheme") ? j.value("prepend_scheme", "always")
                                                         : (j.value("add_prefix_space", true) ? "always" : "never");
    if (sch == "always") ms.scheme = detail_tok::metaspace_t::always;
    else if (sch == "first") ms.scheme = detail_tok::metaspace_t::first;
    else if (sch == "never") ms.scheme = detail_tok::metaspace_t::never;
    else mxq::detail::io::fail(file_, "Metaspace prepend_scheme '" + sch + "' is not supported (always, first, never)");
    if (ms.replacement.empty()) mxq::detail::io::fail(file_, "Metaspace has an empty replacement");
    return ms;
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

  // Text between added tokens: normalized, pre-tokenized, each word merged. `first`: it starts
  // the text (Metaspace's prepend_scheme "first").
  void encode_plain(std::string_view raw, bool first, std::vector<token_id>& out) const {
    if (raw.empty()) return;
    std::string norm;
    std::string_view text = raw;
    if (!normalize_.empty()) {
      norm = std::string(raw);
      for (const auto& s : normalize_) {
        if (s.kind == detail_tok::normalize_step::nfc) norm = nfc(norm);
        else if (s.kind == detail_tok::normalize_step::prepend) norm = norm.empty() ? norm : s.to + norm;
        else detail_tok::replace_all(norm, s.from, s.to);
      }
      text = norm;
    }
    if (text.empty()) return;
    if (split_) {
      std::string mapped;
      split_->split(text, [&](std::size_t b, std::size_t e) {
        mapped.clear();
        for (std::size_t i = b; i < e; ++i) detail_utf8::append(mapped, detail_tok::byte_to_cp()[static_cast<unsigned char>(text[i])]);
        encode_word(mapped, out);
      });
    } else if (metaspace_) {
      const auto& ms = *metaspace_;
      std::string w(text);
      detail_tok::replace_all(w, " ", ms.replacement);
      if (w.compare(0, ms.replacement.size(), ms.replacement) != 0 &&
          (ms.scheme == detail_tok::metaspace_t::always || (ms.scheme == detail_tok::metaspace_t::first && first)))
        w = ms.replacement + w;
      if (!ms.split) return encode_word(w, out);
      // Split where a run of replacements starts; the run begins the word after it
      // (MergedWithNext: consecutive delimiters stay together).
      const std::size_t r = ms.replacement.size();
      std::size_t b = 0;
      for (std::size_t f = w.find(ms.replacement, 1); f != std::string::npos; f = w.find(ms.replacement, f + r))
        if (f > b && (f < r || w.compare(f - r, r, ms.replacement) != 0)) encode_word(std::string_view(w).substr(b, f - b), out), b = f;
      encode_word(std::string_view(w).substr(b), out);
    } else {
      encode_word(text, out);
    }
  }

  // One word: its characters as tokens (bytes through the fallback, or unk), then merged by
  // rank, lowest first and leftmost among equals (a heap over the adjacent pairs, as Hugging
  // Face's Word::merge_all: long words, such as a whole SentencePiece-style text, stay n log n).
  void encode_word(std::string_view w, std::vector<token_id>& out) const {
    if (w.empty()) return;
    if (ignore_merges_)
      if (const auto it = ids_.find(std::string(w)); it != ids_.end()) {
        out.push_back(it->second);
        return;
      }
    std::vector<token_id> sym;
    sym.reserve(w.size());
    bool pending_unk = false;
    for (std::size_t i = 0; i < w.size();) {
      const std::size_t at = i;
      const std::uint32_t cp = detail_utf8::next(w, i);
      if (const auto it = char_ids_.find(cp); it != char_ids_.end()) {
        if (pending_unk) sym.push_back(unk_), pending_unk = false;
        sym.push_back(it->second);
        continue;
      }
      if (byte_fallback_) {
        bool all = true;
        for (std::size_t k = at; k < i; ++k) all = all && fallback_[static_cast<unsigned char>(w[k])] != no_token;
        if (all) {  // as Hugging Face: a pending unk stays pending across fallback bytes
          for (std::size_t k = at; k < i; ++k) sym.push_back(fallback_[static_cast<unsigned char>(w[k])]);
          continue;
        }
      }
      if (!has_unk_) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "U+%04X", cp);
        throw error(file_.string() + ": character " + buf + " has no token, and the file declares no byte fallback or unk_token");
      }
      if (pending_unk && !fuse_unk_) sym.push_back(unk_);
      pending_unk = true;
    }
    if (pending_unk) sym.push_back(unk_);
    merge_all(sym);
    out.insert(out.end(), sym.begin(), sym.end());
  }

  void merge_all(std::vector<token_id>& sym) const {
    const std::size_t n = sym.size();
    if (n < 2) return;
    struct cand {
      std::uint32_t rank;
      std::uint32_t pos;
      token_id result;
      bool operator>(const cand& o) const noexcept { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::vector<std::uint32_t> prev(n), next(n);
    std::vector<bool> alive(n, true);
    std::vector<cand> heap_store;
    heap_store.reserve(n);
    std::priority_queue<cand, std::vector<cand>, std::greater<cand>> heap(std::greater<cand>(), std::move(heap_store));
    constexpr std::uint32_t none = UINT32_MAX;
    for (std::size_t i = 0; i < n; ++i) prev[i] = i ? static_cast<std::uint32_t>(i - 1) : none, next[i] = i + 1 < n ? static_cast<std::uint32_t>(i + 1) : none;
    auto push = [&](std::uint32_t a) {
      if (a == none || next[a] == none) return;
      const auto it = merges_.find(key(sym[a], sym[next[a]]));
      if (it != merges_.end()) heap.push({it->second.rank, a, it->second.result});
    };
    for (std::uint32_t i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
      const cand c = heap.top();
      heap.pop();
      if (!alive[c.pos] || next[c.pos] == none) continue;
      const std::uint32_t b = next[c.pos];
      const auto it = merges_.find(key(sym[c.pos], sym[b]));
      if (it == merges_.end() || it->second.result != c.result) continue;  // stale: a neighbour has merged
      sym[c.pos] = c.result;
      alive[b] = false;
      next[c.pos] = next[b];
      if (next[b] != none) prev[next[b]] = c.pos;
      push(prev[c.pos]);
      push(c.pos);
    }
    std::size_t k = 0;
    for (std::uint32_t i = 0; i != none; i = next[i]) sym[k++] = sym[i];
    sym.resize(k);
  }

  std::filesystem::path file_;
  std::vector<std::string> tokens_;
  std::vector<bool> known_;
  std::unordered_map<std::string, token_id> ids_;
  std::unordered_map<std::uint32_t, token_id> char_ids_;
  std::unordered_map<std::uint64_t, merge> merges_;
  std::vector<added_token> added_;
  std::vector<bool> added_id_;  // id -> is an added token
  std::vector<token_id> prefix_, suffix_;
  std::vector<detail_tok::normalize_step> normalize_;
  std::vector<detail_tok::decode_step> decode_;
  std::unique_ptr<detail_tok::regex> split_;
  std::unique_ptr<detail_tok::metaspace_t> metaspace_;
  std::array<token_id, 256> fallback_{};
  token_id unk_ = 0;
  bool byte_level_ = false, byte_fallback_ = false, fuse_unk_ = false, has_unk_ = false, ignore_merges_ = false;
};

}  // namespace mxq::llm
