// mxq fake-quant: quantize then dequantize a float32 .npy array, blocks along the last axis.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include <mxq/format.hpp>
#include <mxq/io/npy.hpp>
#include <mxq/quantize.hpp>

#include "args.hpp"
#include "parse.hpp"

namespace cmd_fake_quant {  // each command apart: mxq_cli is a unity build
namespace {

int run(const mxq::cli::args_t& raw) {
  const auto a = mxq::cli::parse(raw, {"format", "rounding", "scale-rule", "seed"});
  if (a.positional.size() != 2) throw std::runtime_error("usage: mxq fake-quant --format NAME [--rounding even|away|zero|stochastic] [--scale-rule floor|ceil|mse|4over6] IN.npy OUT.npy");
  const std::string format = a.require("format");
  if (!mxq::is_known_format(format)) throw std::runtime_error("unknown format '" + format + "' (see `mxq formats`)");
  mxq::quant_options opt;
  opt.rounding = mxq::cli::parse_rounding(a.get("rounding", "even"));
  opt.scale_rule = mxq::cli::parse_scale_rule(a.get("scale-rule", "floor"));
  std::mt19937_64 gen(static_cast<std::uint64_t>(a.integer("seed", 0)));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  if (opt.rounding == mxq::rounding::stochastic) opt.uniform = [&] { return u(gen); };

  mxq::npy_array in = mxq::npy_load(a.positional[0]);
  if (in.dtype != mxq::npy_dtype::f32 && in.dtype != mxq::npy_dtype::f16)
    throw std::runtime_error(a.positional[0] + ": expected a float32 (or float16) array, found dtype " +
                             std::string(mxq::npy_descr(in.dtype)));
  if (in.shape.empty()) throw std::runtime_error(a.positional[0] + ": a 0-d array has no axis to block along");
  std::vector<float> x = in.to_f32();
  const std::size_t cols = in.shape.back();
  const std::size_t rows = cols == 0 ? 0 : x.size() / cols;
  std::vector<float> y(x.size());
  if (!x.empty())
    mxq::visit_format(format, [&](auto tag) {
      using F = typename decltype(tag)::type;
      mxq::fake_quant<F>(mxq::matrix_view<const float>(x.data(), rows, cols), mxq::matrix_view<float>(y.data(), rows, cols), opt);
    });
  mxq::npy_save(a.positional[1], std::span<const std::size_t>(in.shape), y.data());
  double err = 0, ref = 0;
  std::size_t nonfinite = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(y[i]) || !std::isfinite(x[i])) { ++nonfinite; continue; }
    err += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    ref += double(x[i]) * x[i];
  }
  std::printf("fake-quant %s: %zu values in %zu rows, %zu non-finite, relative_error: %.6e\n", format.c_str(),
              x.size(), rows, nonfinite, ref > 0 ? err / ref : 0.0);
  return 0;
}

const mxq::cli::registrar reg("fake-quant", "quantize then dequantize a float32 .npy (blocks along the last axis)",
                              "usage: mxq fake-quant --format NAME [--rounding even|away|zero|stochastic] [--scale-rule floor|ceil|mse|4over6] [--seed N] IN.npy OUT.npy", run);

}  // namespace
}  // namespace cmd_fake_quant
