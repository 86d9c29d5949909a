// The tokenizer.json tokenizer (issue 13): ids of hand-picked strings (spaces, newlines, digits,
// CJK, emoji, special tokens) as Hugging Face's own implementation gives them, the bundled test
// ids re-made from their text, round trips, named errors for invalid UTF-8 and for what a file
// declares that mxq does not run; and, where node and tests/js's @huggingface/tokenizers are
// installed, byte-identical ids on a few hundred real Python source files.
#include <catch2/catch.hpp>

#include <algorithm>
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
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
  refused(j, "pre-tokenizer 'Metaspace'");
  j = base;
  j["normalizer"] = {{"type", "NFC"}};
  refused(j, "normalizer 'NFC' is not supported");
  j = base;
  j["model"]["byte_fallback"] = true;
  refused(j, "byte_fallback");
  j = base;
  j["added_tokens"][0]["lstrip"] = true;
  refused(j, "with lstrip");
  j = base;
  j["pre_tokenizer"]["add_prefix_space"] = true;
  refused(j, "add_prefix_space");
  CHECK_THROWS_WITH(tokenizer(tmp / "missing"), Contains("no such tokenizer file"));
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

TEST_CASE("tokenizer: byte-identical ids with @huggingface/tokenizers on real source files", "[tokenizer][crosscheck]") {
  const fs::path js = repo / "tests" / "js";
  const bool node = std::system("node --version > /dev/null 2>&1") == 0;
  if (!node || !fs::exists(js / "node_modules" / "@huggingface" / "tokenizers"))
    mxq::test::skip_test("node or tests/js/node_modules/@huggingface/tokenizers missing (npm install --prefix tests/js)");
  // A few hundred real Python files: the standard library's, in path order.
  std::vector<fs::path> files;
  for (const char* d : {"/usr/lib/python3.11", "/usr/lib/python3"})
    if (fs::is_directory(d) && files.empty())
      for (const auto& e : fs::recursive_directory_iterator(d, fs::directory_options::skip_permission_denied))
        if (e.is_regular_file() && e.path().extension() == ".py" &&
            mxq::llm::detail_tok::invalid_utf8(slurp(e.path())) == std::string_view::npos)  // both would refuse others
          files.push_back(e.path());
  if (files.size() < 50) mxq::test::skip_test("no Python standard library .py files to tokenize");
  std::sort(files.begin(), files.end());
  if (files.size() > 400) files.resize(400);
  const mxq::test::temp_dir tmp("tokenizer-js");
  {
    std::ofstream l(tmp / "list.txt");
    for (const auto& f : files) l << f.string() << "\n";
  }
  const auto r = mxq::test::run_program("node", (js / "hf_tokenize.mjs").string() + " " + (bundled / "tokenizer.json").string() +
                                                    " " + (tmp / "list.txt").string(), js.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const tokenizer tok(bundled);
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
