// Runtime policies of the round-to-nearest quantizers.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "../config.hpp"

namespace mxq {

// How an element value between two grid points is rounded. Values beyond the largest grid
// point always saturate to it (sign kept).
enum class rounding {
  nearest_even,  // default; OCP, CUDA, torchao
  nearest_away,  // microxcaling's "nearest"
  toward_zero,
  stochastic,    // needs quant_options::uniform
};

// How a block's scale is chosen.
enum class scale_rule {
  floor,  // OCP: 2^(floor(log2 amax) - emax); NVFP4: RNE(amax / 6 / tensor scale); INT: min-max
  ceil,   // smallest scale that does not clip the block maximum (NVIDIA/torchao RCEIL)
  mse,    // per block, the candidate scale with the least (weighted) squared error
  // "4/6" (arXiv 2512.02010), UE4M3-scaled formats (NVFP4) only: per block, the scale that maps
  // the block max to the largest element magnitude (6) or to the next one down (4), whichever
  // has the smaller (weighted) squared error; the tensor scale is computed against 256 instead
  // of 448 so that the larger block scale (amax / 4) still fits E4M3.
  four_over_six,
};

// Whether scale encoding S can choose its blocks' scales by `r` (4/6 needs an E4M3 block scale).
template <class S>
constexpr bool scale_supports(scale_rule r) noexcept {
  if constexpr (requires { S::supports_four_over_six; }) return r != scale_rule::four_over_six || S::supports_four_over_six;
  else return r != scale_rule::four_over_six;
}

struct quant_options {
  mxq::rounding rounding = mxq::rounding::nearest_even;
  mxq::scale_rule scale_rule = mxq::scale_rule::floor;
  // Uniform random numbers in [0, 1) for rounding::stochastic (caller's generator).
  std::function<double()> uniform = {};
  // Optional per-column importance for scale_rule::mse (e.g. diag(H) or E[x^2]); one weight per
  // column of the matrix being quantized, empty for unweighted.
  std::span<const float> column_weights = {};
  // The error the scale searches (mse, 4over6) minimize: sum of w |x - Q(x)|^mse_norm. 2 is the
  // squared error; FP-Quant's MR-GPTQ uses 2.4, which weighs the largest errors more.
  double mse_norm = 2.0;
  // scale_rule::mse's candidates: 0, each encoding's own (E8M0: the floor exponent and its three
  // neighbours; UE4M3: the ModelOpt code +-3; float scales: GPTQ's 80 shrinks 1.00..0.21); N > 0,
  // FP-Quant's grid: the block range shrunk by p = 1 - i/N for i < 0.8 N (p = 1 .. 0.2), each cast
  // to the scale encoding, the distinct results tried in that order.
  int mse_grid = 0;
  // Threads the SIMD kernels split rows over (quantize / fake_quant; <= 0: every core). Results do
  // not depend on it. The scalar oracle and stochastic rounding (one caller RNG) stay on one thread.
  int threads = 1;
};

}  // namespace mxq
