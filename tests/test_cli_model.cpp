// mxq eval-ppl / quantize-model / table as scripts use them (last stdout lines, errors).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <map>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include <chrono>

#include <mxq/hadamard.hpp>
#include <mxq/io/npy.hpp>
#include <mxq/llm/forward.hpp>
#include <mxq/llm/journal.hpp>
#include <mxq/llm/perplexity.hpp>
#include <mxq/llm/weights.hpp>
#include <nlohmann/json.hpp>

#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_cli_model {

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

TEST_CASE("quantize-model --rotate: eval-ppl applies the recorded rotation, dense and packed, and exports refuse it", "[cli][model][rotation]") {
  const fs::path out = scratch() / "rot";
  const auto q = run_cli("quantize-model " + model + " --format mxfp4 --method gptq --rotate hadamard:32 " + calib +
                         " --calib-windows 4 " + test_tokens + " --windows 4 --out " + out.string());
  INFO(q.err);
  REQUIRE(q.status == 0);
  std::smatch m;
  REQUIRE(std::regex_search(q.out, m, std::regex("ppl: ([0-9.]+)")));
  const auto e = run_cli("eval-ppl --model " + out.string() + " " + test_tokens + " --windows 4");
  REQUIRE(e.status == 0);
  CHECK(last_line(e.out) == "ppl: " + m[1].str());
  const auto k = run_cli("eval-ppl --model " + out.string() + " " + test_tokens + " --windows 4 --packed f32");
  REQUIRE(k.status == 0);
  std::smatch pm;
  const std::string kl = last_line(k.out);
  REQUIRE(std::regex_match(kl, pm, std::regex("ppl: ([0-9.]+)")));
  CHECK(std::abs(std::stod(pm[1].str()) / std::stod(m[1].str()) - 1.0) < 2e-4);
  for (const char* to : {"gguf", "compressed-tensors"}) {
    const auto x = run_cli("export --model " + out.string() + " --to " + std::string(to) + " --out " + (scratch() / "rot-x").string());
    CHECK(x.status != 0);
    CHECK(x.err.find("rotated (hadamard:32)") != std::string::npos);
  }
  const std::pair<std::string, std::string> cases[] = {
      {"quantize-model " + model + " --format mxfp4 --method gptq --rotate hadamard:48 " + calib + " --out /tmp/x", "hadamard:48"},
      {"quantize-model " + model + " --format mxfp4 --method awq+gptq --rotate hadamard:32 " + calib + " --out /tmp/x", "sq/awq"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --rotate hadamard:32 --out-format gguf " + calib + " --out /tmp/x", "cannot apply the rotation"},
  };
  mxq::test::expect_one_line_errors(run_cli, cases);
}

TEST_CASE("mxq table runs a cell and prints a Markdown table", "[cli][model]") {
  const auto r = run_cli("table " + model + " " + test_tokens + " " + calib +
                         " --windows 4 --calib-windows 2 --only mxint8/rtn");
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("| config | format | method | act | PPL |") != std::string::npos);
  CHECK(r.out.find("| W-only | mxint8 | rtn | fp32 |") != std::string::npos);
  CHECK(r.out.find("| W8A8 | mxint8 | rtn | mxint8 |") != std::string::npos);
  // Flags of one step apply to the cells that have it: --refine (GPTQ's) leaves RTN cells alone.
  const auto rr = run_cli("table " + model + " " + test_tokens + " " + calib +
                          " --windows 4 --calib-windows 2 --only mxint8/rtn --refine 2");
  INFO(rr.err);
  CHECK(rr.status == 0);
  const auto row = [](const std::string& out) {
    // The row without its last cell: that one is wall time, which no two runs share.
    const auto at = out.find("| W-only | mxint8 | rtn | fp32 |");
    if (at == std::string::npos) return std::string();
    const auto line = out.substr(at, out.find('\n', at) - at);
    const auto cut = line.rfind('|', line.size() >= 2 ? line.size() - 2 : 0);
    return line.substr(0, cut);
  };
  CHECK(!row(r.out).empty());
  CHECK(row(rr.out) == row(r.out));
}

