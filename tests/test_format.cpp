// Element, scale and block-format behaviour against independent references: the OCP/CUDA value
// tables written out by hand, brute-force nearest search, and hand-computed NVFP4 cases.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "mxq/format.hpp"
#include "mxq/quantize.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_format {

using namespace mxq;

namespace {

const float inf = std::numeric_limits<float>::infinity();
const float qnan = std::numeric_limits<float>::quiet_NaN();

// Independent decoder: IEEE-style bit arithmetic, no tables.
float decode_fp_bits(unsigned code, int e, int m, fp_specials sp) {
  const bool neg = (code >> (e + m)) & 1u;
  const unsigned ef = (code >> m) & ((1u << e) - 1u), mf = code & ((1u << m) - 1u);
  const int bias = (1 << (e - 1)) - 1;
  float v;
  if (sp == fp_specials::ieee && ef == (1u << e) - 1u) v = mf == 0 ? inf : qnan;
  else if (sp == fp_specials::fn && ef == (1u << e) - 1u && mf == (1u << m) - 1u) v = qnan;
  else if (ef == 0) v = std::ldexp(static_cast<float>(mf), 1 - bias - m);
  else v = std::ldexp(1.0f + std::ldexp(static_cast<float>(mf), -m), static_cast<int>(ef) - bias);
  return neg ? -v : v;
}

template <class E>
void check_fp_table(int e, int m, fp_specials sp, float max_normal, int emax) {
  using C = element_codec<E>;
  for (unsigned c = 0; c < C::code_count; ++c) {
    const float want = decode_fp_bits(c, e, m, sp), got = C::values[c];
    INFO("code " << c);
    if (std::isnan(want)) CHECK(std::isnan(got));
    else CHECK(std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(want));
  }
  CHECK(C::max_value == max_normal);
  CHECK(C::emax == emax);
}

// Brute force: nearest grid value to |x|/s, ties to even code.
template <class E>
int brute_nearest_even(double a) {
  using C = element_codec<E>;
  int best = 0;
  for (int i = 1; i < C::magnitude_count; ++i) {
    const double d = std::fabs(a - C::magnitudes[i]), db = std::fabs(a - C::magnitudes[best]);
    if (d < db || (d == db && i % 2 == 0)) best = i;
  }
  return best;
}

template <class F>
std::vector<float> fq(std::vector<float> x, std::size_t cols, quant_options o = {}) {
  fake_quant<F>(std::span<float>(x), cols, o);
  return x;
}

}  // namespace

TEST_CASE("element tables: every code of every FP element decodes as IEEE-style bits say", "[format]") {
  check_fp_table<e4m3>(4, 3, fp_specials::fn, 448.0f, 8);
  check_fp_table<e5m2>(5, 2, fp_specials::ieee, 57344.0f, 15);
  check_fp_table<e3m2>(3, 2, fp_specials::none, 28.0f, 4);
  check_fp_table<e2m3>(2, 3, fp_specials::none, 7.5f, 2);
  check_fp_table<e2m1>(2, 1, fp_specials::none, 6.0f, 2);
  // E2M1's 16 codes as gpt-oss's FP4_VALUES lists them.
  const float fp4[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) CHECK(element_codec<e2m1>::values[c] == fp4[c]);
  CHECK(element_codec<e4m3>::values[0x7E] == 448.0f);
  CHECK(element_codec<e5m2>::values[0x7B] == 57344.0f);
  CHECK(element_codec<e5m2>::values[0x7C] == inf);
  CHECK(element_codec<e5m2>::values[0xFC] == -inf);
  CHECK(std::isnan(element_codec<e4m3>::values[0xFF]));
}

TEST_CASE("element tables: MXINT-k is two's-complement Q1.(k-2)", "[format]") {
  using C8 = element_codec<int_element<8>>;
  for (int c = 0; c < 256; ++c) {
    const int k = c < 128 ? c : c - 256;
    CHECK(C8::values[static_cast<std::size_t>(c)] == static_cast<float>(k) / 64.0f);
  }
  CHECK(C8::max_value == 127.0f / 64.0f);
  using C4 = element_codec<int_element<4>>;
  CHECK(C4::max_value == 1.75f);
  CHECK(C4::encode_code(true, 7) == 0x9);   // -7/4
  CHECK(C4::encode_code(true, 0) == 0x0);   // no -0 in two's complement
  using C2 = element_codec<int_element<2>>;
  CHECK(C2::magnitude_count == 2);          // {-1, 0, 1}
}

