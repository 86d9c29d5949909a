// The 8-row interleaved layout (mxq/interleaved.hpp): products equal the scalar oracle bit for
// bit (whatever the ISA, thread count or batch), equal the packed matrix's gemm rows (its 8-row
// tiles do the same arithmetic), stay within the int8 path's documented error bound, and bad
// calls are named errors. Also quantize_q8 (AVX2) against its scalar oracle.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mxq/format.hpp"
#include "mxq/gemm.hpp"
#include "mxq/interleaved.hpp"
#include "mxq/quantize.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_interleaved {

namespace {

using mxq::matrix_view;

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0 || (std::isnan(a) && std::isnan(b)); }

// The oracle: scalar quantizer and scalar group product, group by group.
template <class F, class Layout, class T>
std::vector<float> oracle(const mxq::interleaved_matrix<F, Layout>& w, matrix_view<const T> x) {
  namespace kd = mxq::kernel::detail;
  const kd::q8_rows a = kd::quantize_q8_scalar<F, Layout>(x);
  alignas(32) float lut[256];
  kd::scale_lut<F>(lut, w.tensor());
  std::vector<float> y(x.rows * w.rows());
  float out[8];
  for (std::size_t t = 0; t < x.rows; ++t)
    for (std::size_t g = 0; g < w.groups(); ++g) {
      kd::x8_group_scalar<F>(w.group_codes(g), w.group_scales(g), w.stored_blocks(), a, t, lut, out);
      for (std::size_t r = 0; r < 8 && g * 8 + r < w.rows(); ++r) y[t * w.rows() + g * 8 + r] = out[r];
    }
  return y;
}

