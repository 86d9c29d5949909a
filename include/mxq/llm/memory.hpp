// What a streamed quantize_model_streaming run holds at its peak, from the shapes alone, so a
// caller can print it and refuse a run that would not fit before any work starts. The terms
// follow the code: one decoder layer in fp32 (calibrating recipes) or its stored bytes mapped
// (plain RTN reads in place, two layers ahead), the calibration activations the layer walker keeps
// (hidden, normed, q/k/v, attention, gate/up), the scaling searches' copies, the largest group's
// Hessian and GPTQ factor, and the packed output of two layers (one being written).
#pragma once
#include <algorithm>
#include <cstddef>
#include <string>

#include "../format.hpp"
#include "../packed.hpp"
#include "../recipe.hpp"
#include "config.hpp"
#include "linear.hpp"
#include "weights.hpp"

namespace mxq::llm {

struct memory_estimate {
  std::size_t weights = 0;      // the layer's weights (fp32, or mapped stored bytes) and their quantized copies
  std::size_t activations = 0;  // calibration activations and the searches' copies
  std::size_t solver = 0;       // Hessian, GPTQ factor and working copies of the largest linear
  std::size_t output = 0;       // packed linears of the layer written and the layer quantized
  std::size_t total() const noexcept { return weights + activations + solver + output; }
};

// `stored_bits`: bits per stored weight element (16 for BF16/F16); calib_tokens: windows * seq
// (ignored when the recipe does not calibrate).
template <format_type F>
memory_estimate estimate_memory(const model_config& c, std::size_t stored_bits, std::size_t calib_tokens,
                                const recipe& rc) {
  constexpr std::size_t f4 = sizeof(float);
  std::size_t layer_elems = 2 * c.hidden_size, packed = 0, max_in = 0, max_linear = 0, max_group = 0;
  for (linear l : all_linears) {
    const auto [out, in] = expected_linear_shape(c, l);
    layer_elems += out * in;
    packed += packed_matrix<F>::storage_bytes_for(out, in);
    max_in = std::max(max_in, in);
    max_linear = std::max(max_linear, out * in);
  }
  for (linear_group g : all_groups) {
    std::size_t e = 0;
    for (linear l : members(g)) {
      const auto [out, in] = expected_linear_shape(c, l);
      e += out * in;
    }
    max_group = std::max(max_group, e);
  }
  memory_estimate m;
  m.output = 2 * packed;
  if (!rc.calibrates()) {
    // the layer quantized and two read ahead, and the embedding (or lm_head) being copied meanwhile
    m.weights = (3 * layer_elems + c.vocab_size * c.hidden_size) * stored_bits / 8;
    return m;
  }
  const std::size_t T = calib_tokens, H = c.hidden_size, I = c.intermediate_size;
  // fp32 layer + the largest group's quantized copy + the stored bytes of the tensor being converted
  m.weights = layer_elems * f4 + max_group * f4 + max_linear * stored_bits / 8;
  // walker: hidden, normed, q, k, v, attention, gate, up
  m.activations = T * (2 * H + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * I) * f4;
  if (rc.smoothquant || rc.awq) m.activations += T * (H + max_in) * f4;  // scratch + the group's captured input
  if (rc.awq) m.activations += T * max_in * f4;  // the block loss's windows and their scaled copy
  if (rc.act) m.activations += T * max_in * f4;                          // the quantized inputs of a group
  if (rc.gptq) m.solver = 4 * max_in * max_in * f4 + 2 * max_linear * f4;  // H, its copy, A/U, scratch; Wᵀ, result
  if (rc.qep) {
    // the full-precision stream and its walker, the layer's fp32 copy; X̂ and X - X̂ of a group,
    // H and H_δ, the factor (the GPTQ solve runs after the correction, so only the larger counts)
    m.activations += T * (2 * H + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * I) * f4 + 2 * T * max_in * f4;
    m.weights += layer_elems * f4;
    m.solver = std::max(m.solver, 3 * max_in * max_in * f4 + max_linear * f4);
  }
  return m;
}

}  // namespace mxq::llm