TEST_CASE("encode/decode: every finite code round-trips through the quantizer", "[format]") {
  auto roundtrip = [](auto tag) {
    using E = typename decltype(tag)::type;
    using C = element_codec<E>;
    const block_params unit{1.0, 127, 0, false};
    for (unsigned c = 0; c < C::code_count; ++c) {
      const float v = C::values[c];
      if (!std::isfinite(v)) continue;
      if (C::encoding == element_encoding::twos_complement && c == C::sign_bit) {
        // The most negative MXINT code is unused (symmetric range): -2^(k-1) saturates to -max.
        CHECK(decode_element<E>(encode_element<E>(v, unit, {}), unit) == -C::max_value);
        continue;
      }
      const std::uint8_t back = encode_element<E>(v, unit, {});
      INFO("code " << c << " value " << v);
      CHECK(decode_element<E>(back, unit) == v);
      if (v != 0.0f) CHECK(back == c);
    }
  };
  roundtrip(format_tag<e4m3>{});
  roundtrip(format_tag<e5m2>{});
  roundtrip(format_tag<e3m2>{});
  roundtrip(format_tag<e2m3>{});
  roundtrip(format_tag<e2m1>{});
  roundtrip(format_tag<int_element<8>>{});
  roundtrip(format_tag<int_element<4>>{});
  roundtrip(format_tag<int_element<3>>{});
}

TEST_CASE("rounding: nearest-even agrees with brute force on a dense sweep", "[format]") {
  auto sweep = [](auto tag) {
    using E = typename decltype(tag)::type;
    using C = element_codec<E>;
    const double top = C::max_value * 1.25;
    for (int i = 0; i <= 20000; ++i) {
      const double a = top * i / 20000.0;
      CHECK(detail::round_magnitude<E>(a, 1.0, rounding::nearest_even, {}) == brute_nearest_even<E>(a));
    }
    // Exact midpoints are ties.
    for (int i = 0; i + 1 < C::magnitude_count; ++i) {
      const double mid = (static_cast<double>(C::magnitudes[i]) + C::magnitudes[i + 1]) / 2;
      CHECK(detail::round_magnitude<E>(mid, 1.0, rounding::nearest_even, {}) == (i % 2 == 0 ? i : i + 1));
      CHECK(detail::round_magnitude<E>(mid, 1.0, rounding::nearest_away, {}) == i + 1);
      CHECK(detail::round_magnitude<E>(mid, 1.0, rounding::toward_zero, {}) == i);
    }
  };
  sweep(format_tag<e4m3>{});
  sweep(format_tag<e5m2>{});
  sweep(format_tag<e3m2>{});
  sweep(format_tag<e2m3>{});
  sweep(format_tag<e2m1>{});
  sweep(format_tag<int_element<8>>{});
  sweep(format_tag<int_element<4>>{});
}

TEST_CASE("rounding: worked E2M1 ties and E4M3 vectors from the references", "[format]") {
  const block_params unit{1.0, 127, 0, false};
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  const float rne[] = {0, 1, 1, 2, 2, 4, 4}, away[] = {0.5f, 1, 1.5f, 2, 3, 4, 6};
  quant_options a;
  a.rounding = rounding::nearest_away;
  for (int i = 0; i < 7; ++i) {
    CHECK(decode_element<e2m1>(encode_element<e2m1>(ties[i], unit, {}), unit) == rne[i]);
    CHECK(decode_element<e2m1>(encode_element<e2m1>(ties[i], unit, a), unit) == away[i]);
    CHECK(decode_element<e2m1>(encode_element<e2m1>(-ties[i], unit, {}), unit) == -rne[i]);
  }
  // E4M3 (microxcaling test_fp8_e4m3_fix): 485 -> 448, 475 -> 448, 400 -> 384 (RNE) / 416 (away).
  auto e4 = [&](float x, const quant_options& o) { return decode_element<e4m3>(encode_element<e4m3>(x, unit, o), unit); };
  CHECK(e4(485, {}) == 448);
  CHECK(e4(475, {}) == 448);
  CHECK(e4(464, {}) == 448);  // the overflow boundary ties back to 448
  CHECK(e4(400, {}) == 384);
  CHECK(e4(400, a) == 416);
  CHECK(e4(0x1p-6f, {}) == 0x1p-6f);
  CHECK(e4(0x1p-10f, {}) == 0.0f);  // half the smallest subnormal ties to 0
  CHECK(e4(0x1p-10f, a) == 0x1p-9f);
}

