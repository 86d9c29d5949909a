// mxq quantize-layer: quantize one linear layer W [out, in] with calibration inputs X [tokens, in]
// by a recipe (--method, the grammar of parse.hpp shared with quantize-model and table), write the
// dequantized weight and print the relative output error ‖Q Xqᵀ − W Xᵀ‖² / ‖W Xᵀ‖² as the last
// line, where Xq = Qa(X / s) is what the quantized layer sees (s: SmoothQuant/AWQ scales folded
// into the layer's input, Qa: --act-format).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/hessian.hpp>
#include <mxq/hadamard.hpp>
#include <mxq/io/npy.hpp>
#include <mxq/metrics.hpp>
#include <mxq/recipe.hpp>

#include "args.hpp"
#include "parse.hpp"

namespace cmd_layer {  // each command apart: mxq_cli is a unity build
namespace {

constexpr const char* usage =
    "usage: mxq quantize-layer --format NAME --method METHOD --weight W.npy --inputs X.npy --out Q.npy\n"
    "       [--act-format NAME] [--alpha 0.5] [--alpha-grid] [--awq-gptq off|verify|grid]\n"
    "       [--act-order] [--order none|blockwise|global] [--refine K] [--static-scales] [--damp 0.01] [--block 128]\n"
    "       [--scale-rule floor|ceil|mse|4over6] [--mse-weights hseq|hinv|hdiag|uniform] [--rounding even|away|zero|stochastic]\n"
    "       [--mse-grid N] [--mse-norm 2] [--rotate hadamard:B | none] [--seed N] [--threads N]\n"
    "  METHOD: rtn, gptq, awq, awq+gptq, sq+rtn, sq+gptq, sq+awq, sq+awq+gptq (steps sq, awq, gptq|rtn joined by '+'),\n"
    "          mr-gptq (gptq --rotate hadamard:32 --act-order --scale-rule mse --mse-grid 100 --mse-norm 2.4)\n"
    "  W: float32 [out, in]; X: float32 [tokens, in]; Q: dequantized float32 [out, in]\n"
    "  --rotate: W and X are rotated (W R, X R), the layer quantized in that basis and Q written back in\n"
    "  the original one (Q_rot R, R = R^-1); the error is the rotated layer's on the rotated (and\n"
    "  --act-format quantized) inputs, as a model runs it\n"
    "  rtn with --scale-rule mse weights each column's error by mean x^2 of the inputs";

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

std::string range_of(const std::vector<float>& s) {
  if (s.empty()) return "-";
  const auto [mn, mx] = std::minmax_element(s.begin(), s.end());
  char b[96];
  std::snprintf(b, sizeof b, "[%.4g, %.4g]", static_cast<double>(*mn), static_cast<double>(*mx));
  return b;
}

int run(const mxq::cli::args_t& raw) {
  // (--help is answered by main.cpp before the command runs.)
  const auto a = mxq::cli::parse_recipe_command(raw, "quantize-layer", {"format", "weight", "inputs", "out", "seed"},
                                                {"format", "method", "weight", "inputs", "out"});
  const std::string format = a.require("format"), method = a.require("method"), out = a.require("out");
  if (!mxq::is_known_format(format)) throw std::runtime_error("unknown format '" + format + "' (see `mxq formats`)");
  mxq::recipe rc = mxq::cli::recipe_from_args(a);
  mxq::cli::check_scale_rule(format, rc);
  const std::filesystem::path out_dir = std::filesystem::path(out).parent_path();
  if (!out_dir.empty() && !std::filesystem::is_directory(out_dir))
    throw std::runtime_error(out + ": the directory " + out_dir.string() + " does not exist");
  if (std::filesystem::is_directory(out)) throw std::runtime_error(out + ": is a directory (--out names the .npy to write)");

  const loaded w = load_matrix(a.require("weight"), "the weight");
  const loaded x = load_matrix(a.require("inputs"), "the inputs");
  if (x.shape[1] != w.shape[1])
    throw std::runtime_error("shape mismatch: weight is [" + std::to_string(w.shape[0]) + ", " + std::to_string(w.shape[1]) +
                             "] but inputs are [" + std::to_string(x.shape[0]) + ", " + std::to_string(x.shape[1]) +
                             "] (expected [tokens, " + std::to_string(w.shape[1]) + "])");
  if (x.shape[0] == 0) throw std::runtime_error("the inputs hold no tokens");
  // A rotation: the layer is quantized in the rotated basis (the recipe's one group cannot rotate).
  const std::optional<mxq::hadamard_rotation> rotation = rc.rotation;
  rc.rotation.reset();
  loaded w_rot, x_rot;  // copies only under a rotation
  if (rotation) {
    w_rot = w, x_rot = x;
    if (w.shape[1] % rotation->block != 0)
      throw std::runtime_error("--rotate hadamard:" + std::to_string(rotation->block) + ": the layer's input dimension " +
                               std::to_string(w.shape[1]) + " is not a multiple of the block");
    mxq::rotate_rows(mxq::matrix_view<float>(w_rot.data.data(), w_rot.shape[0], w_rot.shape[1]), *rotation);
    mxq::rotate_rows(mxq::matrix_view<float>(x_rot.data.data(), x_rot.shape[0], x_rot.shape[1]), *rotation);
  }
  const loaded& wr = rotation ? w_rot : w;
  const loaded& xr = rotation ? x_rot : x;

  std::mt19937_64 gen(static_cast<std::uint64_t>(a.integer("seed", 0)));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  if (rc.weight_opt.rounding == mxq::rounding::stochastic) {
    rc.weight_opt.uniform = [&] { return u(gen); };
    if (rc.gptq) rc.gptq->options.quant.uniform = rc.weight_opt.uniform;
  }
  // Plain RTN with the MSE scale rule: each column's error weighted by mean x² (diag(H) / 2).
  std::vector<float> mean_sq;
  if (!rc.calibrates() && rc.weight_opt.scale_rule == mxq::scale_rule::mse) {
    mxq::hessian_accumulator h(x.shape[1], mxq::hessian_options{false, 0, "inputs"});
    h.add(xr.view());
    const auto hm = h.matrix();
    for (std::size_t j = 0; j < hm.rows; ++j) mean_sq.push_back(hm(j, j) / 2.0f);
    rc.weight_opt.column_weights = mean_sq;
  }

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> notes;
  std::vector<float> q, xq;  // dequantized weight; the inputs the quantized layer sees (empty = X)
  mxq::group_options go;
  go.name = "layer";
  mxq::visit_format(format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    auto r = mxq::quantize_linear<F>(wr.view(), xr.view(), rc, go);
    char line[256];
    notes.push_back("recipe: " + rc.name() + (rotation ? " (" + mxq::llm::rotation_name(rotation) + ")" : ""));
    if (rc.smoothquant) {
      std::snprintf(line, sizeof line, "smoothquant: alpha %.3g, s in %s", static_cast<double>(r.alpha),
                    range_of(r.smooth_scales).c_str());
      notes.emplace_back(line);
    }
    if (rc.awq) {
      std::size_t clipped = 0, groups = 0;
      for (const auto& c : r.clips)
        for (float f : c.shrink) clipped += f < 1.0f ? 1 : 0, ++groups;
      const std::string clip = groups > 0 ? std::to_string(clipped) + "/" + std::to_string(groups) + " groups clipped" : "off";
      std::snprintf(line, sizeof line, "awq: ratio %.2f, s in %s, clip %s", static_cast<double>(r.awq_ratio),
                    range_of(r.awq_scales).c_str(), clip.c_str());
      notes.emplace_back(line);
    }
    for (double l : r.gptq_loss) {
      std::snprintf(line, sizeof line, "gptq: loss %.6e", l);
      notes.emplace_back(line);
    }
    q.assign(r.weights[0].data(), r.weights[0].data() + r.weights[0].size());
    const bool scaled = std::any_of(r.scales.begin(), r.scales.end(), [](float v) { return v != 1.0f; });
    if (scaled || rc.act || rotation) {
      mxq::row_matrix_f xs = mxq::detail::calib::to_eigen(xr.view());
      if (scaled) mxq::divide_columns(mxq::view_of(xs), r.scales);
      if (rc.act) rc.act.apply(mxq::view_of(xs), mxq::view_of(xs));
      xq.assign(xs.data(), xs.data() + xs.size());
    }
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const mxq::matrix_view<const float> qv(q.data(), w.shape[0], w.shape[1]);
  const mxq::matrix_view<const float> xv = xq.empty() ? x.view() : mxq::matrix_view<const float>(xq.data(), x.shape[0], x.shape[1]);
  // W Xᵀ = (W R)(X R)ᵀ: the reference product is the same in either basis.
  const double err = mxq::relative_output_error(w.view(), qv, x.view(), xv);
  if (rotation) mxq::rotate_rows(mxq::matrix_view<float>(q.data(), w.shape[0], w.shape[1]), *rotation);  // Q_rot R
  mxq::npy_save(out, {w.shape[0], w.shape[1]}, q.data());
  std::printf("quantize-layer: %s %s, W [%zu, %zu], X [%zu, %zu], %.3f s\n", method.c_str(), format.c_str(), w.shape[0],
              w.shape[1], x.shape[0], x.shape[1], secs);
  for (const auto& n : notes) std::printf("%s\n", n.c_str());
  std::printf("relative_output_error: %.6e\n", err);
  return 0;
}

const mxq::cli::registrar reg("quantize-layer", "quantize one linear layer by a recipe and report its output error", usage,
                              run);

}  // namespace
}  // namespace cmd_layer