TEST_CASE("mxq table --best adds the row's best recipe, the model quantize-model makes with its flags", "[cli][model]") {
  // A reference file for this window count: the row's best reference is its lowest cell.
  const fs::path ref = scratch() / "ref-best.json";
  std::ofstream(ref) << R"({"windows": 4, "ppl": {"mxfp4/rtn": 12.0, "mxfp4/gptq": 10.0, "int4_pc/gptq": 1.0}})";
  const auto t = run_cli("table " + model + " " + test_tokens + " " + calib +
                         " --windows 4 --calib-windows 2 --only mxfp4/best --best --reference " + ref.string());
  INFO(t.err);
  REQUIRE(t.status == 0);
  std::smatch row, line;
  REQUIRE(std::regex_search(t.out, row, std::regex(R"(\| W-only \| mxfp4 \| best: --method gptq --rotate hadamard:16 --qep --refine 4 \| fp32 \| ([0-9.]+) \|.*\| 10\.000 \|)")));
  REQUIRE(std::regex_search(t.out, line, std::regex(R"(best W-only mxfp4: --method gptq --rotate hadamard:16 --qep --refine 4, ppl ([0-9.]+), best reference 10\.0000 \(gptq\): closes ([0-9.]+)% of its gap)")));
  // --only matches the keys mxfp4/best and mxfp4/best/Amxfp4, no grid cell.
  CHECK(t.out.find("| W4A4 | mxfp4 | best: --method mr-gptq --rotate hadamard:16 --qep --refine 4 | mxfp4 |") != std::string::npos);
  CHECK(t.out.find("| W-only | mxfp4 | gptq |") == std::string::npos);
  CHECK(last_line(t.out).rfind("2 cells, 4 test windows, 2 calibration windows, total", 0) == 0);
  // Without a reference cell for the row, the row's best cell measured in the same run.
  const auto n = run_cli("table " + model + " " + test_tokens + " " + calib +
                         " --windows 4 --calib-windows 2 --only nvfp4 --best --reference " + ref.string());
  INFO(n.err);
  REQUIRE(n.status == 0);
  std::smatch nr, ng;
  REQUIRE(std::regex_search(n.out, ng, std::regex(R"(\| W-only \| nvfp4 \| gptq \| fp32 \| ([0-9.]+) \|)")));
  REQUIRE(std::regex_search(n.out, nr, std::regex(R"(best W-only nvfp4: [^,]+, ppl [0-9.]+, best reference ([0-9.]+) \((rtn|gptq), this run\))")));
  if (nr[2].str() == "gptq") CHECK(std::abs(std::stod(nr[1].str()) - std::stod(ng[1].str())) < 6e-4);
  else CHECK(std::stod(nr[1].str()) < std::stod(ng[1].str()) + 6e-4);
  const auto q = run_cli("quantize-model " + model + " --format mxfp4 --method gptq --rotate hadamard:16 --qep --refine 4 " + calib +
                         " --calib-windows 2 " + test_tokens + " --windows 4 --out " + (scratch() / "best-q").string());
  INFO(q.err);
  REQUIRE(q.status == 0);
  std::smatch m;
  REQUIRE(std::regex_search(q.out, m, std::regex("ppl: ([0-9.]+)")));
  const double ppl = std::stod(m[1].str());
  CHECK(std::abs(std::stod(line[1].str()) / ppl - 1.0) < 2e-4);
  CHECK(std::abs(std::stod(row[1].str()) - ppl) < 6e-4);
  const auto base = run_cli("eval-ppl " + model + " " + test_tokens + " --windows 4");
  REQUIRE(base.status == 0);
  std::smatch bm;
  const std::string bl = last_line(base.out);
  REQUIRE(std::regex_match(bl, bm, std::regex("ppl: ([0-9.]+)")));
  CHECK(std::abs(std::stod(line[2].str()) - 100.0 * (10.0 - ppl) / (10.0 - std::stod(bm[1].str()))) < 0.06);
}