TEST_CASE("rounding: toward zero and stochastic", "[format]") {
  const block_params unit{1.0, 127, 0, false};
  quant_options z;
  z.rounding = rounding::toward_zero;
  CHECK(decode_element<e2m1>(encode_element<e2m1>(5.99f, unit, z), unit) == 4.0f);
  CHECK(decode_element<e2m1>(encode_element<e2m1>(-0.49f, unit, z), unit) == 0.0f);
  CHECK(decode_element<e2m1>(encode_element<e2m1>(100.0f, unit, z), unit) == 6.0f);  // saturates
  quant_options s;
  s.rounding = rounding::stochastic;
  std::mt19937 gen(1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  s.uniform = [&] { return u(gen); };
  // 2.25 lies a quarter of the way from 2 to 3: E[q] = 2.25.
  double sum = 0;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    const float q = decode_element<e2m1>(encode_element<e2m1>(2.25f, unit, s), unit);
    REQUIRE((q == 2.0f || q == 3.0f));
    sum += q;
  }
  CHECK(sum / n == Approx(2.25).margin(0.01));
  quant_options missing;
  missing.rounding = rounding::stochastic;
  CHECK_THROWS_AS(encode_element<e2m1>(2.25f, unit, missing), mxq::error);
}

TEST_CASE("MX blocks: shared exponent, saturation, zeros and specials", "[format]") {
  // amax = 7 in MXFP4: scale 2^0 (OCP floor), 7 saturates to 6.
  std::vector<float> x(32, 0.0f);
  x[0] = 7.0f;
  x[1] = -0.0f;
  x[2] = -0.1f;  // underflows: keeps its sign like the reference (sign(x) * q)
  auto q = quantize<mxfp4>(matrix_view<const float>(x.data(), 1, 32));
  CHECK(q.scale(0, 0) == 127);
  auto d = dequantize(q);
  CHECK(d[0] == 6.0f);
  CHECK(std::bit_cast<std::uint32_t>(d[1]) == 0u);           // -0 input -> +0
  CHECK(std::bit_cast<std::uint32_t>(d[2]) == 0x80000000u);  // negative underflow -> -0
  // ceil rule never clips: 7 -> scale 2^1, 7/2 = 3.5 -> 4 -> 8.
  quant_options c;
  c.scale_rule = scale_rule::ceil;
  CHECK(fq<mxfp4>(x, 32, c)[0] == 8.0f);

  // All-zero block: smallest scale, zeros.
  std::vector<float> z(32, 0.0f);
  auto qz = quantize<mxfp8_e4m3>(matrix_view<const float>(z.data(), 1, 32));
  CHECK(qz.scale(0, 0) == 0);
  for (float v : dequantize(qz)) CHECK(v == 0.0f);

  // NaN or Inf anywhere in a block -> the whole block is NaN (scale 0xFF); other blocks unaffected.
  for (float special : {qnan, inf, -inf}) {
    std::vector<float> y(64, 1.0f);
    y[5] = special;
    auto qy = quantize<mxint8>(matrix_view<const float>(y.data(), 1, 64));
    CHECK(qy.scale(0, 0) == 0xFF);
    const auto dy = dequantize(qy);
    for (int i = 0; i < 32; ++i) CHECK(std::isnan(dy[static_cast<std::size_t>(i)]));
    for (int i = 32; i < 64; ++i) CHECK(dy[static_cast<std::size_t>(i)] == 1.0f);
  }

  // Huge and tiny in one block (2^127 and 1.0 in E2M1): 1.0 underflows to 0, no NaN.
  std::vector<float> h(32, 1.0f);
  h[0] = 0x1p127f;
  const auto dh = fq<mxfp4>(h, 32);
  CHECK(dh[0] == 0x1p127f);
  CHECK(dh[1] == 0.0f);
}