template <class F, class Layout = mxq::lsb_first_layout>
void check_format(unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  constexpr std::size_t B = F::block_size;
  struct shape {
    std::size_t rows, cols;
  };
  std::vector<shape> shapes = {{1, B}, {7, 4 * B}, {13, 128}, {16, 256}, {19, 320}, {40, 1024}, {67, 192}};
  if (std::is_same_v<Layout, mxq::lsb_first_layout>) shapes.insert(shapes.end(), {{9, 1}, {11, 33}, {5, 3 * B + 7}, {8, 200}});
  for (const shape& s : shapes) {
    std::vector<float> wv(s.rows * s.cols);
    for (float& v : wv) v = nd(rng) * std::exp(nd(rng));
    if (s.rows > 3 && s.cols > 2) wv[2 * s.cols + 1] = std::numeric_limits<float>::quiet_NaN();  // a NaN block in row 2
    const auto w = mxq::quantize<F, Layout>(matrix_view<const float>(wv.data(), s.rows, s.cols));
    const mxq::interleaved_matrix<F, Layout> wi(w);
    for (std::size_t batch : {1, 2, 3, 5}) {
      std::vector<float> x(batch * s.cols);
      for (float& v : x) v = nd(rng) * (rng() % 8 == 0 ? 30.0f : 1.0f);
      if (batch == 5) x[3 * s.cols] = std::numeric_limits<float>::infinity();  // token 3: an infinite activation
      const matrix_view<const float> X(x.data(), batch, s.cols);
      const std::vector<float> ref = oracle(wi, X);
      const std::string what = std::string(mxq::format_traits<F>::name) + " " + std::string(Layout::name) + " " +
                               std::to_string(s.rows) + "x" + std::to_string(s.cols) + " batch " + std::to_string(batch);
      INFO(what);
      for (int threads : {1, 2, 3}) {
        std::vector<float> y(batch * s.rows, -1.0f);
        mxq::gemm(wi, X, matrix_view<float>(y.data(), batch, s.rows), {.threads = threads});
        std::size_t bad = 0;
        for (std::size_t i = 0; i < y.size(); ++i) bad += !same_bits(y[i], ref[i]);
        INFO("threads " << threads);
        CHECK(bad == 0);
        // Each token alone (gemv) gives its row of the batch.
        std::vector<float> yv(s.rows);
        for (std::size_t t = 0; t < batch; ++t) {
          mxq::gemv(wi, std::span<const float>(x.data() + t * s.cols, s.cols), std::span<float>(yv), {.threads = threads});
          std::size_t badv = 0;
          for (std::size_t r = 0; r < s.rows; ++r) badv += !same_bits(yv[r], ref[t * s.rows + r]);
          CHECK(badv == 0);
        }
      }
      // The packed matrix's 8-row tiles (batches of 3 or more, SIMD kernels) do the same arithmetic.
      if (batch >= 3 && mxq::kernel::avx2_enabled()) {
        std::vector<float> yp(batch * s.rows);
        mxq::gemm(w, X, matrix_view<float>(yp.data(), batch, s.rows), {.threads = 2});
        std::size_t bad = 0;
        for (std::size_t i = 0; i < yp.size(); ++i) bad += !same_bits(yp[i], ref[i]);
        CHECK(bad == 0);
      }
      // Within the int8 path's bound against the dequantized product (computed in double).
      const std::vector<float> wd = mxq::reference::dequantize(w);
      std::size_t out_of_bound = 0;
      for (std::size_t t = 0; t < batch; ++t) {
        if (batch == 5 && t == 3) continue;  // the infinite activation: no finite reference
        const float* xr = x.data() + t * s.cols;
        std::vector<double> d((s.cols + B - 1) / B, 0.0);
        for (std::size_t c = 0; c < s.cols; ++c) d[c / B] = std::max(d[c / B], std::fabs(static_cast<double>(xr[c])) / 127.0);
        for (std::size_t r = 0; r < s.rows; ++r) {
          double e = 0.0, mag = 0.0, qerr = 0.0;
          bool nan = false;
          for (std::size_t c = 0; c < s.cols; ++c) {
            const double wvd = wd[r * s.cols + c];
            nan = nan || std::isnan(wvd);
            e += wvd * xr[c], mag += std::fabs(wvd * xr[c]), qerr += std::fabs(wvd) * d[c / B] / 2.0;
          }
          const double got = ref[t * s.rows + r];
          if (nan) {
            out_of_bound += !std::isnan(got);
            continue;
          }
          const double tol = qerr * 1.001 + static_cast<double>(s.cols + 2) * 0x1p-23 * (mag + qerr) + 1e-30;
          out_of_bound += !(std::fabs(got - e) <= tol);
        }
      }
      CHECK(out_of_bound == 0);
    }
    // bf16 activations: the same bits as FP32 activations holding the bf16 values.
    std::vector<mxq::bf16> xb(3 * s.cols);
    std::vector<float> xbf(xb.size());
    for (std::size_t i = 0; i < xb.size(); ++i) xb[i] = mxq::bf16::from_float(nd(rng)), xbf[i] = xb[i].to_float();
    std::vector<float> y1(3 * s.rows), y2(3 * s.rows);
    mxq::gemm(wi, matrix_view<const mxq::bf16>(xb.data(), 3, s.cols), matrix_view<float>(y1.data(), 3, s.rows), {.threads = 2});
    mxq::gemm(wi, matrix_view<const float>(xbf.data(), 3, s.cols), matrix_view<float>(y2.data(), 3, s.rows), {.threads = 2});
    std::size_t bad = 0;
    for (std::size_t i = 0; i < y1.size(); ++i) bad += !same_bits(y1[i], y2[i]);
    CHECK(bad == 0);
  }
}

}  // namespace

TEST_CASE("interleaved: products equal the scalar oracle and the packed gemm rows, bit for bit", "[kernel][interleaved]") {
  check_format<mxq::mxfp4>(1);
  check_format<mxq::mxfp4, mxq::split_halves_layout>(2);
  check_format<mxq::mxint4>(3);
  check_format<mxq::mxint4, mxq::split_halves_layout>(4);
  check_format<mxq::nvfp4>(5);
  check_format<mxq::nvfp4, mxq::split_halves_layout>(6);
}