TEST_CASE("quantize-model --method mr-gptq is gptq with FP-Quant's rotation, order and MSE grid", "[cli][model][rotation]") {
  std::string ppl[2];
  const std::string methods[2] = {"--method mr-gptq",
                                  "--method gptq --rotate hadamard:32 --act-order --scale-rule mse --mse-grid 100 --mse-norm 2.4"};
  for (int i = 0; i < 2; ++i) {
    const fs::path out = scratch() / ("mr" + std::to_string(i));
    const auto q = run_cli("quantize-model " + model + " --format mxfp4 " + methods[i] + " " + calib + " --calib-windows 2 " +
                           test_tokens + " --windows 4 --out " + out.string());
    INFO(q.err);
    REQUIRE(q.status == 0);
    std::smatch m;
    REQUIRE(std::regex_search(q.out, m, std::regex("ppl: ([0-9.]+)")));
    ppl[i] = m[1].str();
    // The rotation is recorded: eval-ppl of the checkpoint gives the same number.
    const auto e = run_cli("eval-ppl --model " + out.string() + " " + test_tokens + " --windows 4");
    REQUIRE(e.status == 0);
    CHECK(last_line(e.out) == "ppl: " + ppl[i]);
  }
  CHECK(ppl[0] == ppl[1]);
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
      {"quantize-model " + model + " --format mxfp4 --method gptq+awq --out /tmp/x", "steps must appear once each, in the order"},
      {"quantize-model " + model + " --format mxfp4 --method awq+foo --out /tmp/x", "unknown step 'foo'"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --out /tmp/x", "needs calibration tokens: --calib"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --qep-alpha 0.3 --out /tmp/x", "need --qep"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --qep --qep-alpha 2 --out /tmp/x", "--qep-alpha must be in [0, 1]"},
      {"quantize-model " + model + " --format mxfp4 --method rtn --scale-rule 4over6 --out /tmp/x", "needs a format with UE4M3 block scales"},
      {"quantize-model " + model + " --format mxfp4 --method awq --refine 2 --out /tmp/x", "--refine refines GPTQ's codes"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --refine -1 --out /tmp/x", "--refine must be"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --mse-grid 100 " + calib + " --out /tmp/x", "--mse-grid is the candidates of --scale-rule mse"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --scale-rule mse --mse-norm 0 " + calib + " --out /tmp/x", "--mse-norm must be"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --mse-norm 3 " + calib + " --out /tmp/x", "needs --scale-rule mse or 4over6"},
      {"quantize-model " + model + " --format mxfp4 --method mr-gptq --rotate hadamard:48 " + calib + " --out /tmp/x", "hadamard:48"},
      {"quantize-layer --format mxfp4 --method mr-gptq --mse-grid -2 --weight a.npy --inputs b.npy --out q.npy", "--mse-grid must be"},
      {"quantize-layer --format mxfp4 --method gptq --refine 2 --rounding stochastic --weight a.npy --inputs b.npy --out q.npy", "deterministic rounding"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --calib /nonexistent.u16 --out /tmp/x", "/nonexistent.u16"},
      {"quantize-model " + model + " --format mxfp4 --method gptq --awq-gptq maybe " + calib + " --out /tmp/x", "maybe"},
      {"quantize-model " + model + " --format mxfp4 --out examples/models/code-llama/config.json", "--out exists and is not a directory"},
      {"quantize-model " + model + " --format mxfp4 --threads -1 --out /tmp/x", "--threads"},
      {"quantize-layer --format mxfp4 --method gptq --weight a.npy --inputs b.npy --out /nonexistent-dir/q.npy", "does not exist"},
      {"quantize-model " + model + " --format mxfp4 --act-format int9 --out /tmp/x " + calib, "unknown activation format"},
      {"quantize-model --model /nonexistent --format mxfp4 --out /tmp/x", "/nonexistent"},
      {"table " + model + " " + test_tokens, "--calib"},
  };
  mxq::test::expect_one_line_errors(run_cli, cases);
}

TEST_CASE("every command prints its usage for --help and exits 0", "[cli][model]") {
  for (const char* cmd : {"formats", "fake-quant", "quantize-layer", "quantize-model", "eval-ppl", "table"}) {
    INFO(cmd);
    const auto r = run_cli(std::string(cmd) + " --help");
    CHECK(r.status == 0);
    CHECK(r.out.rfind(std::string("usage: mxq ") + cmd, 0) == 0);
  }
}

TEST_CASE("quantize-model: RTN needs no calibration and bad requests fail before any work", "[cli][model]") {
  const fs::path out = scratch() / "rtn";
  const auto r = run_cli("quantize-model " + model + " --format mxint4 --method rtn --out " + out.string());
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(last_line(r.out) == "quantized: " + out.string());
  CHECK(fs::exists(out / "model.safetensors"));
  // A missing calibration file or an --out that is a file: named errors within a second (the
  // 6.9M-parameter model loads in well under that, so this times the checks, not the load).
  for (const std::string& args : {"--method gptq --calib /nonexistent.u16 --out " + (scratch() / "x").string(),
                                 "--method gptq " + calib + " --out examples/models/code-llama/config.json",
                                 std::string("--method rtn --out examples/models/code-llama/.")}) {
    INFO(args);
    const auto t0 = std::chrono::steady_clock::now();
    const auto e = run_cli("quantize-model " + model + " --format mxint4 " + args);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(e.status != 0);
    CHECK(s < 1.0);
  }
}

TEST_CASE("quantize-model --max-shard-size: Hugging Face shards that eval-ppl reads like one file", "[cli][model]") {
  const fs::path one = scratch() / "one", many = scratch() / "many";
  for (const auto& [dir, flag] : {std::pair{one, std::string()}, std::pair{many, std::string(" --max-shard-size 1.5MB")}}) {
    const auto r = run_cli("quantize-model " + model + " --format mxfp4 --method rtn --out " + dir.string() + flag);
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(last_line(r.out) == "quantized: " + dir.string());
  }
  CHECK(fs::exists(one / "model.safetensors"));
  CHECK(!fs::exists(many / "model.safetensors"));
  CHECK(fs::exists(many / "model.safetensors.index.json"));
  std::size_t shards = 0;
  for (const auto& e : fs::directory_iterator(many)) shards += e.path().filename().string().rfind("model-0000", 0) == 0;
  CHECK(shards >= 3);  // the 2 MB embedding and lm_head alone, the layers split
  const auto a = run_cli("eval-ppl --model " + one.string() + " " + test_tokens + " --windows 4");
  const auto b = run_cli("eval-ppl --model " + many.string() + " " + test_tokens + " --windows 4");
  REQUIRE(a.status == 0);
  REQUIRE(b.status == 0);
  CHECK(last_line(a.out) == last_line(b.out));
  for (const char* bad : {"0", "5XB", "-1GB", "GB"}) {
    const auto e = run_cli("quantize-model " + model + " --format mxfp4 --method rtn --out " + (scratch() / "bad").string() +
                           " --max-shard-size " + std::string(bad));
    CHECK(e.status != 0);
    CHECK_THAT(e.err, Catch::Contains("--max-shard-size"));
    CHECK(!fs::exists(scratch() / "bad"));
  }
}

TEST_CASE("quantize-model writes the same checkpoint for --threads 1, 2 and 3", "[cli][model][determinism]") {
  const std::pair<const char*, const char*> recipes[] = {
      {"gptq", ""}, {"gptq", " --refine 2"}, {"awq+gptq", ""}, {"sq+gptq", ""}, {"sq+awq+gptq", " --act-format mxint8"}};
  for (const auto& [method, act] : recipes) {
    std::string first;
    for (int threads : {1, 2, 3}) {
      INFO(method << act << " --threads " << threads);
      const fs::path out = scratch() / ("t" + std::string(method) + std::to_string(threads) + (*act ? "x" : ""));
      const auto r = run_cli("quantize-model " + model + " --format mxint4 --method " + method + act + " " + calib +
                             " --calib-windows 4 --awq-windows 2 --threads " + std::to_string(threads) + " --out " +
                             out.string());
      INFO(r.err);
      REQUIRE(r.status == 0);
      const std::string bytes = slurp(out / "model.safetensors");
      REQUIRE(!bytes.empty());
      if (first.empty()) first = bytes;
      else CHECK(bytes == first);
      fs::remove_all(out);
    }
  }
}

TEST_CASE("quantize-model --refine changes GPTQ's codes, not the checkpoint's layout", "[cli][model][refine]") {
  std::string ckpt[2];
  for (int k = 0; k < 2; ++k) {
    const fs::path out = scratch() / (k ? "refine2" : "refine0");
    const auto r = run_cli("quantize-model " + model + " --format mxfp4 --method gptq " + calib + " --calib-windows 8" +
                           (k ? " --refine 2" : "") + " --out " + out.string());
    INFO(r.err);
    REQUIRE(r.status == 0);
    ckpt[k] = slurp(out / "model.safetensors");
    fs::remove_all(out);
  }
  CHECK(ckpt[0] != ckpt[1]);
  CHECK(ckpt[0].size() == ckpt[1].size());
}

TEST_CASE("quantize-model: a killed run started again finishes the same checkpoint, byte for byte", "[cli][model][resume]") {
  struct kase {
    std::string args, kill;  // the recipe, and where the test hook SIGKILLs the first attempt
    std::size_t resumes_after;
  };
  const std::string cal = " " + calib + " --calib-windows 4 --awq-windows 2";
  const kase cases[] = {
      {"--format mxint4 --method sq+awq+gptq --act-format mxint8" + cal, "MXQ_TEST_KILL_AFTER_LAYERS=2", 2},
      {"--format mxfp4 --method gptq" + cal, "MXQ_TEST_KILL_IN_LAYER=4", 4},  // mid-layer: layer 4 is redone
      {"--format nvfp4 --method rtn --max-shard-size 1MB", "MXQ_TEST_KILL_IN_LAYER=1", 1},
      {"--format mxfp4 --method rtn", "MXQ_TEST_KILL_AFTER_LAYERS=5", 5},
  };
  for (const auto& c : cases) {
    INFO(c.args << " / " << c.kill);
    const fs::path full = scratch() / "resume-full", part = scratch() / "resume-part";
    fs::remove_all(full), fs::remove_all(part);
    const auto a = run_cli("quantize-model " + model + " " + c.args + " --out " + full.string());
    INFO(a.err);
    REQUIRE(a.status == 0);
    const auto k = mxq::test::run_program("env " + c.kill + " " + MXQ_CLI_PATH,
                                          "quantize-model " + model + " " + c.args + " --out " + part.string(), MXQ_REPO_DIR);
    CHECK(k.status != 0);
    CHECK(!fs::exists(part / "model.safetensors"));  // nothing that looks complete
    CHECK(!fs::exists(part / "model.safetensors.index.json"));
    CHECK(fs::exists(part / "mxq-run.json") == (c.resumes_after > 0));
    const auto b = run_cli("quantize-model " + model + " " + c.args + " --threads 1 --out " + part.string());
    INFO(b.err);
    REQUIRE(b.status == 0);
    CHECK(b.err.find("resuming after layer " + std::to_string(c.resumes_after) + " of 6") != std::string::npos);
    CHECK(a.out.substr(0, a.out.find("seconds:")) == b.out.substr(0, b.out.find("seconds:")));  // linears, packed_bytes
    std::size_t files = 0;
    for (const auto& e : fs::directory_iterator(full)) {
      const std::string f = e.path().filename().string();
      ++files;
      CHECK(slurp(part / f) == slurp(e.path()));
    }
    std::size_t left = 0;
    for (const auto& e : fs::directory_iterator(part)) left += e.is_regular_file();
    CHECK(left == files);  // no journal, activations, lock or partial file left
  }
}

// Every regular file of `dir` with its bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) m[e.path().filename().string()] = slurp(e.path());
  return m;
}

