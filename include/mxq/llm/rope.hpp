// RoPE's inverse frequencies of a model config, as transformers computes them
// (modeling_rope_utils.py): the default 1 / theta^(2i/d), linear position interpolation (inv_freq /
// factor) and Llama 3.x's frequency-dependent scaling (rope_type "llama3"). Every step in float32,
// in transformers' order of operations, so the rotation matches the reference bit for bit as far
// as float32 arithmetic allows; none of these types scales the attention (attention_factor 1).
#pragma once
#include <cmath>
#include <cstddef>
#include <numbers>
#include <vector>

#include "../numeric/half.hpp"
#include "config.hpp"

namespace mxq::llm {

// inv_freq[i] for i < head_dim / 2.
inline std::vector<float> rope_inv_freq(const model_config& c) {
  const std::size_t half = c.head_dim / 2;
  std::vector<float> f(half);
  const float theta = static_cast<float>(c.rope_theta);
  for (std::size_t i = 0; i < half; ++i)
    f[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(c.head_dim));
  const rope_scaling& s = c.rope;
  const float factor = static_cast<float>(s.factor);
  switch (s.type) {
    case rope_type::default_rope:
      break;
    case rope_type::linear:
      for (float& x : f) x /= factor;
      break;
    case rope_type::llama3: {
      // Wavelengths shorter than old_context / high_freq_factor keep their frequency, longer than
      // old_context / low_freq_factor are divided by factor, the band between interpolates.
      const float old_ctx = static_cast<float>(s.original_max_position_embeddings);
      const float low = static_cast<float>(s.low_freq_factor);
      const float low_wavelen = static_cast<float>(s.original_max_position_embeddings / s.low_freq_factor);
      const float high_wavelen = static_cast<float>(s.original_max_position_embeddings / s.high_freq_factor);
      const float band = static_cast<float>(s.high_freq_factor - s.low_freq_factor);
      for (float& x : f) {
        const float wavelen = static_cast<float>(2.0 * std::numbers::pi) / x;
        const float scaled = wavelen > low_wavelen ? x / factor : x;
        if (wavelen < high_wavelen || wavelen > low_wavelen) {
          x = scaled;
        } else {
          const float smooth = (old_ctx / wavelen - low) / band;
          x = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
      }
      break;
    }
  }
  // transformers keeps inv_freq as a buffer in the model dtype (see model_config::rope_inv_freq_bf16).
  if (c.rope_inv_freq_bf16)
    for (float& x : f) x = mxq::detail::bf16_bits_to_float(mxq::detail::float_to_bf16_bits(x));
  return f;
}

}  // namespace mxq::llm