TEST_CASE("MX blocks: amax just below a power of two (the float log2 trap)", "[format]") {
  // The largest float below 8: floor(log2) is 2, a float log2 rounds to 3.
  const float below8 = std::nextafter(8.0f, 0.0f);
  CHECK(detail::floor_log2(below8) == 2);
  CHECK(detail::floor_log2(8.0f) == 3);
  for (int k : {-120, -100, -3, 0, 5, 100, 120}) {
    const float p = std::ldexp(1.0f, k);
    for (int step = 1; step <= 50; ++step) {
      float v = p;
      for (int s = 0; s < step; ++s) v = std::nextafter(v, 0.0f);
      INFO("2^" << k << " minus " << step << " ulps");
      CHECK(detail::floor_log2(v) == k - 1);
    }
  }
  std::vector<float> x(32, 0.0f);
  x[0] = below8;
  auto q = quantize<mxfp4>(matrix_view<const float>(x.data(), 1, 32));
  CHECK(q.scale(0, 0) == 127 + 2 - 2);  // floor(log2 amax) - emax = 0
  CHECK(dequantize(q)[0] == 6.0f);
}

TEST_CASE("MX blocks: FP32 subnormal inputs and scale clamping", "[format]") {
  std::vector<float> x(32, 0.0f);
  x[0] = 0x1p-140f;  // subnormal amax: exponent -140 - emax clamps to -127
  x[1] = 0x1p-141f;
  auto q = quantize<mxint8>(matrix_view<const float>(x.data(), 1, 32));
  CHECK(q.scale(0, 0) == 0);
  const auto d = dequantize(q);
  // element = x / 2^-127 = 2^-13 -> nearest multiple of 1/64 is 0.
  CHECK(d[0] == 0.0f);
  // E5M2 has room: 2^-140 / 2^-127 = 2^-13 is a normal E5M2 value (min normal 2^-14).
  const auto d5 = fq<mxfp8_e5m2>(x, 32);
  CHECK(d5[0] == 0x1p-140f);
  CHECK(d5[1] == 0x1p-141f);
  CHECK(detail::floor_log2(0x1p-149f) == -149);
}

TEST_CASE("MX blocks: ragged rows and blocks along the first dimension", "[format]") {
  std::mt19937 gen(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::size_t rows = 5, cols = 70;  // 2 full blocks + a ragged block of 6
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = nd(gen);
  const auto y = fq<mxfp4>(x, cols);
  // The ragged block behaves like a block padded with zeros (zeros cannot change amax).
  for (std::size_t r = 0; r < rows; ++r) {
    std::vector<float> padded(96, 0.0f);
    std::copy_n(x.begin() + static_cast<std::ptrdiff_t>(r * cols), cols, padded.begin());
    const auto yp = fq<mxfp4>(padded, 96);
    for (std::size_t c = 0; c < cols; ++c) CHECK(y[r * cols + c] == yp[c]);
  }
  // Transposed view: blocks along columns equal quantizing the explicit transpose.
  std::vector<float> xt(cols * rows), out(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) xt[c * rows + r] = x[r * cols + c];
  const auto yt = fq<mxint8>(xt, rows);  // blocks along the 5-long rows of the transpose
  matrix_view<const float> v(x.data(), rows, cols);
  matrix_view<float> o(out.data(), rows, cols);
  fake_quant<mxint8>(v.t(), o.t());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) CHECK(out[r * cols + c] == yt[c * rows + r]);
}

TEST_CASE("scale rule mse: never worse than floor, weighted by column importance", "[format]") {
  std::mt19937 gen(3);
  std::student_t_distribution<float> td(3.0f);
  const std::size_t rows = 64, cols = 256;
  std::vector<float> x(rows * cols), w(cols);
  for (auto& v : x) v = td(gen);
  for (auto& v : w) v = std::uniform_real_distribution<float>(0.1f, 10.0f)(gen);
  auto werr = [&](const std::vector<float>& y) {
    double e = 0;
    for (std::size_t i = 0; i < x.size(); ++i) e += w[i % cols] * (y[i] - x[i]) * (y[i] - x[i]);
    return e;
  };
  quant_options m;
  m.scale_rule = scale_rule::mse;
  m.column_weights = w;
  auto check = [&](auto tag) {
    using F = typename decltype(tag)::type;
    const double e_floor = werr(fq<F>(x, cols)), e_mse = werr(fq<F>(x, cols, m));
    INFO(format_traits<F>::name);
    CHECK(e_mse <= e_floor);
  };
  check(format_tag<mxfp4>{});
  check(format_tag<mxint4>{});
  check(format_tag<nvfp4>{});
  check(format_tag<int4_g128>{});
  check(format_tag<int4_pc_sym>{});
  quant_options bad = m;
  std::vector<float> short_w(3);
  bad.column_weights = short_w;
  CHECK_THROWS_AS(fq<mxfp4>(x, cols, bad), mxq::error);
}