TEST_CASE("a failed run loses nothing: a full disk, a bad tensor found mid-run, SIGINT leave the previous output intact", "[cli][model][failure]") {
  const fs::path out = scratch() / "keep", gguf = scratch() / "keep.gguf";
  fs::remove_all(out);
  fs::remove(gguf);
  const auto first = run_cli("quantize-model " + model + " --format mxfp4 --method rtn --out " + out.string());
  INFO(first.err);
  REQUIRE(first.status == 0);
  const auto before = snapshot(out);
  REQUIRE(before.count("model.safetensors"));
  auto unchanged = [&] {
    std::size_t same = 0;
    for (const auto& [f, bytes] : before) same += fs::exists(out / f) && slurp(out / f) == bytes;
    CHECK(same == before.size());  // every earlier file still there, byte for byte
  };
  SECTION("disk full (a 1 MiB file-size limit): a named error, the earlier checkpoint kept") {
    const auto r = mxq::test::run_program("ulimit -f 1024; " + std::string(MXQ_CLI_PATH),
                                          "quantize-model " + model + " --format nvfp4 --method rtn --out " + out.string(), MXQ_REPO_DIR);
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(r.err.find("disk full?") != std::string::npos);
    unchanged();
    // The same for an export: its earlier file stays whole.
    REQUIRE(run_cli("export --model " + out.string() + " --to gguf --out " + gguf.string()).status == 0);
    const std::string g = slurp(gguf);
    const auto e = mxq::test::run_program("ulimit -f 1024; " + std::string(MXQ_CLI_PATH),
                                          "export --model " + out.string() + " --to gguf --out " + gguf.string(), MXQ_REPO_DIR);
    INFO(e.err);
    CHECK(e.status == 1);
    CHECK(e.err.find("disk full?") != std::string::npos);
    CHECK(slurp(gguf) == g);
    // And for a token file: the earlier one stays, no partial file under its name.
    const fs::path ids = scratch() / "keep.u32";
    REQUIRE(run_cli("tokenize " + model + " --text README.md --out " + ids.string()).status == 0);
    const std::string before_ids = slurp(ids);
    REQUIRE(before_ids.size() > 16 * 1024);
    const auto t = mxq::test::run_program("ulimit -f 16; " + std::string(MXQ_CLI_PATH),
                                          "tokenize " + model + " --text tests/fuzz/run.sh --out " + ids.string(), MXQ_REPO_DIR);
    CHECK(t.status == 0);  // a small output fits under the limit: replaced whole
    CHECK(slurp(ids) != before_ids);
    REQUIRE(run_cli("tokenize " + model + " --text README.md --out " + ids.string()).status == 0);
    const auto big = mxq::test::run_program("ulimit -f 16; " + std::string(MXQ_CLI_PATH),
                                            "tokenize " + model + " --text README.md --out " + ids.string(), MXQ_REPO_DIR);
    INFO(big.err);
    CHECK(big.status == 1);
    CHECK(big.err.find("disk full?") != std::string::npos);
    CHECK(slurp(ids) == before_ids);
    fs::remove(ids);
  }
  SECTION("a non-finite weight in layer 3, found after layers 0-2 are written") {
    const fs::path bad = scratch() / "nan-model", src = fs::path(MXQ_REPO_DIR) / "examples/models/code-llama";
    fs::remove_all(bad);
    fs::create_directories(bad);
    for (const char* f : {"config.json", "tokenizer.json", "model.safetensors"}) fs::copy_file(src / f, bad / f);
    std::string st = slurp(bad / "model.safetensors");
    std::uint64_t n = 0;
    std::memcpy(&n, st.data(), 8);
    const auto h = nlohmann::json::parse(st.substr(8, n));
    const auto& t = h.at("model.layers.3.mlp.down_proj.weight");
    const std::size_t at = 8 + n + t.at("data_offsets")[0].get<std::size_t>() + 40;
    const std::string dtype = t.at("dtype").get<std::string>();
    REQUIRE((dtype == "F32" || dtype == "BF16"));
    if (dtype == "F32") st.replace(at, 4, std::string("\x00\x00\xc0\x7f", 4));
    else st.replace(at, 2, std::string("\xc0\x7f", 2));
    std::ofstream(bad / "model.safetensors", std::ios::binary) << st;
    const auto r = run_cli("quantize-model --model " + bad.string() + " --format nvfp4 --method rtn --out " + out.string());
    INFO(r.err);
    CHECK(r.status == 1);
    CHECK(r.err.find("model.layers.3.mlp.down_proj.weight") != std::string::npos);
    CHECK(r.err.find("non-finite") != std::string::npos);
    unchanged();
    fs::remove_all(bad);
  }
  SECTION("SIGINT in the middle of a calibrating run") {
    // timeout(1) sends SIGINT to the run 1.5 s in (~5 s of work), as Ctrl-C would.
    const auto r = mxq::test::run_program("timeout -s INT 1.5 " + std::string(MXQ_CLI_PATH),
                                          "quantize-model " + model + " --format mxfp4 --method gptq " + calib +
                                              " --calib-windows 128 --out " + out.string(),
                                          MXQ_REPO_DIR);
    CHECK(r.status == 124);  // interrupted, not finished
    unchanged();  // its progress is kept beside it (journal, *.partial) for a resume, never over it
  }
  fs::remove_all(out);
  fs::remove(gguf);
}

