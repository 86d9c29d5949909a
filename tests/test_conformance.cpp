// Bit-exact agreement with the MX conformance vectors (microxcaling reference, OCP floor rule).
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <filesystem>
#include <string>

#include "mxq/io/npy.hpp"
#include "mxq/quantize.hpp"
#include "mxq/format.hpp"
#include "support.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_conformance {

namespace fs = std::filesystem;

namespace {

fs::path conformance_dir() { return fs::path(MXQ_TEST_DATA_DIR) / "conformance" / "mx"; }

template <class F>
void check_file(const std::string& format_key, const std::string& round_key, const std::string& case_name) {
  const auto in = mxq::npy_load_f32(conformance_dir() / "inputs" / (case_name + ".npy"));
  const auto expected =
      mxq::npy_load_f32(conformance_dir() / "outputs" / (case_name + "__" + format_key + "__" + round_key + ".npy"));
  REQUIRE(in.shape == expected.shape);
  REQUIRE(in.shape.size() == 2);
  const std::size_t rows = in.shape[0], cols = in.shape[1];
  mxq::quant_options opt;
  opt.rounding = round_key == "even" ? mxq::rounding::nearest_even : mxq::rounding::nearest_away;
  std::vector<float> out(rows * cols);
  mxq::fake_quant<F>(mxq::matrix_view<const float>(in.data.data(), rows, cols),
                     mxq::matrix_view<float>(out.data(), rows, cols), opt);
  // Also through the packed path: quantize -> dequantize must give the same bits.
  const auto packed = mxq::quantize<F>(mxq::matrix_view<const float>(in.data.data(), rows, cols), opt);
  const std::vector<float> via_packed = mxq::dequantize(packed);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const float e = expected.data[i];
    // Two's-complement MXINT codes have no -0: where the reference rounds a negative value to
    // -0.0 mxq gives +0.0 (equal values); every other bit must match.
    constexpr bool signed_zero = mxq::element_codec<typename F::element>::encoding != mxq::element_encoding::twos_complement;
    auto bits_equal = [&](float a) {
      return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(e) || (!signed_zero && a == 0.0f && e == 0.0f);
    };
    const bool same = std::isnan(e) ? std::isnan(out[i]) && std::isnan(via_packed[i]) : bits_equal(out[i]) && bits_equal(via_packed[i]);
    if (!same && ++mismatches <= 5)
      UNSCOPED_INFO("index " << i << " (row " << i / cols << ", col " << i % cols << "): input " << in.data[i]
                             << " expected " << e << " got " << out[i] << " packed " << via_packed[i]);
  }
  INFO(case_name << " " << format_key << " " << round_key);
  CHECK(mismatches == 0);
}

template <class F>
void check_format(const std::string& key) {
  for (const char* round_key : {"even", "nearest"})
    for (const char* c : {"random", "heavy_tail", "ties", "special", "ragged"}) check_file<F>(key, round_key, c);
}

}  // namespace

TEST_CASE("conformance: every MX vector matches bit for bit", "[conformance]") {
  REQUIRE(fs::exists(conformance_dir() / "manifest.json"));
  check_format<mxq::mxint8>("int8");
  check_format<mxq::mxint4>("int4");
  check_format<mxq::mxfp8_e4m3>("fp8_e4m3");
  check_format<mxq::mxfp8_e5m2>("fp8_e5m2");
  check_format<mxq::mxfp6_e3m2>("fp6_e3m2");
  check_format<mxq::mxfp6_e2m3>("fp6_e2m3");
  check_format<mxq::mxfp4>("fp4_e2m1");
}

TEST_CASE("conformance: the shared copy and the repo copy are the same vectors", "[conformance]") {
  const fs::path shared = fs::path(MXQ_SHARED_DIR) / "conformance" / "mx";
  if (!fs::exists(shared)) mxq::test::skip_test("no " + shared.string() + " (fresh clone): the repo copy is the reference");
  for (const auto& entry : fs::recursive_directory_iterator(shared)) {
    if (!entry.is_regular_file()) continue;
    const fs::path rel = fs::relative(entry.path(), shared);
    INFO(rel.string());
    REQUIRE(fs::exists(conformance_dir() / rel));
    CHECK(fs::file_size(conformance_dir() / rel) == entry.file_size());
  }
}

}  // namespace test_conformance