TEST_CASE("scale rule mse grid: FP-Quant's shrinks and error exponent, against brute force", "[format]") {
  std::mt19937 gen(11);
  std::student_t_distribution<float> td(2.5f);
  const std::size_t rows = 16, cols = 512;
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = td(gen);
  const auto norm_err = [](std::span<const float> a, std::span<const float> b, double p) {
    double e = 0;
    for (std::size_t i = 0; i < a.size(); ++i) e += std::pow(std::fabs(static_cast<double>(a[i]) - b[i]), p);
    return e;
  };
  quant_options g;
  g.scale_rule = scale_rule::mse;
  g.mse_grid = 100;
  g.mse_norm = 2.4;
  // MXFP4 by brute force: per 32-block, every exponent floor(log2(p amax)) - 2 of p = 1 - i/100,
  // i < 80, each element to the nearest E2M1 magnitude (ties to even code, saturating at 6).
  const auto y = fq<mxfp4>(x, cols, g);
  constexpr float mags[] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (std::size_t b = 0; b < x.size(); b += 32) {
    const std::span<const float> xb(&x[b], 32), yb(&y[b], 32);
    float amax = 0;
    for (float v : xb) amax = std::max(amax, std::fabs(v));
    double best = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 80; ++i) {
      const int e = static_cast<int>(std::floor(std::log2(static_cast<double>((1.0f - static_cast<float>(i) / 100.0f) * amax)))) - 2;
      std::vector<float> q(32);
      for (int k = 0; k < 32; ++k) {
        const double a = std::fabs(xb[k]) / std::ldexp(1.0, e);
        int m = 0;
        for (int c = 1; c < 8; ++c) {
          const double d = std::fabs(a - mags[c]), dm = std::fabs(a - mags[m]);
          if (d < dm || (d == dm && c % 2 == 0)) m = c;
        }
        q[k] = std::copysign(static_cast<float>(std::ldexp(mags[m], e)), xb[k]);
      }
      best = std::min(best, norm_err(xb, q, 2.4));
    }
    INFO("block " << b / 32);
    CHECK(norm_err(xb, yb, 2.4) == Approx(best).epsilon(1e-12));
  }
  // Every format: never worse than the plain rule in the grid's own error, and the exponent 2.4
  // choice no worse in |.|^2.4 than the squared-error one (the same candidates).
  auto check = [&](auto tag) {
    using F = typename decltype(tag)::type;
    INFO(format_traits<F>::name);
    quant_options g2 = g;
    g2.mse_norm = 2.0;
    const auto yf = fq<F>(x, cols), yg = fq<F>(x, cols, g), yg2 = fq<F>(x, cols, g2);
    CHECK(norm_err(x, yg, 2.4) <= norm_err(x, yf, 2.4));
    CHECK(norm_err(x, yg, 2.4) <= norm_err(x, yg2, 2.4));
    CHECK(norm_err(x, yg2, 2.0) <= norm_err(x, yf, 2.0));
    CHECK(norm_err(x, yg2, 2.0) <= norm_err(x, yg, 2.0));
  };
  check(format_tag<mxfp4>{});
  check(format_tag<mxint4>{});
  check(format_tag<nvfp4>{});
  check(format_tag<int4_g128>{});
  check(format_tag<mxfp6_e2m3>{});
}