TEST_CASE("quantize-model prints its memory estimate and --max-memory refuses before any work", "[cli][model]") {
  const fs::path out = scratch() / "maxmem";
  fs::remove_all(out);
  const std::string job = "quantize-model " + model + " --format mxfp4 --method gptq " + calib + " --calib-windows 16 --out " + out.string();
  const auto r = run_cli(job + " --max-memory 10MB");
  INFO(r.err);
  CHECK(r.status != 0);
  std::smatch m;
  REQUIRE(std::regex_search(r.err, m, std::regex("memory estimate ([0-9.]+) GiB \\(weights")));
  const double est = std::stod(m[1]);
  CHECK(r.err.find("over --max-memory") != std::string::npos);
  CHECK(!fs::exists(out));  // refused before the output directory was made
  // The estimate grows with the calibration set (activations) and is close to the measured peak
  // (benchmarks/RESULTS.md); a limit above it runs.
  const auto big = run_cli("quantize-model " + model + " --format mxfp4 --method gptq " + calib +
                           " --calib-windows 64 --max-memory 1KB --out " + out.string());
  REQUIRE(std::regex_search(big.err, m, std::regex("memory estimate ([0-9.]+) GiB")));
  CHECK(std::stod(m[1]) > est);
  const auto ok = run_cli(job + " --max-memory 4GiB");
  INFO(ok.err);
  CHECK(ok.status == 0);
  mxq::test::expect_one_line_errors(run_cli, std::vector<std::pair<std::string, std::string>>{
                                                 {job + " --max-memory lots", "--max-memory expects a positive size"}});
  fs::remove_all(out);
}

