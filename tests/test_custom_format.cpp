// The shipped example formats work through the same API as the predefined ones.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "../examples/custom_format.hpp"
#include "mxq/quantize.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_custom_format {

TEST_CASE("custom E1M2 element via element_traits specialization", "[format][custom]") {
  using C = mxq::element_codec<user::e1m2_tag>;
  CHECK(C::max_value == 1.75f);
  CHECK(C::values[0xF] == -1.75f);
  // Block amax 3.5: floor(log2 3.5) - emax 0 = 1 -> scale 2; 3.5 / 2 = 1.75 exactly.
  std::vector<float> x(32, 0.0f);
  x[0] = 3.5f;
  x[1] = 0.75f;   // 0.375 -> tie between 0.25 and 0.5 -> even code (0.5) -> 1.0
  x[2] = -0.25f;  // 0.125 -> tie between 0 and 0.25 -> 0 (even), sign kept
  auto q = mxq::quantize<user::mx_e1m2>(mxq::matrix_view<const float>(x.data(), 1, 32));
  CHECK(q.scale(0, 0) == 128);
  const auto d = mxq::dequantize(q);
  CHECK(d[0] == 3.5f);
  CHECK(d[1] == 1.0f);
  CHECK(d[2] == 0.0f);
  CHECK(std::signbit(d[2]));
  CHECK(mxq::format_traits<user::mx_e1m2>::name == "mx_e1m2");
  CHECK(mxq::effective_bits<user::mx_e1m2>() == 4.25);
}

TEST_CASE("custom MXINT4 with blocks of 64 matches MXINT4 on each 64-block", "[format][custom]") {
  std::mt19937 gen(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(3 * 200);
  for (auto& v : x) v = nd(gen);
  auto q = mxq::quantize<user::mxint4_b64>(mxq::matrix_view<const float>(x.data(), 3, 200));
  CHECK(q.blocks_per_row() == 4);
  const auto d = mxq::dequantize(q);
  for (std::size_t r = 0; r < 3; ++r)
    for (std::size_t b = 0; b < 4; ++b) {
      float amax = 0;
      for (std::size_t c = b * 64; c < std::min<std::size_t>(200, b * 64 + 64); ++c) amax = std::max(amax, std::fabs(x[r * 200 + c]));
      const double s = std::ldexp(1.0, mxq::detail::floor_log2(amax));  // emax 0
      for (std::size_t c = b * 64; c < std::min<std::size_t>(200, b * 64 + 64); ++c) {
        const double k = std::clamp(std::nearbyint(x[r * 200 + c] / s * 4), -7.0, 7.0);
        CHECK(d[r * 200 + c] == static_cast<float>(k / 4 * s));
      }
    }
}

}  // namespace test_custom_format
