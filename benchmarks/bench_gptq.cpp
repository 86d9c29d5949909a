// GPTQ speed: a 4096 x 4096 layer with a 4096² Hessian, 2 threads, split into Cholesky / inverse /
// column loop (counters, seconds per iteration), and the ratio to RTN of the same matrix measured in
// the same process (BM_rtn_* below, and the `x_rtn` counter).
//
//   mxq_bench --benchmark_filter='gptq|rtn|hessian' --benchmark_min_time=0.05
//
// The Hessian comes from 8192 synthetic correlated tokens (2/n XᵀX): building it from 128 x 2048
// tokens would take ~30 s of set-up and GPTQ's cost does not depend on how many tokens made H.
// BM_hessian_add times one 2048-token calibration sequence (x 128 for the full calibration set).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <random>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/gptq.hpp>
#include <mxq/hessian.hpp>
#include <mxq/quantize.hpp>

namespace {

constexpr int bench_threads = 2;

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Correlated activations with uneven channel scales: a low-rank mix plus independent noise.
row_major synthetic_tokens(std::size_t tokens, std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  constexpr Eigen::Index rank = 64;
  row_major z(static_cast<Eigen::Index>(tokens), rank), mix(rank, static_cast<Eigen::Index>(n));
  for (auto& v : z.reshaped()) v = nd(gen);
  for (auto& v : mix.reshaped()) v = nd(gen) * 0.3f;
  row_major x = z * mix;
  for (Eigen::Index t = 0; t < x.rows(); ++t)
    for (Eigen::Index j = 0; j < x.cols(); ++j) x(t, j) += nd(gen) * (1.0f + static_cast<float>(j % 13) * 0.25f);
  return x;
}

struct layer_data {
  std::size_t n;
  std::vector<float> w;
  Eigen::MatrixXf h;
  explicit layer_data(std::size_t size) : n(size), w(size * size) {
    std::mt19937 gen(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (auto& v : w) v = nd(gen);
    const row_major x = synthetic_tokens(8192, n, 2);
    mxq::hessian_accumulator acc(n, {false, bench_threads, "bench"});
    acc.add(mxq::matrix_view<const float>(x.data(), static_cast<std::size_t>(x.rows()), n));
    h = acc.eigen();
  }
  mxq::matrix_view<const float> wv() const { return {w.data(), n, n}; }
  mxq::matrix_view<const float> hv() const { return {h.data(), n, n}; }
};

const layer_data& data(std::size_t n) {
  static layer_data d4096(4096);
  static layer_data d1024(1024);
  return n == 4096 ? d4096 : d1024;
}

template <class F>
double rtn_seconds(const layer_data& d) {
  std::vector<float> q(d.w.size());
  const auto t0 = std::chrono::steady_clock::now();
  mxq::fake_quant<F>(d.wv(), mxq::matrix_view<float>(q.data(), d.n, d.n));
  benchmark::DoNotOptimize(q.data());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class F>
void BM_gptq(benchmark::State& state) {
  const layer_data& d = data(static_cast<std::size_t>(state.range(0)));
  mxq::gptq_options o;
  o.threads = bench_threads;
  if (state.range(1) == 1) o.quant.scale_rule = mxq::scale_rule::mse;
  if (state.range(1) == 2) o.order = mxq::act_order::global;
  mxq::gptq_timings sum;
  double total = 0.0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = mxq::gptq<F>(d.wv(), d.hv(), o);
    total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(r.dequantized.data());
    sum.prepare_s += r.timings.prepare_s;
    sum.cholesky_s += r.timings.cholesky_s;
    sum.inverse_s += r.timings.inverse_s;
    sum.loop_s += r.timings.loop_s;
  }
  const double it = static_cast<double>(state.iterations());
  state.counters["prepare_s"] = sum.prepare_s / it;
  state.counters["cholesky_s"] = sum.cholesky_s / it;
  state.counters["inverse_s"] = sum.inverse_s / it;
  state.counters["loop_s"] = sum.loop_s / it;
  double rtn = 1e30;
  for (int i = 0; i < 3; ++i) rtn = std::min(rtn, rtn_seconds<F>(d));
  state.counters["rtn_s"] = rtn;
  state.counters["x_rtn"] = total / it / rtn;
}

template <class F>
void BM_rtn(benchmark::State& state) {
  const layer_data& d = data(static_cast<std::size_t>(state.range(0)));
  std::vector<float> q(d.w.size());
  for (auto _ : state) {
    mxq::fake_quant<F>(d.wv(), mxq::matrix_view<float>(q.data(), d.n, d.n));
    benchmark::DoNotOptimize(q.data());
  }
}

void BM_hessian_add(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const row_major x = synthetic_tokens(2048, n, 3);
  mxq::hessian_accumulator acc(n, {false, bench_threads, "bench"});
  for (auto _ : state) acc.add(mxq::matrix_view<const float>(x.data(), 2048, n));
  state.counters["tokens_per_s"] = benchmark::Counter(2048.0 * static_cast<double>(state.iterations()),
                                                      benchmark::Counter::kIsRate);
}

// args: {size, variant}: 0 = default (variant A), 1 = scale_rule mse, 2 = act-order (global, static scales)
BENCHMARK_TEMPLATE(BM_gptq, mxq::mxfp4)->Args({4096, 0})->Args({4096, 1})->Args({4096, 2})->Args({1024, 0})
    ->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_TEMPLATE(BM_gptq, mxq::int4_g128)->Args({4096, 0})->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_TEMPLATE(BM_gptq, mxq::nvfp4)->Args({4096, 0})->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK_TEMPLATE(BM_rtn, mxq::mxfp4)->Arg(4096)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_rtn, mxq::int4_g128)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(BM_rtn, mxq::nvfp4)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_hessian_add)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);

}  // namespace
