// mxq eval-ppl / quantize-model / table as scripts use them (last stdout lines, errors).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "support.hpp"

#ifdef MXQ_CLI_PATH
namespace fs = std::filesystem;

namespace {

using mxq::test::last_line;
using mxq::test::run_result;
using mxq::test::slurp;

fs::path scratch() {
  const fs::path d = fs::temp_directory_path() / ("mxq-cli-model-" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
run_result run_cli(const std::string& args) { return mxq::test::run_program(MXQ_CLI_PATH, args, MXQ_REPO_DIR); }

const std::string model = "--model examples/models/code-llama";
const std::string test_tokens = "--tokens examples/data/code/code-test.u16";
const std::string calib = "--calib examples/data/code/code-calib-128x256.u16";

}  // namespace

TEST_CASE("mxq eval-ppl prints ppl as its last line", "[cli][model]") {
  const auto r = run_cli("eval-ppl " + model + " " + test_tokens + " --windows 16");
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(std::regex_match(last_line(r.out), std::regex("ppl: 8\\.873[67]")));
}

TEST_CASE("mxq quantize-model writes a checkpoint that eval-ppl reloads exactly", "[cli][model]") {
  const fs::path out = scratch() / "q";
  const auto q = run_cli("quantize-model " + model + " --format mxfp4 --method gptq " + calib +
                         " --calib-windows 4 " + test_tokens + " --windows 4 --out " + out.string());
  INFO(q.err);
  REQUIRE(q.status == 0);
  CHECK(last_line(q.out) == "quantized: " + out.string());
  std::smatch m;
  REQUIRE(std::regex_search(q.out, m, std::regex("ppl: ([0-9.]+)")));
  const auto e = run_cli("eval-ppl --model " + out.string() + " " + test_tokens + " --windows 4");
  INFO(e.err);
  REQUIRE(e.status == 0);
  CHECK(last_line(e.out) == "ppl: " + m[1].str());
  // The same checkpoint through the packed MX GEMM kernels: FP32 activations differ from the
  // dense path only by summation order; int8 activations approximate it.
  for (const char* mode : {"f32", "int8"}) {
    INFO(mode);
    const auto k = run_cli("eval-ppl --model " + out.string() + " " + test_tokens + " --windows 4 --packed " + mode);
    INFO(k.err);
    REQUIRE(k.status == 0);
    CHECK(k.err.find("42 linears through the packed GEMM") != std::string::npos);
    std::smatch pm;
    const std::string kl = last_line(k.out);
    REQUIRE(std::regex_match(kl, pm, std::regex("ppl: ([0-9.]+)")));
    const double dense = std::stod(m[1].str()), packed = std::stod(pm[1].str());
    CHECK(std::abs(packed / dense - 1.0) < (std::string(mode) == "f32" ? 2e-4 : 1e-2));
  }
  const auto bad = run_cli("eval-ppl " + model + " " + test_tokens + " --windows 2 --packed f32");
  CHECK(bad.status != 0);
  CHECK(bad.err.find("no packed linear weights") != std::string::npos);
}

TEST_CASE("mxq table runs a cell and prints a Markdown table", "[cli][model]") {
  const auto r = run_cli("table " + model + " " + test_tokens + " " + calib +
                         " --windows 4 --calib-windows 2 --only mxint8/rtn");
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("| config | format | method | act | PPL |") != std::string::npos);
  CHECK(r.out.find("| W-only | mxint8 | rtn | fp32 |") != std::string::npos);
  CHECK(r.out.find("| W8A8 | mxint8 | rtn | mxint8 |") != std::string::npos);
}

TEST_CASE("model commands: bad input gives one line and a non-zero exit", "[cli][model]") {
  const std::pair<std::string, std::string> cases[] = {
      {"eval-ppl " + model + " " + test_tokens + " --bogus 1", "unknown option"},
      {"eval-ppl " + model + " " + test_tokens + " --windows", "needs a value"},
      {"eval-ppl " + test_tokens, "--model"},
      {"eval-ppl " + model + " " + test_tokens + " --windows 2000", "1880"},
      {"eval-ppl " + model + " --tokens examples/models/code-llama/config.json", "odd byte count"},
      {"eval-ppl " + model + " " + test_tokens + " --act-format mxfp5", "unknown activation format"},
      {"eval-ppl " + model + " " + test_tokens + " --packed f16", "--packed must be f32 or int8"},
      {"quantize-model " + model + " --format mxfp5 --out /tmp/x", "unknown format"},
      {"quantize-model " + model + " --format mxfp4 --method gptq+awq --out /tmp/x", "unknown method"},
      {"quantize-model " + model + " --format mxfp4 --act-format int9 --out /tmp/x " + calib, "unknown activation format"},
      {"quantize-model --model /nonexistent --format mxfp4 --out /tmp/x", "/nonexistent"},
      {"table " + model + " " + test_tokens, "--calib"},
  };
  mxq::test::expect_one_line_errors(run_cli, cases);
}
#else
TEST_CASE("model CLI tests need the tool (MXQ_BUILD_TOOLS)", "[cli]") { SUCCEED("CLI not built"); }
#endif
