// MX GEMV / GEMM next to Eigen's FP32 GEMV / GEMM on the dequantized matrix, in the same run.
//   BM_gemv/<format>/<rows>x<cols>/threads:<t>             mxq::gemv, default options (int8
//                                                          activations for 4-bit formats)
//   BM_gemv_f32act/<format>/<rows>x<cols>/threads:<t>      mxq::gemv with FP32 activations
//   BM_gemv_eigen_fp32/<rows>x<cols>/threads:<t>           Eigen y = W x, W row-major FP32
//   BM_gemm/<format>/<rows>x<cols>x<batch>/threads:<t>     mxq::gemm, Y[batch, rows] = X W^T
//   BM_gemm_eigen_fp32/<rows>x<cols>x<batch>/threads:<t>   Eigen Y = X W^T
//   BM_gemv_cold/<format>/4096x4096/threads:<t>, BM_gemv_eigen_fp32_cold/4096x4096/threads:<t>
//                                   the same GEMVs cycling through copies of the weights that
//                                   total >= 1 GiB, so no iteration finds its matrix in the
//                                   last-level cache (batch-1 decoding of a model larger than
//                                   the cache); the plain ones reuse one cache-resident matrix
// Threads: mxq splits output rows over std::threads (gemm_options::threads). Eigen is built
// without OpenMP here, so its multi-threaded baseline splits the output rows over the same
// number of std::threads, each running Eigen's single-threaded kernel on its slice.
// Weights and activations are fixed-seed Gaussians; the weights stay the same across
// iterations (an L3-resident 4-bit matrix, as in the ggml measurement in the shared notes).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mxq/format.hpp"
#include "mxq/gemm.hpp"
#include "mxq/quantize.hpp"

