// Batch-1 GEMV with the weights cold, against the read bandwidth measured in the same program
// (issue 15): first a sum over a buffer of at least 1 GiB on THREADS threads (the baseline, GB/s),
// then GEMV calls rotating through enough copies of the matrix to fill at least 1 GiB, so every
// call streams its weights from memory, not from the 32 MiB L3; then the same matrix called over
// and over (hot). Reports each as a per-call median and as packed bytes / time, and the cold
// GEMV's share of the read bandwidth.
//   mxq_gemv_cold ROWS COLS THREADS [mxfp4|mxint4|nvfp4] [packed|interleaved] [ROUNDS (3)]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "mxq/format.hpp"
#include "mxq/gemm.hpp"
#include "mxq/interleaved.hpp"
#include "mxq/kernel/thread.hpp"
#include "mxq/quantize.hpp"

namespace {

using clk = std::chrono::steady_clock;
constexpr std::size_t min_bytes = std::size_t{1} << 30;

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Sum of every 8-byte word of buf on `threads` threads (mxq's pool, as the GEMV), seconds per pass.
double read_pass(const std::vector<std::uint64_t>& buf, int threads, std::uint64_t& sink) {
  const std::size_t n = buf.size(), parts = static_cast<std::size_t>(threads) * 16;
  std::vector<std::uint64_t> sums(parts, 0);
  const auto t0 = clk::now();
  mxq::kernel::parallel_chunks(parts, threads, 1, [&](std::size_t p0, std::size_t p1) {
    for (std::size_t p = p0; p < p1; ++p) {
      std::uint64_t s = 0;
      for (std::size_t i = p * n / parts; i < (p + 1) * n / parts; ++i) s += buf[i];
      sums[p] = s;
    }
  });
  const double dt = std::chrono::duration<double>(clk::now() - t0).count();
  for (std::uint64_t s : sums) sink += s;
  return dt;
}

template <class F, class M>
void run(const M& one, std::size_t rows, std::size_t cols, int threads, std::size_t rounds, double read_gbs) {
  const std::size_t bytes = one.storage_bytes();
  const std::size_t copies = std::max<std::size_t>(2, (min_bytes + bytes - 1) / bytes);
  std::vector<M> w(copies, one);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(cols), y(rows);
  for (float& v : x) v = nd(rng);
  mxq::gemm_options opt;
  opt.threads = threads;
  std::vector<double> cold, hot;
  for (std::size_t i = 0; i < copies; ++i) mxq::gemv(w[i], std::span<const float>(x), std::span<float>(y), opt);  // touch
  for (std::size_t r = 0; r < rounds; ++r)
    for (std::size_t i = 0; i < copies; ++i) {
      const auto t0 = clk::now();
      mxq::gemv(w[i], std::span<const float>(x), std::span<float>(y), opt);
      cold.push_back(std::chrono::duration<double>(clk::now() - t0).count());
    }
  for (std::size_t i = 0; i < 20 + 10 * rounds * copies / 4; ++i) {
    const auto t0 = clk::now();
    mxq::gemv(w[0], std::span<const float>(x), std::span<float>(y), opt);
    if (i >= 20) hot.push_back(std::chrono::duration<double>(clk::now() - t0).count());
  }
  const double c = median(cold), h = median(hot);
  std::printf("cold: %zu copies (%.2f GiB), median %.1f us, %.2f GB/s = %.3f of the read bandwidth\n", copies,
              static_cast<double>(copies * bytes) / (1 << 30), c * 1e6, static_cast<double>(bytes) / c / 1e9,
              static_cast<double>(bytes) / c / 1e9 / read_gbs);
  std::printf("hot: median %.1f us, %.2f GB/s (y0 %.5f)\n", h * 1e6, static_cast<double>(bytes) / h / 1e9, static_cast<double>(y[0]));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 7) {
    std::fprintf(stderr, "usage: mxq_gemv_cold ROWS COLS THREADS [mxfp4|mxint4|nvfp4] [packed|interleaved] [ROUNDS]\n");
    return 2;
  }
  const auto arg = [&](int i) {
    char* end = nullptr;
    const long v = std::strtol(argv[i], &end, 10);
    if (!end || *end || v <= 0) {
      std::fprintf(stderr, "mxq_gemv_cold: argument %d ('%s') must be a positive integer\n", i, argv[i]);
      std::exit(2);
    }
    return static_cast<std::size_t>(v);
  };
  const std::size_t rows = arg(1), cols = arg(2), rounds = argc > 6 ? arg(6) : 3;
  const int threads = static_cast<int>(arg(3));
  const std::string format = argc > 4 ? argv[4] : "mxfp4", layout = argc > 5 ? argv[5] : "packed";
  if (format != "mxfp4" && format != "mxint4" && format != "nvfp4") {
    std::fprintf(stderr, "mxq_gemv_cold: FORMAT '%s' must be mxfp4, mxint4 or nvfp4\n", format.c_str());
    return 2;
  }
  if (layout != "packed" && layout != "interleaved") {
    std::fprintf(stderr, "mxq_gemv_cold: LAYOUT '%s' must be packed or interleaved\n", layout.c_str());
    return 2;
  }
  // The baseline: a 1 GiB buffer, first pass discarded (page faults), median of 5.
  std::vector<std::uint64_t> buf(min_bytes / 8);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = i;
  std::uint64_t sink = 0;
  read_pass(buf, threads, sink);
  std::vector<double> passes;
  for (int i = 0; i < 5; ++i) passes.push_back(read_pass(buf, threads, sink));
  const double read_gbs = static_cast<double>(min_bytes) / median(passes) / 1e9;
  std::printf("read bandwidth, %d threads, 1 GiB: %.2f GB/s (sum %llu)\n", threads, read_gbs, static_cast<unsigned long long>(sink % 1000));
  buf = {};
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> wv(rows * cols);
  for (float& v : wv) v = nd(rng);
  const mxq::matrix_view<const float> W(wv.data(), rows, cols);
  std::printf("gemv_%s%s %zux%zu %d threads\n", format.c_str(), layout == "interleaved" ? "_x8" : "", rows, cols, threads);
  auto go = [&](auto f) {
    using F = decltype(f);
    const auto p = mxq::quantize<F>(W);
    if (layout == "interleaved") run<F>(mxq::interleaved_matrix<F>(p), rows, cols, threads, rounds, read_gbs);
    else run<F>(p, rows, cols, threads, rounds, read_gbs);
  };
  if (format == "mxfp4") go(mxq::mxfp4{});
  else if (format == "mxint4") go(mxq::mxint4{});
  else go(mxq::nvfp4{});
}
