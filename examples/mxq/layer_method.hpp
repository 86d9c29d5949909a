// Methods of `mxq quantize-layer`: a table of name -> function, filled at static-init time like the
// commands themselves, so a method family lives in its own cmd_*.cpp file:
//
//   static mxq::cli::layer::registrar reg("awq+gptq", {"summary", run_awq_gptq, {"alpha", "act-format"}, {}});
//
// A method gets the layer (W [out, in], X [tokens, in]), the common options and every parsed flag,
// and returns the dequantized weight (written to --out) plus, for methods that change what the
// layer sees (SmoothQuant, quantized activations), the inputs the quantized layer is evaluated on.
// The command then prints `relative_output_error: E` = ‖Q Xqᵀ − W Xᵀ‖² / ‖W Xᵀ‖² as its last line.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <mxq/gptq.hpp>
#include <mxq/hessian.hpp>
#include <mxq/matrix_view.hpp>
#include <mxq/quant/options.hpp>

#include "args.hpp"

namespace mxq::cli::layer {

struct problem {
  std::string format;                  // --format (a known format name)
  matrix_view<const float> weight;     // W [out, in]
  matrix_view<const float> inputs;     // X [tokens, in]
  quant_options quant;                 // --scale-rule, --rounding
  const parsed_args* args = nullptr;   // every flag, method-specific ones included

  // H = (2/n) XᵀX over the given inputs, built on first use and shared by the methods that need it.
  const hessian_accumulator& hessian() const {
    if (!h_) {
      h_.emplace(inputs.cols, hessian_options{false, 0, "inputs"});
      h_->add(inputs);
    }
    return *h_;
  }
  // mean x² per input column (diag(H)/2): importance weights of weighted scale searches.
  std::vector<float> mean_sq() const {
    const auto h = hessian().matrix();
    std::vector<float> m(h.rows);
    for (std::size_t j = 0; j < h.rows; ++j) m[j] = h(j, j) / 2.0f;
    return m;
  }

 private:
  mutable std::optional<hessian_accumulator> h_;
};

// GPTQ options from the flags (the `gptq` method; reusable by composite methods).
inline mxq::gptq_options gptq_options_from(const problem& p) {
  const auto& a = *p.args;
  mxq::gptq_options o;
  o.quant = p.quant;
  o.percdamp = a.number("damp", 0.01);
  if (!(o.percdamp >= 0.0)) throw std::runtime_error("--damp must be >= 0");
  const long block = a.integer("block", 128);
  if (block <= 0) throw std::runtime_error("--block must be a positive number of columns");
  o.block_size = static_cast<std::size_t>(block);
  // --act-order = global descending-diag(H) order with static scales: on the code-llama layers it
  // beats the block-aware (GAR) order with dynamic scales for every format (benchmarks/RESULTS.md).
  if (a.has("act-order")) o.order = mxq::act_order::global;
  if (a.values.count("order")) o.order = mxq::parse_act_order(a.get("order", "none"));
  o.static_scales = a.has("static-scales");
  o.mse_weights = mxq::parse_mse_weighting(a.get("mse-weights", "hseq"));
  o.threads = static_cast<int>(a.integer("threads", 0));
  return o;
}

struct solution {
  std::vector<float> weight;   // dequantized [out, in], original coordinates of X
  std::vector<float> inputs;   // inputs the quantized layer sees [tokens, in]; empty = X unchanged
  std::vector<std::string> notes;  // extra stdout lines printed before the error line
};

struct method {
  std::string summary;
  std::function<solution(const problem&)> run;
  std::set<std::string> options = {};   // extra --name value options the method reads
  std::set<std::string> switches = {};  // extra boolean flags
};

inline std::map<std::string, method>& registry() {
  static std::map<std::string, method> r;
  return r;
}

struct registrar {
  registrar(const std::string& name, method m) { registry()[name] = std::move(m); }
};

}  // namespace mxq::cli::layer