TEST_CASE("NVFP4: two-level scale against hand-computed cases", "[format][nvfp4]") {
  // Tensor amax 2688 -> tensor scale 2688 / (6 * 448) = 1; a block with amax 2688 -> block scale 448.
  std::vector<float> x(32, 0.0f);
  x[0] = 2688.0f;
  x[1] = 1344.0f;  // 1344 / 448 = 3 -> code 3.0
  x[16] = 6.0f;    // second block: amax 6 -> scale RNE(6/6/1) = 1 -> 6
  x[17] = 2.5f;    // 2.5 ties to 2 (RNE)
  auto q = quantize<nvfp4>(matrix_view<const float>(x.data(), 1, 32));
  CHECK(q.tensor().scale == 1.0f);
  CHECK(q.scale(0, 0) == 0x7E);  // 448
  CHECK(q.scale(0, 1) == 0x38);  // 1.0 in E4M3
  auto d = dequantize(q);
  CHECK(d[0] == 2688.0f);
  CHECK(d[1] == 1344.0f);
  CHECK(d[16] == 6.0f);
  CHECK(d[17] == 2.0f);
  // A block scale that is not a power of two: amax 9 with tensor scale 1 -> 9/6 = 1.5 exactly.
  std::vector<float> y(16, 0.0f);
  y[0] = 9.0f;
  y[1] = 4.0f;  // 4 / 1.5 = 2.67 -> 3 -> 4.5
  std::vector<float> yy(y);
  yy.insert(yy.end(), {2688.0f});  // fix the tensor scale at 1 with a second row element
  yy.resize(32, 0.0f);
  auto qy = quantize<nvfp4>(matrix_view<const float>(yy.data(), 1, 32));
  CHECK(qy.scale(0, 0) == 0x3C);  // 1.5
  const auto dy = dequantize(qy);
  CHECK(dy[0] == 9.0f);
  CHECK(dy[1] == 4.5f);
}

TEST_CASE("NVFP4: all-zero blocks and tensors give zeros, never NaN", "[format][nvfp4]") {
  std::vector<float> z(48, 0.0f);
  auto q = quantize<nvfp4>(matrix_view<const float>(z.data(), 1, 48));
  CHECK(q.tensor().scale == 1.0f);
  for (float v : dequantize(q)) CHECK(v == 0.0f);
  std::vector<float> x(48, 0.0f);
  x[20] = 3.0f;  // blocks 0 and 2 all zero
  for (float v : fq<nvfp4>(x, 48)) CHECK(std::isfinite(v));
  CHECK(fq<nvfp4>(x, 48)[20] == Approx(3.0f).epsilon(0.01));
  // A tiny block next to a huge one keeps a non-zero scale instead of collapsing to 0/0.
  std::vector<float> t(32, 0.0f);
  t[0] = 1e6f;
  t[16] = 1e-3f;
  const auto dt = fq<nvfp4>(t, 32);
  CHECK(std::isfinite(dt[16]));
  // NaN in a block: that block is NaN, the tensor scale ignores it.
  std::vector<float> n(32, 1.0f);
  n[3] = qnan;
  const auto dn = fq<nvfp4>(n, 32);
  CHECK(std::isnan(dn[0]));
  CHECK(dn[16] == 1.0f);
}

TEST_CASE("INT baselines follow GPTQ's reference quantizer", "[format][int]") {
  // Reference formulas written out: asymmetric min-max with zero point, per row.
  std::mt19937 gen(11);
  std::normal_distribution<float> nd(0.3f, 1.0f);
  const std::size_t rows = 4, cols = 300;
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = nd(gen);
  const auto y = fq<int4_pc>(x, cols);
  for (std::size_t r = 0; r < rows; ++r) {
    float xmin = 0, xmax = 0;
    for (std::size_t c = 0; c < cols; ++c) xmin = std::min(xmin, x[r * cols + c]), xmax = std::max(xmax, x[r * cols + c]);
    const float scale = (xmax - xmin) / 15.0f;
    const float zero = std::nearbyint(-xmin / scale);
    for (std::size_t c = 0; c < cols; ++c) {
      const float q = std::clamp(std::nearbyint(x[r * cols + c] / scale) + zero, 0.0f, 15.0f);
      CHECK(y[r * cols + c] == Approx(scale * (q - zero)).margin(1e-6));
    }
  }
  // Symmetric: zero = 8, scale = 2 * amax / 15.
  const auto s = fq<int4_pc_sym>(x, cols);
  for (std::size_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (std::size_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(x[r * cols + c]));
    const float scale = 2 * amax / 15.0f;
    for (std::size_t c = 0; c < cols; ++c) {
      const float q = std::clamp(std::nearbyint(x[r * cols + c] / scale) + 8.0f, 0.0f, 15.0f);
      CHECK(s[r * cols + c] == Approx(scale * (q - 8.0f)).margin(1e-6));
    }
  }
  // Groups of 128 along the row, ragged last group of 44.
  auto q = quantize<int4_g128>(matrix_view<const float>(x.data(), rows, cols));
  CHECK(q.blocks_per_row() == 3);
  // All-zero rows use GPTQ's [-1, 1] guard and decode to exact zeros.
  std::vector<float> z(cols, 0.0f);
  for (float v : fq<int4_pc>(z, cols)) CHECK(v == 0.0f);
}