TEST_CASE("interleaved: quantize_q8 equals its scalar oracle (NaN, infinities, zeros, extremes)", "[kernel][interleaved]") {
  if (!mxq::kernel::avx2_enabled()) SUCCEED("no SIMD kernels on this CPU: the oracle is the only path");
#if MXQ_KERNEL_AVX2
  if (mxq::kernel::avx2_enabled()) {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const std::size_t rows = 9, cols = 300;
    std::vector<float> x(rows * cols);
    for (float& v : x) v = nd(rng) * std::exp(3.0f * nd(rng));
    for (std::size_t c = 0; c < 64; ++c) x[c] = 0.0f;                  // row 0: an all-zero chunk
    x[cols + 5] = std::numeric_limits<float>::quiet_NaN();             // row 1: NaN
    x[2 * cols + 40] = std::numeric_limits<float>::infinity();         // row 2: +inf
    x[3 * cols + 7] = -std::numeric_limits<float>::infinity();         // row 3: -inf
    x[4 * cols + 9] = std::numeric_limits<float>::max();               // row 4: the largest float
    x[5 * cols + 3] = std::numeric_limits<float>::denorm_min();        // row 5: a subnormal block max
    for (std::size_t c = 96; c < 128; ++c) x[5 * cols + c] = c == 100 ? 1e-40f : 0.0f;
    for (std::size_t c = 0; c < cols; ++c) x[6 * cols + c] = (c % 2 ? 0.5f : -0.5f) * static_cast<float>(c % 7);  // ties
    const matrix_view<const float> X(x.data(), rows, cols);
    auto check = [&](auto f, auto l) {
      using F = decltype(f);
      using L = decltype(l);
      const auto a = mxq::kernel::detail::quantize_q8<F, L>(X);
      const auto b = mxq::kernel::detail::quantize_q8_scalar<F, L>(X);
      INFO(mxq::format_traits<F>::name << " " << L::name);
      CHECK(a.q == b.q);
      CHECK(a.offs == b.offs);
      CHECK(a.corr == b.corr);
      REQUIRE(a.d.size() == b.d.size());
      std::size_t bad = 0;
      for (std::size_t i = 0; i < a.d.size(); ++i) bad += !same_bits(a.d[i], b.d[i]);
      CHECK(bad == 0);
    };
    check(mxq::mxfp4{}, mxq::lsb_first_layout{});
    check(mxq::mxfp4{}, mxq::split_halves_layout{});
    check(mxq::mxint4{}, mxq::lsb_first_layout{});
    check(mxq::nvfp4{}, mxq::lsb_first_layout{});
    check(mxq::nvfp4{}, mxq::split_halves_layout{});
  }
#endif
}

TEST_CASE("interleaved: shapes, f32 activations and empty matrices", "[kernel][interleaved]") {
  std::vector<float> wv(10 * 64, 0.5f), x(64, 1.0f), y(10);
  const auto w = mxq::quantize<mxq::mxfp4>(matrix_view<const float>(wv.data(), 10, 64));
  const mxq::interleaved_matrix<mxq::mxfp4> wi(w);
  CHECK(wi.rows() == 10);
  CHECK(wi.cols() == 64);
  CHECK(wi.groups() == 2);
  CHECK_THROWS_WITH(mxq::gemv(wi, std::span<const float>(x.data(), 63), std::span<float>(y)),
                    Catch::Contains("gemv: weights are 10x64, activations 1x63"));
  CHECK_THROWS_WITH(mxq::gemv(wi, std::span<const float>(x), std::span<float>(y.data(), 9)), Catch::Contains("output 1x9"));
  CHECK_THROWS_WITH(mxq::gemv(wi, std::span<const float>(x), std::span<float>(y), {.activations = mxq::activation_precision::f32}),
                    Catch::Contains("int8 activations only"));
  mxq::gemv(wi, std::span<const float>(x), std::span<float>(y));
  for (float v : y) CHECK(v == Approx(32.0f).epsilon(1e-6));  // 0.5 x 1 x 64
  // No rows, no tokens: nothing to do, nothing written.
  const auto w0 = mxq::quantize<mxq::mxfp4>(matrix_view<const float>(wv.data(), 0, 64));
  const mxq::interleaved_matrix<mxq::mxfp4> wi0(w0);
  CHECK(wi0.groups() == 0);
  std::vector<float> none;
  mxq::gemv(wi0, std::span<const float>(x), std::span<float>(none));
  mxq::gemm(wi, matrix_view<const float>(x.data(), 0, 64), matrix_view<float>(y.data(), 0, 10));
  // A default-constructed matrix is 0x0.
  const mxq::interleaved_matrix<mxq::nvfp4> empty;
  CHECK(empty.rows() == 0);
  CHECK(empty.storage_bytes() == 0);
}

}  // namespace test_interleaved