TEST_CASE("quantize-model: another recipe's partial run, or a run in progress, is refused", "[cli][model][resume]") {
  const fs::path part = scratch() / "resume-other";
  fs::remove_all(part);
  const std::string gptq = "quantize-model " + model + " --format mxint4 --method gptq " + calib +
                           " --calib-windows 4 --out " + part.string();
  const auto k = mxq::test::run_program("env MXQ_TEST_KILL_AFTER_LAYERS=1 " + std::string(MXQ_CLI_PATH), gptq, MXQ_REPO_DIR);
  REQUIRE(k.status != 0);
  for (const std::string& other : {"--format mxint4 --method awq " + calib + " --calib-windows 4",
                                  "--format mxint4 --method gptq " + calib + " --calib-windows 3",
                                  "--format mxfp4 --method gptq " + calib + " --calib-windows 4"}) {
    const auto r = run_cli("quantize-model " + model + " " + other + " --out " + part.string());
    INFO(other << " -> " << r.err);
    CHECK(r.status != 0);
    CHECK(r.err.find("partial run of another recipe") != std::string::npos);
    CHECK(r.err.find(part.string()) != std::string::npos);
  }
  {
    const mxq::llm::run_journal busy(part, "someone else");  // holds the directory's lock
    const auto r = run_cli(gptq);
    CHECK(r.status != 0);
    CHECK(r.err.find("another mxq run is writing this directory") != std::string::npos);
  }
  const auto r = run_cli(gptq);  // the original command still resumes
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.err.find("resuming after layer 1 of 6") != std::string::npos);
  fs::remove_all(part);
}