namespace {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct shape {
  std::size_t rows, cols;
  std::string name() const { return std::to_string(rows) + "x" + std::to_string(cols); }
};
const shape kShapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
const int kThreads[] = {1, 2};

std::vector<float> gaussian(std::size_t n, unsigned seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

const std::vector<float>& weights(shape s) {
  static std::map<std::pair<std::size_t, std::size_t>, std::unique_ptr<std::vector<float>>> cache;
  auto& p = cache[{s.rows, s.cols}];
  if (!p) p = std::make_unique<std::vector<float>>(gaussian(s.rows * s.cols, 1, 0.02f));
  return *p;
}

template <class F>
const mxq::packed_matrix<F>& packed(shape s) {
  static std::map<std::pair<std::size_t, std::size_t>, std::unique_ptr<mxq::packed_matrix<F>>> cache;
  auto& p = cache[{s.rows, s.cols}];
  if (!p) p = std::make_unique<mxq::packed_matrix<F>>(mxq::quantize<F>(mxq::matrix_view<const float>(weights(s).data(), s.rows, s.cols)));
  return *p;
}

const row_matrix& dequantized(shape s) {
  static std::map<std::pair<std::size_t, std::size_t>, std::unique_ptr<row_matrix>> cache;
  auto& p = cache[{s.rows, s.cols}];
  if (!p) {
    p = std::make_unique<row_matrix>(s.rows, s.cols);
    mxq::dequantize(packed<mxq::mxfp4>(s), mxq::matrix_view<float>(p->data(), s.rows, s.cols));
  }
  return *p;
}

template <class F>
void bm_gemv(benchmark::State& st, shape s, int threads, mxq::activation_precision act) {
  const auto& w = packed<F>(s);
  const std::vector<float> x = gaussian(s.cols, 2, 1.0f);
  std::vector<float> y(s.rows);
  mxq::gemm_options opt;
  opt.threads = threads;
  opt.activations = act;
  for (auto _ : st) {
    mxq::gemv(w, std::span<const float>(x), std::span<float>(y), opt);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(w.storage_bytes()), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_gemv_eigen(benchmark::State& st, shape s, int threads) {
  const row_matrix& w = dequantized(s);
  const std::vector<float> xv = gaussian(s.cols, 2, 1.0f);
  const Eigen::Map<const Eigen::VectorXf> x(xv.data(), static_cast<Eigen::Index>(s.cols));
  Eigen::VectorXf y(static_cast<Eigen::Index>(s.rows));
  for (auto _ : st) {
    mxq::kernel::parallel_ranges(s.rows, threads, 16, [&](std::size_t r0, std::size_t r1) {
      const auto n = static_cast<Eigen::Index>(r1 - r0);
      y.segment(static_cast<Eigen::Index>(r0), n).noalias() = w.middleRows(static_cast<Eigen::Index>(r0), n) * x;
    });
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(s.rows * s.cols * 4), benchmark::Counter::kIsIterationInvariantRate);
}

constexpr std::size_t kColdBytes = std::size_t{1} << 30;

template <class F>
void bm_gemv_cold(benchmark::State& st, shape s, int threads) {
  const auto& w0 = packed<F>(s);
  const std::size_t copies = std::max<std::size_t>(2, kColdBytes / w0.storage_bytes() + 1);
  const std::vector<mxq::packed_matrix<F>> ws(copies, w0);
  const std::vector<float> x = gaussian(s.cols, 2, 1.0f);
  std::vector<float> y(s.rows);
  mxq::gemm_options opt;
  opt.threads = threads;
  std::size_t i = 0;
  for (auto _ : st) {
    mxq::gemv(ws[i++ % copies], std::span<const float>(x), std::span<float>(y), opt);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(w0.storage_bytes()), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["copies"] = static_cast<double>(copies);
}

void bm_gemv_eigen_cold(benchmark::State& st, shape s, int threads) {
  const row_matrix& w0 = dequantized(s);
  const std::size_t copies = std::max<std::size_t>(2, kColdBytes / (s.rows * s.cols * 4) + 1);
  const std::vector<row_matrix> ws(copies, w0);
  const std::vector<float> xv = gaussian(s.cols, 2, 1.0f);
  const Eigen::Map<const Eigen::VectorXf> x(xv.data(), static_cast<Eigen::Index>(s.cols));
  Eigen::VectorXf y(static_cast<Eigen::Index>(s.rows));
  std::size_t i = 0;
  for (auto _ : st) {
    const row_matrix& w = ws[i++ % copies];
    mxq::kernel::parallel_ranges(s.rows, threads, 16, [&](std::size_t r0, std::size_t r1) {
      const auto n = static_cast<Eigen::Index>(r1 - r0);
      y.segment(static_cast<Eigen::Index>(r0), n).noalias() = w.middleRows(static_cast<Eigen::Index>(r0), n) * x;
    });
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(s.rows * s.cols * 4), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["copies"] = static_cast<double>(copies);
}

template <class F>
void bm_gemm(benchmark::State& st, shape s, std::size_t batch, int threads) {
  const auto& w = packed<F>(s);
  const std::vector<float> x = gaussian(batch * s.cols, 3, 1.0f);
  std::vector<float> y(batch * s.rows);
  mxq::gemm_options opt;
  opt.threads = threads;
  for (auto _ : st) {
    mxq::gemm(w, mxq::matrix_view<const float>(x.data(), batch, s.cols), mxq::matrix_view<float>(y.data(), batch, s.rows), opt);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * static_cast<double>(s.rows * s.cols * batch) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_gemm_eigen(benchmark::State& st, shape s, std::size_t batch, int threads) {
  const row_matrix& w = dequantized(s);
  const std::vector<float> xv = gaussian(batch * s.cols, 3, 1.0f);
  const Eigen::Map<const row_matrix> x(xv.data(), static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(s.cols));
  row_matrix y(static_cast<Eigen::Index>(batch), static_cast<Eigen::Index>(s.rows));
  for (auto _ : st) {
    mxq::kernel::parallel_ranges(s.rows, threads, 64, [&](std::size_t r0, std::size_t r1) {
      const auto n = static_cast<Eigen::Index>(r1 - r0);
      y.middleCols(static_cast<Eigen::Index>(r0), n).noalias() = x * w.middleRows(static_cast<Eigen::Index>(r0), n).transpose();
    });
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * static_cast<double>(s.rows * s.cols * batch) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

std::string suffix(int t) { return "/threads:" + std::to_string(t); }

template <class F>
void register_gemv(bool f32_variant) {
  const std::string f(mxq::format_traits<F>::name);
  for (const shape& s : kShapes)
    for (int t : kThreads) {
      benchmark::RegisterBenchmark(("BM_gemv/" + f + "/" + s.name() + suffix(t)).c_str(), bm_gemv<F>, s, t,
                                   mxq::activation_precision::automatic)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
      if (f32_variant)
        benchmark::RegisterBenchmark(("BM_gemv_f32act/" + f + "/" + s.name() + suffix(t)).c_str(), bm_gemv<F>, s, t,
                                     mxq::activation_precision::f32)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
    }
}

template <class F>
void register_gemm(std::initializer_list<std::size_t> batches) {
  const std::string f(mxq::format_traits<F>::name);
  for (const shape& s : kShapes)
    for (std::size_t b : batches)
      for (int t : kThreads)
        benchmark::RegisterBenchmark(("BM_gemm/" + f + "/" + s.name() + "x" + std::to_string(b) + suffix(t)).c_str(), bm_gemm<F>, s, b, t)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
}

const int registered = [] {
  for (const shape& s : kShapes)
    for (int t : kThreads)
      benchmark::RegisterBenchmark(("BM_gemv_eigen_fp32/" + s.name() + suffix(t)).c_str(), bm_gemv_eigen, s, t)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
  register_gemv<mxq::mxfp4>(true);
  register_gemv<mxq::mxint4>(true);
  register_gemv<mxq::nvfp4>(true);
  register_gemv<mxq::mxint8>(false);
  register_gemv<mxq::mxfp8_e4m3>(false);
  register_gemv<mxq::mxfp6_e2m3>(false);
  for (const shape& s : kShapes)
    for (std::size_t b : {8, 64, 256})
      for (int t : kThreads)
        benchmark::RegisterBenchmark(("BM_gemm_eigen_fp32/" + s.name() + "x" + std::to_string(b) + suffix(t)).c_str(), bm_gemm_eigen, s, b, t)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
  for (int t : kThreads) {
    const shape sq{4096, 4096};
    benchmark::RegisterBenchmark(("BM_gemv_eigen_fp32_cold/" + sq.name() + suffix(t)).c_str(), bm_gemv_eigen_cold, sq, t)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_gemv_cold/mxfp4/" + sq.name() + suffix(t)).c_str(), bm_gemv_cold<mxq::mxfp4>, sq, t)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_gemv_cold/mxint4/" + sq.name() + suffix(t)).c_str(), bm_gemv_cold<mxq::mxint4>, sq, t)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
  register_gemm<mxq::mxfp4>({8, 64, 256});
  register_gemm<mxq::mxint4>({8, 64, 256});
  register_gemm<mxq::nvfp4>({64});
  register_gemm<mxq::mxfp8_e4m3>({64});
  return 0;
}();

}  // namespace
