// mxq quantize-layer: quantize one linear layer W [out, in] with calibration inputs X [tokens, in]
// by a named method (rtn, gptq, or any method registered in layer_method.hpp), write the
// dequantized weight and print the relative output error ‖QXᵀ − WXᵀ‖²/‖WXᵀ‖² as the last line.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/gptq.hpp>
#include <mxq/io/npy.hpp>
#include <mxq/metrics.hpp>
#include <mxq/quantize.hpp>
#include <mxq/stats.hpp>

#include "args.hpp"
#include "layer_method.hpp"

namespace {

using mxq::cli::layer::problem;
using mxq::cli::layer::solution;
using mxq::cli::layer::gptq_options_from;

constexpr const char* usage =
    "usage: mxq quantize-layer --format NAME --method METHOD --weight W.npy --inputs X.npy --out Q.npy\n"
    "       [--act-order] [--order none|blockwise|global] [--static-scales] [--damp 0.01] [--block 128]\n"
    "       [--scale-rule floor|ceil|mse] [--mse-weights hseq|hinv|hdiag|uniform] [--rounding even|away|zero|stochastic]\n"
    "       [--seed N] [--threads N]\n"
    "  W: float32 [out, in]; X: float32 [tokens, in]; Q: dequantized float32 [out, in]";

// A 2-D float32/float16 .npy file with only finite values.
struct loaded {
  std::vector<std::size_t> shape;
  std::vector<float> data;
  mxq::matrix_view<const float> view() const { return {data.data(), shape[0], shape[1]}; }
};

loaded load_matrix(const std::string& path, const char* what) {
  mxq::npy_f32 a = mxq::npy_load_f32(path);
  if (a.shape.size() != 2)
    throw std::runtime_error(path + ": " + what + " must be a 2-D array, found " + std::to_string(a.shape.size()) + "-D");
  for (std::size_t i = 0; i < a.data.size(); ++i)
    if (!std::isfinite(a.data[i]))
      throw std::runtime_error(path + ": " + what + " holds " + (std::isnan(a.data[i]) ? "NaN" : "Inf") + " at [" +
                               std::to_string(i / a.shape[1]) + ", " + std::to_string(i % a.shape[1]) + "]");
  return {std::move(a.shape), std::move(a.data)};
}


// --act-format NAME: the inputs as the quantized model sees them (fake-quantized per token in blocks
// along the input dimension); empty when the flag is absent.
std::vector<float> quantized_inputs(const problem& p) {
  const mxq::activation_quant q = mxq::activation_quant_by_name(p.args->get("act-format", ""));
  if (!q) return {};
  std::vector<float> x(p.inputs.rows * p.inputs.cols);
  q.apply(p.inputs, mxq::matrix_view<float>(x.data(), p.inputs.rows, p.inputs.cols));
  return x;
}

solution run_rtn(const problem& p) {
  solution s;
  s.weight.resize(p.weight.size());
  mxq::quant_options q = p.quant;
  std::vector<float> w;
  if (q.scale_rule == mxq::scale_rule::mse) {  // weighted by mean x² of the calibration inputs
    w = p.mean_sq();
    q.column_weights = w;
  }
  mxq::visit_format(p.format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    mxq::fake_quant<F>(p.weight, mxq::matrix_view<float>(s.weight.data(), p.weight.rows, p.weight.cols), q);
  });
  s.inputs = quantized_inputs(p);
  return s;
}

solution run_gptq(const problem& p) {
  const mxq::gptq_options o = gptq_options_from(p);
  solution s;
  s.inputs = quantized_inputs(p);  // with --act-format, H comes from the quantized inputs
  std::optional<mxq::hessian_accumulator> hq;
  if (!s.inputs.empty()) {
    hq.emplace(p.inputs.cols, mxq::hessian_options{false, 0, "quantized inputs"});
    hq->add(mxq::matrix_view<const float>(s.inputs.data(), p.inputs.rows, p.inputs.cols));
  }
  const auto h = hq ? hq->matrix() : p.hessian().matrix();
  mxq::visit_format(p.format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    auto r = mxq::gptq<F>(p.weight, h, o);
    char line[256];
    std::snprintf(line, sizeof line,
                  "gptq: loss %.6e, damp %.4g x mean diag (retries %d)%s, %zu dead columns, scales %s, %.3f s", r.loss,
                  r.damp_fraction, r.damp_retries, r.rtn_fallback ? " -> RTN fallback" : "", r.dead_columns.size(),
                  r.static_scales ? "static" : "dynamic", r.timings.total());
    s.notes.emplace_back(line);
    s.weight = std::move(r.dequantized);
  });
  return s;
}

