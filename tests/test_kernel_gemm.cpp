// gemv / gemm against the FP32 product of the dequantized matrix (computed in double), within
// the documented bounds (gemm.hpp): f32 activations: (K + 2) * 2^-23 * sum|W x|; int8 activations:
// sum_b (d_b / 2) sum_{k in b} |W| on top. Odd shapes, every format, both layouts, 1-3 threads,
// FP32 and bf16 activations, strided operands, NaN blocks.
#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>

#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mxq/format.hpp"
#include "mxq/gemm.hpp"
#include "mxq/quantize.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_kernel_gemm {

namespace {

using mxq::matrix_view;

struct problem {
  std::size_t rows, cols, batch;
};

template <class F, class Layout, class T>
void check_product(const mxq::packed_matrix<F, Layout>& w, const std::vector<float>& xf, const std::vector<T>& xin,
                   std::size_t batch, const mxq::gemm_options& opt, bool strided, const std::string& what) {
  const std::size_t rows = w.rows(), cols = w.cols();
  const std::vector<float> wd = mxq::reference::dequantize(w);
  const bool int8 = mxq::kernel::uses_int8<F, Layout>(opt);
  // Output: plain [batch, rows], or the transposed view of a [rows, batch] buffer.
  std::vector<float> ybuf(batch * rows, -12345.0f);
  matrix_view<float> y = strided ? matrix_view<float>(ybuf.data(), rows, batch).t() : matrix_view<float>(ybuf.data(), batch, rows);
  matrix_view<const T> x(xin.data(), batch, cols);
  std::vector<T> xt;
  if (strided) {  // activations as the transposed view of a column-major copy
    xt.resize(xin.size());
    for (std::size_t t = 0; t < batch; ++t)
      for (std::size_t c = 0; c < cols; ++c) xt[c * batch + t] = xin[t * cols + c];
    x = matrix_view<const T>(xt.data(), cols, batch).t();
  }
  if (batch == 1 && !strided) {
    mxq::gemv(w, std::span<const T>(xin.data(), cols), std::span<float>(ybuf.data(), rows), opt);
  } else {
    mxq::gemm(w, x, y, opt);
  }
  const std::size_t B = w.block_length();
  std::size_t bad = 0;
  for (std::size_t t = 0; t < batch; ++t) {
    const float* xr = xf.data() + t * cols;
    // Activation scales of the int8 path: per weight block, amax / 127.
    std::vector<double> d((cols + B - 1) / B, 0.0);
    for (std::size_t c = 0; c < cols; ++c) d[c / B] = std::max(d[c / B], std::fabs(static_cast<double>(xr[c])) / 127.0);
    for (std::size_t r = 0; r < rows; ++r) {
      double ref = 0.0, mag = 0.0, qerr = 0.0;
      bool nan = false;
      for (std::size_t c = 0; c < cols; ++c) {
        const double wv = wd[r * cols + c];
        if (std::isnan(wv)) nan = true;
        ref += wv * xr[c];
        mag += std::fabs(wv * xr[c]);
        qerr += std::fabs(wv) * d[c / B] / 2.0;
      }
      const double got = y(t, r);
      if (nan) {
        if (!std::isnan(got) && ++bad <= 3) UNSCOPED_INFO("row " << r << " token " << t << ": expected NaN, got " << got);
        continue;
      }
      const double tol = (int8 ? qerr * 1.001 : 0.0) + static_cast<double>(cols + 2) * 0x1p-23 * (mag + qerr) + 1e-30;
      if (!(std::fabs(got - ref) <= tol) && ++bad <= 3)
        UNSCOPED_INFO("row " << r << " token " << t << ": got " << got << " expected " << ref << " tol " << tol);
    }
  }
  INFO(what << (int8 ? " int8" : " f32") << " threads " << opt.threads << (strided ? " strided" : ""));
  CHECK(bad == 0);
}

template <class F, class Layout = mxq::lsb_first_layout>
void check_format(unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::size_t B = static_cast<std::size_t>(F::block_size == 0 ? 32 : F::block_size);
  const bool whole = std::is_same_v<Layout, mxq::split_halves_layout>;
  std::vector<problem> probs = {{1, B, 1}, {7, 4 * B, 3}, {13, 128, 8}, {33, 256, 2}, {19, 64 * 5, 17}, {40, 1024, 5}};
  if (!whole) {
    probs.push_back({9, 1, 4});
    probs.push_back({11, 33, 1});
    probs.push_back({17, 100, 9});
    probs.push_back({5, 3 * B + 7, 1});
    probs.push_back({8, 200, 3});
  }
  for (const problem& p : probs) {
    std::vector<float> wv(p.rows * p.cols);
    for (float& v : wv) v = nd(rng) * std::exp(nd(rng));
    if (p.rows > 3 && p.cols > 2) wv[2 * p.cols + 1] = std::numeric_limits<float>::quiet_NaN();  // a NaN block in row 2
    const auto w = mxq::quantize<F, Layout>(matrix_view<const float>(wv.data(), p.rows, p.cols));
    std::vector<float> xf(p.batch * p.cols);
    for (float& v : xf) v = nd(rng) * (rng() % 8 == 0 ? 30.0f : 1.0f);
    std::vector<mxq::bf16> xb(xf.size());
    std::vector<float> xbf(xf.size());
    for (std::size_t i = 0; i < xf.size(); ++i) xb[i] = mxq::bf16::from_float(xf[i]), xbf[i] = xb[i].to_float();
    const std::string what = std::string(mxq::format_traits<F>::name) + " " + std::string(Layout::name) + " " +
                             std::to_string(p.rows) + "x" + std::to_string(p.cols) + " batch " + std::to_string(p.batch);
    for (auto act : {mxq::activation_precision::f32, mxq::activation_precision::int8})
      for (int threads : {1, 2, 3}) {
        mxq::gemm_options opt;
        opt.threads = threads;
        opt.activations = act;
        check_product(w, xf, xf, p.batch, opt, false, what);
        if (threads == 2) {
          check_product(w, xf, xf, p.batch, opt, true, what);
          check_product(w, xbf, xb, p.batch, opt, false, what + " bf16");
        }
      }
  }
}

}  // namespace

