// AWQ and SmoothQuant on a 4096x4096 linear with 512 calibration tokens, each reported as a ratio
// to one RTN pass (fake_quant) over the same weights measured in the same run (counter x_rtn).
//
//   ./mxq_bench --benchmark_filter='awq|smoothquant|rtn_4096'
#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <random>
#include <string>

#include <mxq/awq.hpp>
#include <mxq/format.hpp>
#include <mxq/smoothquant.hpp>

namespace {

constexpr Eigen::Index kOut = 4096, kIn = 4096, kTokens = 512;

struct awq_bench_data {
  mxq::row_matrix_f w, x;
  awq_bench_data() : w(kOut, kIn), x(kTokens, kIn) {
    std::mt19937 g(7);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = 0.02f * n(g);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = n(g);
    for (Eigen::Index j = 0; j < kIn; j += 97) x.col(j) *= 30.0f;  // a few outlier channels
  }
};
const awq_bench_data& data() {
  static const awq_bench_data d;
  return d;
}

using clock_type = std::chrono::steady_clock;

// Seconds of one RTN pass over the weights (best of 10, robust to a busy machine), once per format per run.
template <class F>
double rtn_seconds() {
  static const double s = [] {
    mxq::row_matrix_f out(kOut, kIn);
    double best = 1e30;
    for (int i = 0; i < 10; ++i) {
      const auto t0 = clock_type::now();
      mxq::fake_quant<F>(mxq::view_of(data().w), mxq::view_of(out));
      benchmark::DoNotOptimize(out.data());
      best = std::min(best, std::chrono::duration<double>(clock_type::now() - t0).count());
    }
    return best;
  }();
  return s;
}

// Runs fn per iteration, timing it, and reports the mean as a multiple of one RTN pass.
template <class F, class Fn>
void run_vs_rtn(benchmark::State& state, Fn&& fn) {
  const double rtn = rtn_seconds<F>();
  double total = 0.0;
  for (auto _ : state) {
    const auto t0 = clock_type::now();
    fn();
    total += std::chrono::duration<double>(clock_type::now() - t0).count();
  }
  state.counters["x_rtn"] = total / static_cast<double>(state.iterations()) / rtn;
  state.counters["rtn_ms"] = rtn * 1e3;
}

template <class F>
void BM_rtn_4096(benchmark::State& state) {
  mxq::row_matrix_f out(kOut, kIn);
  run_vs_rtn<F>(state, [&] {
    mxq::fake_quant<F>(mxq::view_of(data().w), mxq::view_of(out));
    benchmark::DoNotOptimize(out.data());
  });
}

template <class F>
void BM_awq_scale_search(benchmark::State& state) {
  const mxq::matrix_view<const float> g[] = {mxq::view_of(data().w)};
  run_vs_rtn<F>(state, [&] {
    auto r = mxq::awq_search_scale<F>(mxq::view_of(data().x), g);
    benchmark::DoNotOptimize(r.scales.data());
  });
}

template <class F>
void BM_awq_clip_search(benchmark::State& state) {
  run_vs_rtn<F>(state, [&] {
    auto r = mxq::awq_search_clip<F>(mxq::view_of(data().w), mxq::view_of(data().x));
    benchmark::DoNotOptimize(r.max_val.data());
  });
}

// Scale search + fold + clip search (AWQ for RTN), without the final RTN.
template <class F>
void BM_awq_transform(benchmark::State& state) {
  const mxq::matrix_view<const float> g[] = {mxq::view_of(data().w)};
  run_vs_rtn<F>(state, [&] {
    auto r = mxq::awq_transform<F>(mxq::view_of(data().x), g);
    benchmark::DoNotOptimize(r.weights[0].data());
  });
}

// SmoothQuant alpha = 0.5: activation max, weight column max, scales and the fold into W.
template <class F>
void BM_smoothquant(benchmark::State& state) {
  const mxq::matrix_view<const float> g[] = {mxq::view_of(data().w)};
  mxq::row_matrix_f ws(kOut, kIn);
  run_vs_rtn<F>(state, [&] {
    auto r = mxq::smoothquant_search<F>(mxq::view_of(data().x), g);
    ws = data().w;
    mxq::scale_columns(mxq::view_of(ws), r.scales);
    benchmark::DoNotOptimize(ws.data());
  });
}

// SmoothQuant alpha search over 21 alphas with MXINT8 activations in the loss (W4A8).
template <class F>
void BM_smoothquant_alpha_search(benchmark::State& state) {
  const mxq::matrix_view<const float> g[] = {mxq::view_of(data().w)};
  mxq::smoothquant_options o;
  o.alpha_grid = mxq::default_alpha_grid();
  o.act = mxq::make_activation_quant<mxq::mxint8>();
  run_vs_rtn<F>(state, [&] {
    auto r = mxq::smoothquant_search<F>(mxq::view_of(data().x), g, o);
    benchmark::DoNotOptimize(r.scales.data());
  });
}

}  // namespace

BENCHMARK_TEMPLATE(BM_rtn_4096, mxq::mxint4)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_rtn_4096, mxq::mxfp4)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_awq_scale_search, mxq::mxint4)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_awq_scale_search, mxq::mxfp4)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_awq_clip_search, mxq::mxint4)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_awq_clip_search, mxq::mxfp4)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_awq_transform, mxq::mxint4)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_smoothquant, mxq::mxint4)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_smoothquant_alpha_search, mxq::mxint4)->Unit(benchmark::kMillisecond)->Iterations(1);