const mxq::cli::layer::registrar reg_rtn("rtn", {"round to nearest (the format's scale rule; --act-format)", run_rtn,
                                                  {"act-format"}});
const mxq::cli::layer::registrar reg_gptq(
    "gptq", {"GPTQ (variant A dynamic block scales; --static-scales, --act-order, --damp, --block, --scale-rule mse)",
             run_gptq,
             {"damp", "block", "order", "mse-weights", "threads", "act-format"},
             {"act-order", "static-scales"}});

int run(const mxq::cli::args_t& raw) {
  const auto& methods = mxq::cli::layer::registry();
  std::set<std::string> options = {"format", "method", "weight", "inputs", "out", "scale-rule", "rounding", "seed"};
  std::set<std::string> switches;
  for (const auto& [name, m] : methods) {
    options.insert(m.options.begin(), m.options.end());
    switches.insert(m.switches.begin(), m.switches.end());
  }
  switches.insert("help");
  const auto a = mxq::cli::parse(raw, options, switches);
  if (a.has("help")) {
    std::printf("%s\nmethods:\n", usage);
    for (const auto& [name, m] : methods) std::printf("  %-12s %s\n", name.c_str(), m.summary.c_str());
    return 0;
  }
  if (!a.positional.empty())
    throw std::runtime_error("unexpected argument '" + a.positional[0] +
                             "' (an option missing its value? see mxq quantize-layer --help)");
  for (const char* req : {"format", "method", "weight", "inputs", "out"})
    if (!a.values.count(req))
      throw std::runtime_error(std::string("missing required option --") + req + " (see mxq quantize-layer --help)");
  const std::string format = a.require("format"), method_name = a.require("method");
  if (!mxq::is_known_format(format)) throw std::runtime_error("unknown format '" + format + "' (see `mxq formats`)");
  const auto it = methods.find(method_name);
  if (it == methods.end()) {
    std::string known;
    for (const auto& [name, m] : methods) known += (known.empty() ? "" : ", ") + name;
    throw std::runtime_error("unknown method '" + method_name + "' (expected one of: " + known + ")");
  }

  const loaded w = load_matrix(a.require("weight"), "the weight");
  const loaded x = load_matrix(a.require("inputs"), "the inputs");
  if (x.shape[1] != w.shape[1])
    throw std::runtime_error("shape mismatch: weight is [" + std::to_string(w.shape[0]) + ", " + std::to_string(w.shape[1]) +
                             "] but inputs are [" + std::to_string(x.shape[0]) + ", " + std::to_string(x.shape[1]) +
                             "] (expected [tokens, " + std::to_string(w.shape[1]) + "])");
  if (x.shape[0] == 0) throw std::runtime_error("the inputs hold no tokens");

  problem p;
  p.format = format;
  p.weight = w.view();
  p.inputs = x.view();
  p.args = &a;
  p.quant.scale_rule = mxq::parse_scale_rule(a.get("scale-rule", "floor"));
  p.quant.rounding = mxq::parse_rounding(a.get("rounding", "even"));
  std::mt19937_64 gen(static_cast<std::uint64_t>(a.integer("seed", 0)));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  if (p.quant.rounding == mxq::rounding::stochastic) p.quant.uniform = [&] { return u(gen); };

  const auto t0 = std::chrono::steady_clock::now();
  solution s = it->second.run(p);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s.weight.size() != w.data.size())
    throw std::runtime_error("method '" + method_name + "' returned " + std::to_string(s.weight.size()) + " weights for a [" +
                             std::to_string(w.shape[0]) + ", " + std::to_string(w.shape[1]) + "] layer");
  if (!s.inputs.empty() && s.inputs.size() != x.data.size())
    throw std::runtime_error("method '" + method_name + "' returned inputs of the wrong size");
  const mxq::matrix_view<const float> q(s.weight.data(), w.shape[0], w.shape[1]);
  const mxq::matrix_view<const float> xq = s.inputs.empty() ? x.view() : mxq::matrix_view<const float>(s.inputs.data(), x.shape[0], x.shape[1]);
  const double err = mxq::relative_output_error(w.view(), q, x.view(), xq);
  mxq::npy_save(a.require("out"), {w.shape[0], w.shape[1]}, s.weight.data());
  std::printf("quantize-layer: %s %s, W [%zu, %zu], X [%zu, %zu], %.3f s\n", method_name.c_str(), format.c_str(),
              w.shape[0], w.shape[1], x.shape[0], x.shape[1], secs);
  for (const auto& n : s.notes) std::printf("%s\n", n.c_str());
  std::printf("relative_output_error: %.6e\n", err);
  return 0;
}

const mxq::cli::registrar reg("quantize-layer", "quantize one linear layer (rtn, gptq, ...) and report its output error", run);

}  // namespace