TEST_CASE("gemm: 4-bit formats, f32 and int8 activations", "[kernel][gemm]") {
  check_format<mxq::mxfp4>(1);
  check_format<mxq::mxfp4, mxq::split_halves_layout>(2);
  check_format<mxq::mxint4>(3);
  check_format<mxq::mxint4, mxq::split_halves_layout>(4);
  check_format<mxq::nvfp4>(5);
  check_format<mxq::nvfp4, mxq::split_halves_layout>(6);
}

TEST_CASE("gemm: other MX formats (f32 path)", "[kernel][gemm]") {
  check_format<mxq::mxfp8_e4m3>(7);
  check_format<mxq::mxfp8_e5m2>(8);
  check_format<mxq::mxfp6_e2m3>(9);
  check_format<mxq::mxfp6_e3m2>(10);
  check_format<mxq::mxint8>(11);
  check_format<mxq::mxint6>(12);
  check_format<mxq::mxint3>(13);
}

TEST_CASE("gemm: formats without kernels use the scalar fallback", "[kernel][gemm]") {
  check_format<mxq::int4_g128>(14);
  check_format<mxq::int8_pc>(15);
}

TEST_CASE("gemm: the int8 path agrees with the f32 path on realistic data", "[kernel][gemm]") {
  std::mt19937 rng(77);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::size_t rows = 256, cols = 4096;
  std::vector<float> wv(rows * cols), x(cols);
  for (float& v : wv) v = nd(rng) * 0.02f;
  for (float& v : x) v = nd(rng);
  const auto w = mxq::quantize<mxq::mxfp4>(matrix_view<const float>(wv.data(), rows, cols));
  std::vector<float> y8(rows), y32(rows);
  mxq::gemm_options o8, o32;
  o32.activations = mxq::activation_precision::f32;
  mxq::gemv(w, std::span<const float>(x), std::span<float>(y8), o8);
  mxq::gemv(w, std::span<const float>(x), std::span<float>(y32), o32);
  double num = 0.0, den = 0.0;
  for (std::size_t r = 0; r < rows; ++r) num += (y8[r] - y32[r]) * (y8[r] - y32[r]), den += y32[r] * y32[r];
  const double rel = std::sqrt(num / den);
  INFO("relative RMS difference int8 vs f32 activations: " << rel);
  CHECK(rel < 0.01);
}

TEST_CASE("gemm: shape errors are reported", "[kernel][gemm]") {
  std::vector<float> wv(4 * 64, 1.0f), x(63), y(4);
  const auto w = mxq::quantize<mxq::mxfp4>(matrix_view<const float>(wv.data(), 4, 64));
  CHECK_THROWS_AS(mxq::gemv(w, std::span<const float>(x), std::span<float>(y)), mxq::error);
}

