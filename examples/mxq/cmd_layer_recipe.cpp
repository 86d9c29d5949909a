// Methods of `mxq quantize-layer` built from the recipe (SmoothQuant -> AWQ -> GPTQ/RTN):
//   awq, awq+gptq, sq+rtn, sq+gptq, sq+awq, sq+awq+gptq   [--alpha 0.5] [--alpha-grid] [--act-format NAME]
//   [--awq-gptq off|verify|grid]
// For one layer the scale s folds into the inputs: the quantized side is Q = Q(W s) evaluated on
// Qa(X / s), so the printed error is ||Q Qa(X/s)^T - W X^T||^2 / ||W X^T||^2.
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/recipe.hpp>

#include "layer_method.hpp"

namespace {

using mxq::cli::layer::problem;
using mxq::cli::layer::solution;


mxq::step::awq::gptq_mode parse_awq_gptq(const std::string& s) {
  if (s == "off") return mxq::step::awq::gptq_mode::off;
  if (s == "verify") return mxq::step::awq::gptq_mode::verify;
  if (s == "grid") return mxq::step::awq::gptq_mode::grid;
  throw std::runtime_error("--awq-gptq expects off, verify or grid, got '" + s + "'");
}

std::string range_of(const std::vector<float>& s) {
  if (s.empty()) return "-";
  const auto [mn, mx] = std::minmax_element(s.begin(), s.end());
  char b[96];
  std::snprintf(b, sizeof b, "[%.4g, %.4g]", static_cast<double>(*mn), static_cast<double>(*mx));
  return b;
}

solution run_recipe(const problem& p, const std::string& method) {
  const auto& a = *p.args;
  const double alpha = a.number("alpha", 0.5);
  if (!(alpha >= 0.0 && alpha <= 1.0)) throw std::runtime_error("--alpha must be in [0, 1]");
  mxq::recipe rc = mxq::parse_recipe(method, static_cast<float>(alpha), a.get("act-format", ""));
  rc.weight_opt = p.quant;
  if (rc.smoothquant && a.has("alpha-grid")) rc.smoothquant->alpha_grid = mxq::default_alpha_grid();
  if (rc.awq) rc.awq->gptq_in_loop = parse_awq_gptq(a.get("awq-gptq", "verify"));
  if (rc.gptq) rc.gptq->options = mxq::cli::layer::gptq_options_from(p);
  mxq::group_options go;
  go.name = "layer";

  solution s;
  mxq::visit_format(p.format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    auto r = mxq::quantize_linear<F>(p.weight, p.inputs, rc, go);
    char line[256];
    s.notes.push_back("recipe: " + rc.name());
    if (rc.smoothquant) {
      std::snprintf(line, sizeof line, "smoothquant: alpha %.3g, s in %s", static_cast<double>(r.alpha),
                    range_of(r.smooth_scales).c_str());
      s.notes.emplace_back(line);
    }
    if (rc.awq) {
      double clipped = 0.0, groups = 0.0;
      for (const auto& c : r.clips)
        for (float f : c.shrink) clipped += f < 1.0f ? 1.0 : 0.0, groups += 1.0;
      std::snprintf(line, sizeof line, "awq: ratio %.2f, s in %s, clip %s", static_cast<double>(r.awq_ratio),
                    range_of(r.awq_scales).c_str(),
                    groups > 0 ? (std::to_string(static_cast<long>(clipped)) + "/" + std::to_string(static_cast<long>(groups)) +
                                  " groups clipped").c_str()
                               : "off");
      s.notes.emplace_back(line);
    }
    for (double l : r.gptq_loss) {
      std::snprintf(line, sizeof line, "gptq: loss %.6e", l);
      s.notes.emplace_back(line);
    }
    const mxq::row_matrix_f& q = r.weights[0];
    s.weight.assign(q.data(), q.data() + q.size());
    // The inputs the quantized layer sees: Qa(X / s) (only when they differ from X).
    const bool scaled = std::any_of(r.scales.begin(), r.scales.end(), [](float v) { return v != 1.0f; });
    if (scaled || rc.act) {
      mxq::row_matrix_f xs = mxq::detail::calib::to_eigen(p.inputs);
      if (scaled) mxq::divide_columns(mxq::view_of(xs), r.scales);
      if (rc.act) rc.act.apply(mxq::view_of(xs), mxq::view_of(xs));
      s.inputs.assign(xs.data(), xs.data() + xs.size());
    }
  });
  return s;
}

const std::set<std::string> kOptions = {"alpha", "act-format", "awq-gptq"};
const std::set<std::string> kSwitches = {"alpha-grid"};

mxq::cli::layer::method recipe_method(const std::string& name, const std::string& summary) {
  return {summary, [name](const problem& p) { return run_recipe(p, name); }, kOptions, kSwitches};
}

const mxq::cli::layer::registrar reg_awq("awq", recipe_method("awq", "AWQ scale grid + clip search, then RTN (llm-awq); [--act-format NAME]"));
const mxq::cli::layer::registrar reg_awq_gptq(
    "awq+gptq", recipe_method("awq+gptq", "AWQ scales (no clip), then GPTQ (--awq-gptq off|verify|grid)"));
const mxq::cli::layer::registrar reg_sq_rtn("sq+rtn", recipe_method("sq+rtn", "SmoothQuant [--alpha 0.5] [--alpha-grid], then RTN; [--act-format NAME]"));
const mxq::cli::layer::registrar reg_sq_gptq("sq+gptq", recipe_method("sq+gptq", "SmoothQuant, then GPTQ"));
const mxq::cli::layer::registrar reg_sq_awq("sq+awq", recipe_method("sq+awq", "SmoothQuant, then AWQ (scale + clip), then RTN"));
const mxq::cli::layer::registrar reg_sq_awq_gptq("sq+awq+gptq",
                                                 recipe_method("sq+awq+gptq", "SmoothQuant, then AWQ scales, then GPTQ"));

}  // namespace
