// The mxq tool's one grammar for methods and algorithm flags, shared by every command
// (quantize-layer, quantize-model, table): the library takes typed options (mxq::recipe and the
// steps' option structs); names live here.
//
//   --method  '+'-separated steps in application order among sq (smoothquant), awq, gptq, rtn:
//             rtn, gptq, awq, awq+gptq, sq+rtn, sq+gptq, sq+awq, sq+awq+gptq (no gptq: RTN finishes)
//   --act-format NAME        activation format (none)
//   --alpha A  --alpha-grid  SmoothQuant migration strength / search the 21-point grid
//   --awq-gptq off|verify|grid   AWQ before GPTQ (default off, the reference recipe)
//   --damp --block --act-order --order none|blockwise|global --static-scales --mse-weights
//   --scale-rule floor|ceil|mse|4over6  --rounding even|away|zero|stochastic
//   --refine K   coordinate-descent passes over GPTQ's codes (refine.hpp)
//   --mse-grid N --mse-norm P   scale_rule::mse's FP-Quant grid (N shrinks) and error exponent
//   --rotate hadamard:B|none    block Hadamard rotation of every linear's input (a whole-model step;
//                               quantize-layer applies it to its one layer)
//   --method mr-gptq   MR-GPTQ (FP-Quant): gptq with --rotate hadamard:32, --act-order (static
//                      scales), --scale-rule mse --mse-grid 100 --mse-norm 2.4, each overridable
#pragma once
#include <array>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <mxq/format/registry.hpp>
#include <mxq/gptq.hpp>
#include <mxq/llm/quantize_model.hpp>
#include <mxq/quant/options.hpp>
#include <mxq/recipe.hpp>
#include <mxq/stats.hpp>

#include "args.hpp"