TEST_CASE("parallel_chunks hands out every chunk exactly once, on any thread count", "[kernel][threads]") {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{63}, std::size_t{64}, std::size_t{1000}})
    for (std::size_t chunk : {std::size_t{0}, std::size_t{1}, std::size_t{64}, std::size_t{5000}})
      for (int threads : {1, 2, 3, 8}) {
        std::vector<std::atomic<int>> seen(n);
        std::atomic<int> calls{0}, bad{0};
        mxq::kernel::parallel_chunks(n, threads, chunk, [&](std::size_t b, std::size_t e) {
          ++calls;
          const std::size_t c = std::max<std::size_t>(chunk, 1);
          if (b % c != 0 || e <= b || e > n || (e - b != c && e != n && threads > 1)) ++bad;  // whole chunks, the last one shorter
          for (std::size_t i = b; i < e && i < n; ++i) ++seen[i];
        });
        INFO("n " << n << " chunk " << chunk << " threads " << threads);
        CHECK(bad == 0);
        // One thread (or one chunk) takes the whole range in one call, else one call per chunk.
        const std::size_t chunks = (n + std::max<std::size_t>(chunk, 1) - 1) / std::max<std::size_t>(chunk, 1);
        CHECK(calls == static_cast<int>(threads == 1 || chunks <= 1 ? (n ? 1 : 0) : chunks));
        for (std::size_t i = 0; i < n; ++i) CHECK(seen[i] == 1);
      }
  // An exception from a chunk reaches the caller.
  CHECK_THROWS_AS(mxq::kernel::parallel_chunks(100, 2, 10, [](std::size_t b, std::size_t) {
                    if (b == 50) throw std::runtime_error("chunk 5");
                  }),
                  std::runtime_error);
}

TEST_CASE("gemm: results do not depend on the thread count and concurrent callers are safe", "[kernel][gemm]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::size_t rows = 203, cols = 512, batch = 6;
  std::vector<float> wv(rows * cols), x(batch * cols);
  for (float& v : wv) v = nd(rng);
  for (float& v : x) v = nd(rng);
  const auto w = mxq::quantize<mxq::mxfp4>(matrix_view<const float>(wv.data(), rows, cols));
  for (auto act : {mxq::activation_precision::f32, mxq::activation_precision::int8})
    for (std::size_t nb : {std::size_t{1}, batch}) {
      auto run = [&](int threads) {
        std::vector<float> y(nb * rows);
        mxq::gemm_options opt;
        opt.threads = threads;
        opt.activations = act;
        mxq::gemm(w, matrix_view<const float>(x.data(), nb, cols), matrix_view<float>(y.data(), nb, rows), opt);
        return y;
      };
      const std::vector<float> ref = run(1);
      CHECK(run(2) == ref);
      CHECK(run(5) == ref);
      std::vector<std::vector<float>> got(4);
      std::vector<std::thread> callers;
      for (std::size_t i = 0; i < got.size(); ++i) callers.emplace_back([&, i] { got[i] = run(2); });
      for (auto& t : callers) t.join();
      for (const auto& g : got) CHECK(g == ref);
    }
}

TEST_CASE("gemm: arbitrary E4M3 codes (NaN element codes in finite-scale blocks)", "[kernel][gemm]") {
  std::mt19937 rng(9);
  const std::size_t rows = 37, cols = 96 + 5;
  mxq::packed_matrix<mxq::mxfp8_e4m3> w(rows, cols);
  for (auto& b : w.code_bytes()) b = static_cast<std::uint8_t>(rng() % 4 == 0 ? (rng() % 2 ? 0x7F : 0xFF) : rng() & 0x7E);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t b = 0; b < w.blocks_per_row(); ++b) w.scale(r, b) = static_cast<std::uint8_t>(120 + rng() % 10);
  // Some rows without any NaN code.
  for (std::size_t r = 0; r < rows; r += 3)
    for (std::size_t c = 0; c < cols; ++c) w.set_code(r, c, static_cast<std::uint8_t>(w.code(r, c) & 0x7E));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (std::size_t batch : {std::size_t{1}, std::size_t{4}}) {
    std::vector<float> x(batch * cols);
    for (float& v : x) v = nd(rng);
    mxq::gemm_options opt;
    check_product(w, x, x, batch, opt, false, "e4m3 arbitrary codes");
  }
}

}  // namespace test_kernel_gemm