TEST_CASE("quantize-layer and quantize-model give the same linear for the same recipe", "[cli][model]") {
  // Layer 0's q_proj: its input is RMSNorm(embeddings), the same in both, so GPTQ (with the same
  // act-order, damping and activation format) must give bit-identical weights.
  const fs::path dir = scratch() / "same";
  fs::create_directories(dir);
  const fs::path repo(MXQ_REPO_DIR);
  const auto w = mxq::llm::load_model(repo / "examples/models/code-llama");
  auto tokens = mxq::llm::read_tokens_u16(repo / "examples/data/code/code-calib-128x256.u16", w.config.vocab_size);
  tokens.resize(4 * 256);
  mxq::llm::RowMajorMatrixXf h = mxq::llm::embed(w, tokens);
  mxq::llm::layer_walker lw(w, 0, h, 256);
  const mxq::llm::RowMajorMatrixXf x = lw.input(mxq::llm::linear_group::qkv);
  const auto& q = w.layers[0].q_proj.weight;
  mxq::npy_save(dir / "x.npy", {static_cast<std::size_t>(x.rows()), static_cast<std::size_t>(x.cols())}, x.data());
  mxq::npy_save(dir / "w.npy", {static_cast<std::size_t>(q.rows()), static_cast<std::size_t>(q.cols())}, q.data());
  // mr-gptq: the model keeps Q_rot (its inputs rotated online), the layer writes Q_rot R.
  for (const std::string& flags : {std::string("--method gptq"), std::string("--method gptq --act-order"), std::string("--method gptq --act-format mxint8"),
                                   std::string("--method mr-gptq")}) {
    INFO(flags);
    const auto m = run_cli("quantize-model " + model + " --format mxfp4 " + flags + " " + calib +
                           " --calib-windows 4 --out " + (dir / "model").string());
    INFO(m.err);
    REQUIRE(m.status == 0);
    const auto l = run_cli("quantize-layer --format mxfp4 " + flags + " --weight " + (dir / "w.npy").string() +
                           " --inputs " + (dir / "x.npy").string() + " --out " + (dir / "q.npy").string());
    INFO(l.err);
    REQUIRE(l.status == 0);
    const auto back = mxq::llm::load_model(dir / "model");
    const mxq::tensor_f32 ql = mxq::npy_load_f32(dir / "q.npy");
    auto qm = back.layers[0].q_proj.weight;
    if (flags.find("mr-gptq") != std::string::npos)
      mxq::rotate_rows(mxq::matrix_view<float>(qm.data(), static_cast<std::size_t>(qm.rows()), static_cast<std::size_t>(qm.cols())),
                       mxq::hadamard_rotation{32, 1});
    REQUIRE(ql.data.size() == static_cast<std::size_t>(qm.size()));
    CHECK(std::equal(ql.data.begin(), ql.data.end(), qm.data()));
  }
}
#else
TEST_CASE("model CLI tests need the tool (MXQ_BUILD_TOOLS)", "[cli]") { mxq::test::skip_test("the mxq tool is not built"); }
#endif

}  // namespace test_cli_model