namespace mxq::cli {

// A name -> value table lookup with a message listing the accepted names.
template <class T, std::size_t N>
T lookup(const std::array<std::pair<std::string_view, T>, N>& table, std::string_view s, const char* what) {
  for (const auto& [name, v] : table)
    if (name == s) return v;
  std::string known;
  for (const auto& [name, v] : table) known += (known.empty() ? "" : ", ") + std::string(name);
  throw std::runtime_error("unknown " + std::string(what) + " '" + std::string(s) + "' (expected " + known + ")");
}

inline constexpr std::array<std::pair<std::string_view, rounding>, 7> rounding_names{{
    {"even", rounding::nearest_even},
    {"nearest_even", rounding::nearest_even},
    {"away", rounding::nearest_away},
    {"nearest_away", rounding::nearest_away},
    {"zero", rounding::toward_zero},
    {"toward_zero", rounding::toward_zero},
    {"stochastic", rounding::stochastic},
}};
inline constexpr std::array<std::pair<std::string_view, scale_rule>, 5> scale_rule_names{{
    {"floor", scale_rule::floor}, {"ceil", scale_rule::ceil}, {"mse", scale_rule::mse}, {"4over6", scale_rule::four_over_six},
    {"four_over_six", scale_rule::four_over_six}}};
inline constexpr std::array<std::pair<std::string_view, act_order>, 6> act_order_names{{
    {"none", act_order::none}, {"off", act_order::none}, {"blockwise", act_order::blockwise}, {"block", act_order::blockwise}, {"global", act_order::global}, {"static", act_order::global}}};
inline constexpr std::array<std::pair<std::string_view, mse_weighting>, 4> mse_weighting_names{{
    {"hseq", mse_weighting::hseq}, {"hinv", mse_weighting::hinv}, {"hdiag", mse_weighting::hdiag},
    {"uniform", mse_weighting::uniform}}};
inline constexpr std::array<std::pair<std::string_view, step::awq::gptq_mode>, 3> awq_gptq_names{{
    {"off", step::awq::gptq_mode::off}, {"verify", step::awq::gptq_mode::verify}, {"grid", step::awq::gptq_mode::grid}}};

inline rounding parse_rounding(std::string_view s) { return lookup(rounding_names, s, "rounding"); }
inline scale_rule parse_scale_rule(std::string_view s) { return lookup(scale_rule_names, s, "scale rule"); }
inline act_order parse_act_order(std::string_view s) { return lookup(act_order_names, s, "act-order"); }
inline mse_weighting parse_mse_weighting(std::string_view s) { return lookup(mse_weighting_names, s, "mse weighting"); }

// The method grammar: which steps, in application order. Throws on an unknown step or a wrong order.
inline recipe parse_method(std::string_view method) {
  enum class part { sq, awq, gptq, rtn };
  static constexpr std::array<std::pair<std::string_view, part>, 5> steps{
      {{"sq", part::sq}, {"smoothquant", part::sq}, {"awq", part::awq}, {"gptq", part::gptq}, {"rtn", part::rtn}}};
  static constexpr int rank[] = {0, 1, 2, 2};  // sq < awq < gptq|rtn
  recipe r;
  int last = -1;
  std::string_view rest = method;
  if (rest.empty()) throw std::runtime_error("empty method name");
  while (!rest.empty()) {
    const std::size_t p = rest.find('+');
    const std::string_view name = rest.substr(0, p);
    rest = p == std::string_view::npos ? std::string_view{} : rest.substr(p + 1);
    std::optional<part> k;
    for (const auto& [n, v] : steps)
      if (n == name) k = v;
    if (!k)
      throw std::runtime_error("unknown step '" + std::string(name) + "' in method '" + std::string(method) +
                               "' (steps: sq, awq, gptq, rtn joined by '+', e.g. awq+gptq)");
    const int rk = rank[static_cast<int>(*k)];
    if (rk <= last)
      throw std::runtime_error("method '" + std::string(method) +
                               "': steps must appear once each, in the order sq, awq, gptq|rtn (SmoothQuant changes "
                               "the statistics AWQ sees; GPTQ finishes the weights)");
    last = rk;
    if (*k == part::sq) r.smoothquant = step::smoothquant{};
    if (*k == part::awq) r.awq = step::awq{};
    if (*k == part::gptq) r.gptq = step::gptq{};
  }
  return r;
}

// Options every recipe-taking command reads (the one grammar), and the GPTQ ones.
inline const std::set<std::string> recipe_options = {"method", "act-format", "alpha", "awq-gptq", "damp", "block",
                                                     "order", "mse-weights", "scale-rule", "rounding", "threads",
                                                     "qep-alpha", "qep-damp", "refine", "mse-grid", "mse-norm",
                                                     "rotate"};
inline const std::set<std::string> recipe_switches = {"alpha-grid", "act-order", "static-scales", "qep"};

// GPTQ options from the flags. --act-order is the global descending-diag(H) order with static
// scales: on the code-llama layers it beats the block-aware (GAR) order with dynamic scales for
// every format (benchmarks/RESULTS.md); --order picks any.
// The flags of a recipe-taking command: its own `options` plus the recipe grammar's (less
// `without`), no positional argument, every `required` option present.
inline parsed_args parse_recipe_command(const args_t& raw, const std::string& command, std::set<std::string> options,
                                        std::initializer_list<const char*> required,
                                        std::set<std::string> switches = {}, const std::set<std::string>& without = {}) {
  options.insert(recipe_options.begin(), recipe_options.end());
  switches.insert(recipe_switches.begin(), recipe_switches.end());
  for (const auto& w : without) options.erase(w);
  const parsed_args a = parse(raw, options, switches);
  if (!a.positional.empty())
    throw std::runtime_error("unexpected argument '" + a.positional[0] + "' (an option missing its value? see mxq " +
                             command + " --help)");
  for (const char* req : required)
    if (!a.values.count(req))
      throw std::runtime_error(std::string("missing required option --") + req + " (see mxq " + command + " --help)");
  return a;
}

inline gptq_options gptq_options_from(const parsed_args& a, const quant_options& quant) {
  gptq_options o;
  o.quant = quant;
  o.percdamp = a.number("damp", 0.01);
  if (!(o.percdamp >= 0.0)) throw std::runtime_error("--damp must be >= 0");
  const long block = a.integer("block", 128);
  if (block <= 0) throw std::runtime_error("--block must be a positive number of columns");
  o.block_size = static_cast<std::size_t>(block);
  if (a.has("act-order")) o.order = act_order::global;
  if (a.values.count("order")) o.order = parse_act_order(a.get("order", "none"));
  o.static_scales = a.has("static-scales");
  o.mse_weights = parse_mse_weighting(a.get("mse-weights", "hseq"));
  const long refine = a.integer("refine", 0);
  if (refine < 0 || refine > 1000)
    throw std::runtime_error("--refine must be a number of passes in [0, 1000] (0 = plain GPTQ)");
  o.refine_passes = static_cast<int>(refine);
  o.rtn_fallback = true;  // a degenerate Hessian: RTN for that linear, reported, not a failed run
  const long threads = a.integer("threads", 0);
  if (threads < 0) throw std::runtime_error("--threads must be >= 0 (0 = every core)");
  o.threads = static_cast<int>(threads);
  return o;
}

inline quant_options weight_options_from(const parsed_args& a) {
  quant_options q;
  q.scale_rule = parse_scale_rule(a.get("scale-rule", "floor"));
  q.rounding = parse_rounding(a.get("rounding", "even"));
  const long grid = a.integer("mse-grid", 0);
  if (grid < 0 || grid > 10000) throw std::runtime_error("--mse-grid must be a number of shrink steps in [0, 10000] (0 = the format's own candidates)");
  if (grid > 0 && q.scale_rule != scale_rule::mse) throw std::runtime_error("--mse-grid is the candidates of --scale-rule mse: give that too");
  q.mse_grid = static_cast<int>(grid);
  q.mse_norm = a.number("mse-norm", 2.0);
  if (!(q.mse_norm > 0.0 && q.mse_norm <= 16.0)) throw std::runtime_error("--mse-norm must be an error exponent in (0, 16]");
  if (a.values.count("mse-norm") && q.scale_rule != scale_rule::mse && q.scale_rule != scale_rule::four_over_six)
    throw std::runtime_error("--mse-norm is the error of the scale searches: it needs --scale-rule mse or 4over6");
  return q;
}

// MR-GPTQ (FP-Quant, arXiv 2509.23202): GPTQ behind a block Hadamard rotation of 32, columns in
// descending diag(H) order with scales fixed up front, each block's scale from FP-Quant's MSE grid
// (100 shrinks, error exponent 2.4). Flags the command gives win over these.
inline parsed_args with_mr_gptq_defaults(parsed_args a) {
  a.values["method"] = "gptq";
  a.values.try_emplace("rotate", "hadamard:32");
  if (!a.values.count("order")) a.flags.insert("act-order");
  a.values.try_emplace("scale-rule", "mse");
  if (a.get("scale-rule", "mse") == "mse") a.values.try_emplace("mse-grid", "100");
  if (a.get("scale-rule", "mse") == "mse" || a.get("scale-rule", "mse") == "4over6") a.values.try_emplace("mse-norm", "2.4");
  return a;
}

// The whole recipe: --method (default `default_method`) with the flags that tune its steps.
// Validates everything (formats included) before any work.
inline recipe recipe_from_args(const parsed_args& a, const std::string& default_method = "rtn") {
  if (a.get("method", default_method) == "mr-gptq") return recipe_from_args(with_mr_gptq_defaults(a));
  recipe rc = parse_method(a.get("method", default_method));
  rc.rotation = llm::parse_rotation(a.get("rotate", ""), "--rotate");
  if (rc.rotation && (rc.smoothquant || rc.awq))
    throw std::runtime_error("--rotate does not combine with the sq/awq steps yet (their scales fold where the rotation stands)");
  rc.weight_opt = weight_options_from(a);
  const std::string act = a.get("act-format", "");
  if (!act.empty() && act != "none" && !is_known_format(act))
    throw std::runtime_error("unknown activation format '" + act + "' (see `mxq formats`)");
  rc.act = activation_quant_by_name(act);
  const double alpha = a.number("alpha", 0.5);
  if (!(alpha >= 0.0 && alpha <= 1.0)) throw std::runtime_error("--alpha must be in [0, 1]");
  if (rc.smoothquant) {
    rc.smoothquant->options.alpha = static_cast<float>(alpha);
    if (a.has("alpha-grid")) rc.smoothquant->options.alpha_grid = default_alpha_grid();
  }
  const auto mode = lookup(awq_gptq_names, a.get("awq-gptq", "off"), "--awq-gptq mode");
  if (rc.awq) rc.awq->gptq_in_loop = mode;
  const gptq_options g = gptq_options_from(a, rc.weight_opt);
  if (g.refine_passes > 0 && !rc.gptq)
    throw std::runtime_error("--refine refines GPTQ's codes against its Hessian: it needs a method with gptq");
  if (g.refine_passes > 0 && rc.weight_opt.rounding == rounding::stochastic)
    throw std::runtime_error("--refine needs a deterministic rounding (not --rounding stochastic)");
  if (rc.gptq) rc.gptq->options = g;
  rc.threads = g.threads;
  if (a.has("qep")) {
    step::qep q;
    q.options.alpha = static_cast<float>(a.number("qep-alpha", 0.5));
    q.options.damp = static_cast<float>(a.number("qep-damp", 1.0));
    if (!(q.options.alpha >= 0.0f && q.options.alpha <= 1.0f)) throw std::runtime_error("--qep-alpha must be in [0, 1]");
    if (!(q.options.damp >= 0.0f && std::isfinite(q.options.damp))) throw std::runtime_error("--qep-damp must be >= 0");
    rc.qep = q;
  } else if (a.values.count("qep-alpha") || a.values.count("qep-damp")) {
    throw std::runtime_error("--qep-alpha and --qep-damp need --qep");
  }
  return rc;
}

// Before any work: the recipe's scale rule is one the format's block scales have (4/6 needs
// UE4M3 scales, i.e. nvfp4).
inline void check_scale_rule(const std::string& format, const recipe& rc) {
  visit_format(format, [&](auto tag) {
    using F = typename decltype(tag)::type;
    if (!scale_supports<typename F::scale>(rc.weight_opt.scale_rule))
      throw std::runtime_error("--scale-rule 4over6 needs a format with UE4M3 block scales (nvfp4), not " + format);
  });
}

}  // namespace mxq::cli