TEST_CASE("packed storage: pack -> unpack is lossless for every format and layout", "[format][packed]") {
  std::mt19937 gen(5);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  const std::size_t rows = 3, cols = 96;
  std::vector<float> x(rows * cols);
  for (auto& v : x) v = nd(gen);
  for_each_format([&](auto tag) {
    using F = typename decltype(tag)::type;
    INFO(format_traits<F>::name);
    const matrix_view<const float> v(x.data(), rows, cols);
    auto q = quantize<F>(v);
    std::vector<float> fqv(x.size());
    fake_quant<F>(v, matrix_view<float>(fqv.data(), rows, cols));
    const auto d = dequantize(q);
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(std::bit_cast<std::uint32_t>(d[i]) == std::bit_cast<std::uint32_t>(fqv[i]));
    CHECK(q.row_bytes() == (cols * F::bits + 7) / 8);
  });
  // Explicit byte layouts.
  std::vector<float> s(32, 0.0f);
  s[0] = 1.0f;   // code 2
  s[1] = -6.0f;  // code 0xF
  s[16] = 3.0f;  // code 5
  auto pairs = quantize<mxfp4>(matrix_view<const float>(s.data(), 1, 32));
  CHECK(pairs.code_bytes()[0] == 0xF2);  // element 0 low nibble, element 1 high nibble
  CHECK(pairs.code_bytes()[8] == 0x05);
  auto halves = quantize<mxfp4, split_halves_layout>(matrix_view<const float>(s.data(), 1, 32));
  CHECK(halves.code_bytes()[0] == 0x52);  // ggml: element 0 low, element 16 high
  CHECK(halves.code_bytes()[1] == 0x0F);
  CHECK(dequantize(halves) == dequantize(pairs));
  CHECK_THROWS_AS((quantize<mxfp4, split_halves_layout>(matrix_view<const float>(s.data(), 1, 20))), mxq::error);
  // FP6: 4 values in 3 bytes.
  auto q6 = quantize<mxfp6_e2m3>(matrix_view<const float>(s.data(), 1, 32));
  CHECK(q6.row_bytes() == 24);
  CHECK(q6.storage_bytes() == 24 + 1);
}

TEST_CASE("fake_quant rejects mismatched shapes", "[format]") {
  std::vector<float> a(12), b(12);
  CHECK_THROWS_AS(fake_quant<mxfp4>(matrix_view<const float>(a.data(), 3, 4), matrix_view<float>(b.data(), 4, 3)),
                  mxq::error);
  CHECK_THROWS_AS(fake_quant<mxfp4>(std::span<float>(a), 5), mxq::error);
}

TEST_CASE("registry: names map to formats", "[format]") {
  CHECK(visit_format("mxfp4", [](auto tag) { return decltype(tag)::type::block_size; }) == 32);
  CHECK(visit_format("nvfp4", [](auto tag) { return decltype(tag)::type::block_size; }) == 16);
  CHECK(visit_format("int4_pc", [](auto tag) { return decltype(tag)::type::block_size; }) == 0);
  CHECK_THROWS_WITH(visit_format("mxfp5", [](auto) { return 0; }), Catch::Contains("unknown format 'mxfp5'"));
  int n = 0;
  for_each_format([&](auto) { ++n; });
  CHECK(n == 20);
  CHECK(effective_bits<mxfp4>() == 4.25);
  CHECK(effective_bits<nvfp4>() == 4.5);
  CHECK(effective_bits<mxint8>() == 8.25);
}

}  // namespace test_format
