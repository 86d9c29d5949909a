// The mxq program as scripts use it: formats, fake-quant on every conformance vector, and
// one-line errors with a non-zero exit on bad input.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "mxq/io/npy.hpp"
#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_cli_fake_quant {

#ifdef MXQ_CLI_PATH
namespace fs = std::filesystem;

namespace {

using mxq::test::run_result;
using mxq::test::slurp;

run_result run_cli(const std::string& args) { return mxq::test::run_program(MXQ_CLI_PATH, args); }

fs::path tmp(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mxq-cli-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir / name;
}

}  // namespace

TEST_CASE("mxq formats lists every predefined format", "[cli]") {
  const auto r = run_cli("formats");
  REQUIRE(r.status == 0);
  for (const char* f : {"mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8", "mxint6", "mxint4",
                        "mxint3", "nvfp4", "int8_pc", "int4_pc", "int3_pc", "int4_g128", "int3_g128", "int4_pc_sym"})
    CHECK(r.out.find(std::string("| ") + f + " ") != std::string::npos);
  CHECK(r.out.find("4.250") != std::string::npos);
}

TEST_CASE("mxq fake-quant reproduces every conformance vector", "[cli][conformance]") {
  const fs::path dir = fs::path(MXQ_TEST_DATA_DIR) / "conformance" / "mx";
  const std::pair<const char*, const char*> formats[] = {{"int8", "mxint8"},         {"int4", "mxint4"},
                                                         {"fp8_e4m3", "mxfp8_e4m3"}, {"fp8_e5m2", "mxfp8_e5m2"},
                                                         {"fp6_e3m2", "mxfp6_e3m2"}, {"fp6_e2m3", "mxfp6_e2m3"},
                                                         {"fp4_e2m1", "mxfp4"}};
  int files = 0;
  for (const auto& [key, name] : formats)
    for (const char* round : {"even", "nearest"})
      for (const char* c : {"random", "heavy_tail", "ties", "special", "ragged"}) {
        const fs::path out = tmp("fq.npy");
        const auto r = run_cli(std::string("fake-quant --format ") + name + " --rounding " +
                               (std::string(round) == "even" ? "even" : "away") + " " + (dir / "inputs" / (std::string(c) + ".npy")).string() +
                               " " + out.string());
        INFO(name << " " << round << " " << c << ": " << r.err);
        REQUIRE(r.status == 0);
        const auto got = mxq::npy_load_f32(out);
        const auto want = mxq::npy_load_f32(dir / "outputs" / (std::string(c) + "__" + key + "__" + round + ".npy"));
        REQUIRE(got.shape == want.shape);
        const bool twos = std::string(name).rfind("mxint", 0) == 0;  // no -0 code in two's complement
        std::size_t bad = 0;
        for (std::size_t i = 0; i < got.data.size(); ++i) {
          const float g = got.data[i], w = want.data[i];
          const bool same = std::isnan(w) ? std::isnan(g)
                                          : std::bit_cast<std::uint32_t>(g) == std::bit_cast<std::uint32_t>(w) ||
                                                (twos && g == 0.0f && w == 0.0f);
          bad += !same;
        }
        CHECK(bad == 0);
        ++files;
      }
  CHECK(files == 70);
}

TEST_CASE("mxq fake-quant: any rank, blocks along the last axis", "[cli]") {
  std::vector<float> x(2 * 3 * 40);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i));
  const fs::path in = tmp("rank3.npy"), out = tmp("rank3_out.npy");
  mxq::npy_save(in, {2, 3, 40}, x.data());
  const auto r = run_cli("fake-quant --format nvfp4 --scale-rule mse " + in.string() + " " + out.string());
  REQUIRE(r.status == 0);
  const auto y = mxq::npy_load_f32(out);
  CHECK(y.shape == std::vector<std::size_t>{2, 3, 40});
  CHECK(r.out.find("relative_error") != std::string::npos);
}

TEST_CASE("mxq fake-quant: bad input gives one line and a non-zero exit", "[cli]") {
  std::vector<float> x(64, 1.0f);
  const fs::path in = tmp("ok.npy"), out = tmp("o.npy");
  mxq::npy_save(in, {64}, x.data());
  std::vector<std::int32_t> ints(8, 1);
  const fs::path int_file = tmp("ints.npy");
  mxq::npy_save(int_file, {8}, ints.data());
  { std::ofstream(tmp("garbage.npy")) << "this is not an npy file"; }
  const std::pair<std::string, std::string> cases[] = {
      {"fake-quant --format mxfp5 " + in.string() + " " + out.string(), "unknown format"},
      {"fake-quant " + in.string() + " " + out.string(), "--format"},
      {"fake-quant --format mxfp4 " + tmp("missing.npy").string() + " " + out.string(), "missing.npy"},
      {"fake-quant --format mxfp4 " + tmp("garbage.npy").string() + " " + out.string(), "magic"},
      {"fake-quant --format mxfp4 " + int_file.string() + " " + out.string(), "float32"},
      {"fake-quant --format mxfp4 --rounding up " + in.string() + " " + out.string(), "rounding"},
      {"fake-quant --format mxfp4 --scale-rule best " + in.string() + " " + out.string(), "scale rule"},
      {"fake-quant --format mxfp4 --scale-rule 4over6 " + in.string() + " " + out.string(), "needs a UE4M3 block scale"},
      {"fake-quant --format mxfp4 --bogus 1 " + in.string() + " " + out.string(), "unknown option"},
      {"fake-quant --format mxfp4 " + in.string(), "usage"},
      {"no-such-command", "unknown command"},
  };
  mxq::test::expect_one_line_errors(run_cli, cases);
}
#else
TEST_CASE("mxq CLI tests need the tool (MXQ_BUILD_TOOLS)", "[cli]") { mxq::test::skip_test("the mxq tool is not built"); }
#endif

}  // namespace test_cli_fake_quant
