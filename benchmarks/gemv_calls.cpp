// Batch-1 MXFP4 GEMV timed call by call, the way ../shared/bench's ggml timer times llama.cpp's
// (20 warm-up calls, then ITERS calls each timed on its own; median and mean), so the two are
// compared with the same statistic — under a busy neighbour the per-call times are bimodal and a
// mean (Google Benchmark's figure) and a median tell different stories (benchmarks/gemv_load.sh).
// LAYOUT interleaved times the 8-row interleaved copy (mxq/interleaved.hpp) instead of the packed
// matrix; FORMAT is mxfp4 (default), mxint4 or nvfp4.
//   mxq_gemv_calls ROWS COLS THREADS ITERS [packed|interleaved] [mxfp4|mxint4|nvfp4]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "mxq/format.hpp"
#include "mxq/gemm.hpp"
#include "mxq/interleaved.hpp"
#include "mxq/quantize.hpp"

namespace {

template <class F>
std::vector<double> time_calls(const std::vector<float>& wv, std::size_t rows, std::size_t cols, const std::vector<float>& x,
                               std::vector<float>& y, int threads, std::size_t iters, bool interleaved) {
  const auto w = mxq::quantize<F>(mxq::matrix_view<const float>(wv.data(), rows, cols));
  const mxq::interleaved_matrix<F> wi = interleaved ? mxq::interleaved_matrix<F>(w) : mxq::interleaved_matrix<F>();
  mxq::gemm_options opt;
  opt.threads = threads;
  std::vector<double> us;
  for (std::size_t i = 0; i < 20 + iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (interleaved) mxq::gemv(wi, std::span<const float>(x), std::span<float>(y), opt);
    else mxq::gemv(w, std::span<const float>(x), std::span<float>(y), opt);
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= 20) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  return us;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || argc > 7) {
    std::fprintf(stderr, "usage: mxq_gemv_calls ROWS COLS THREADS ITERS [packed|interleaved] [mxfp4|mxint4|nvfp4]\n");
    return 2;
  }
  const std::string layout = argc > 5 ? argv[5] : "packed", format = argc > 6 ? argv[6] : "mxfp4";
  if (layout != "packed" && layout != "interleaved") {
    std::fprintf(stderr, "mxq_gemv_calls: LAYOUT '%s' must be packed or interleaved\n", layout.c_str());
    return 2;
  }
  if (format != "mxfp4" && format != "mxint4" && format != "nvfp4") {
    std::fprintf(stderr, "mxq_gemv_calls: FORMAT '%s' must be mxfp4, mxint4 or nvfp4\n", format.c_str());
    return 2;
  }
  const auto arg = [&](int i) {
    char* end = nullptr;
    const long v = std::strtol(argv[i], &end, 10);
    if (!end || *end || v <= 0) {
      std::fprintf(stderr, "mxq_gemv_calls: argument %d ('%s') must be a positive integer\n", i, argv[i]);
      std::exit(2);
    }
    return static_cast<std::size_t>(v);
  };
  const std::size_t rows = arg(1), cols = arg(2), iters = arg(4);
  const int threads = static_cast<int>(arg(3));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.02f);  // as the ggml timer's weights
  std::vector<float> wv(rows * cols), x(cols), y(rows);
  for (float& v : wv) v = nd(rng);
  for (float& v : x) v = nd(rng) * 50.0f;
  const bool il = layout == "interleaved";
  std::vector<double> us = format == "mxfp4"    ? time_calls<mxq::mxfp4>(wv, rows, cols, x, y, threads, iters, il)
                           : format == "mxint4" ? time_calls<mxq::mxint4>(wv, rows, cols, x, y, threads, iters, il)
                                                : time_calls<mxq::nvfp4>(wv, rows, cols, x, y, threads, iters, il);
  const double mean = std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size());
  std::nth_element(us.begin(), us.begin() + static_cast<std::ptrdiff_t>(us.size() / 2), us.end());
  std::printf("gemv_%s%s %zux%zu %d threads: median %.1f us mean %.1f us (y0 %.5f)\n", format.c_str(), il ? "_x8" : "", rows, cols, threads,
              us[us.size() / 2], mean, static_cast<double>(y[0]));
}
