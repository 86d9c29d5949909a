// Quantize fp32 -> packed per format (SIMD path and the scalar oracle), fake_quant, next to a
// memcpy of the same input bytes in the same run. One thread unless the name ends in
// /threads:<t> (quant_options::threads; the memcpy then copies t row ranges on t threads of the
// same pool, so both sides of the ratio use the same cores).
//   BM_quantize/<format>/<rows>x<cols>[/threads:2]
//                                              mxq::quantize_into (SIMD kernels where they exist)
//                                              into a reused packed matrix, as memcpy reuses its
//                                              destination
//   BM_quantize_alloc/<format>/<rows>x<cols>   mxq::quantize, allocating (and zero-filling) the
//                                              packed matrix every call
//   BM_quantize_scalar/<format>/<rows>x<cols>  mxq::reference::quantize (the scalar oracle)
//   BM_fake_quant/<format>/<rows>x<cols>       mxq::fake_quant, out of place
//   BM_memcpy/<rows>x<cols>[/threads:2]        std::memcpy of rows*cols*4 bytes
// bytes_per_second counts fp32 input bytes everywhere, so the rates compare directly.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mxq/format.hpp"
#include "mxq/kernel/thread.hpp"
#include "mxq/quantize.hpp"

namespace {

struct shape {
  std::size_t rows, cols;
  std::string name() const { return std::to_string(rows) + "x" + std::to_string(cols); }
};
const shape kShapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};

const std::vector<float>& input(std::size_t n) {
  static std::vector<float> data;
  if (data.size() < n) {
    std::mt19937 rng(42);
    std::normal_distribution<float> d(0.0f, 1.0f);
    data.resize(n);
    for (float& v : data) v = d(rng);
  }
  return data;
}

enum class mode { into, alloc, scalar };

template <class F>
void bm_quantize(benchmark::State& st, shape s, mode m, int threads) {
  const auto& x = input(s.rows * s.cols);
  const mxq::matrix_view<const float> v(x.data(), s.rows, s.cols);
  mxq::packed_matrix<F> q = mxq::quantize<F>(v);
  mxq::quant_options opt;
  opt.threads = threads;
  for (auto _ : st) {
    if (m == mode::into) {
      mxq::quantize_into(v, q, opt);
    } else {
      auto r = m == mode::scalar ? mxq::reference::quantize<F>(v) : mxq::quantize<F>(v);
      benchmark::DoNotOptimize(r.code_bytes().data());
    }
    benchmark::DoNotOptimize(q.code_bytes().data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(s.rows * s.cols * 4));
}

template <class F>
void bm_fake_quant(benchmark::State& st, shape s) {
  const auto& x = input(s.rows * s.cols);
  std::vector<float> out(s.rows * s.cols, 1.0f);
  for (auto _ : st) {
    mxq::fake_quant<F>(mxq::matrix_view<const float>(x.data(), s.rows, s.cols), mxq::matrix_view<float>(out.data(), s.rows, s.cols));
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(s.rows * s.cols * 4));
}

void bm_memcpy(benchmark::State& st, shape s, int threads) {
  const auto& x = input(s.rows * s.cols);
  std::vector<float> out(s.rows * s.cols, 1.0f);
  for (auto _ : st) {
    mxq::kernel::parallel_ranges(s.rows, threads, 1, [&](std::size_t r0, std::size_t r1) {
      std::memcpy(out.data() + r0 * s.cols, x.data() + r0 * s.cols, (r1 - r0) * s.cols * sizeof(float));
    });
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(s.rows * s.cols * 4));
}

template <class F>
void register_format() {
  const std::string f(mxq::format_traits<F>::name);
  for (const shape& s : kShapes) {
    benchmark::RegisterBenchmark(("BM_quantize/" + f + "/" + s.name()).c_str(), bm_quantize<F>, s, mode::into, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("BM_quantize/" + f + "/" + s.name() + "/threads:2").c_str(), bm_quantize<F>, s, mode::into, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("BM_quantize_alloc/" + f + "/" + s.name()).c_str(), bm_quantize<F>, s, mode::alloc, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("BM_quantize_scalar/" + f + "/" + s.name()).c_str(), bm_quantize<F>, s, mode::scalar, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("BM_fake_quant/" + f + "/" + s.name()).c_str(), bm_fake_quant<F>, s)->Unit(benchmark::kMillisecond)->UseRealTime();
  }
}

const int registered = [] {
  for (const shape& s : kShapes) {
    benchmark::RegisterBenchmark(("BM_memcpy/" + s.name()).c_str(), bm_memcpy, s, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
    benchmark::RegisterBenchmark(("BM_memcpy/" + s.name() + "/threads:2").c_str(), bm_memcpy, s, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
  }
  register_format<mxq::mxfp4>();
  register_format<mxq::mxint4>();
  register_format<mxq::nvfp4>();
  register_format<mxq::mxfp6_e2m3>();
  register_format<mxq::mxfp8_e4m3>();
  register_format<mxq::mxint8>();
  return 0;
}();

}  // namespace
