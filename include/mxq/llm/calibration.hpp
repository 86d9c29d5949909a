// Calibration windows from a long token stream, the way GPTQ's reference samples them from a
// tokenized corpus: n windows of seq tokens at random starting offsets in [0, N - seq), seeded.
// The generator is std::mt19937_64 reduced modulo the range (not a std distribution, whose output
// differs between standard libraries), so a seed gives the same windows everywhere.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "../config.hpp"

namespace mxq::llm {

using token_id = std::uint32_t;  // as forward.hpp declares it (this header needs no Eigen)

inline std::vector<token_id> sample_windows(std::span<const token_id> tokens, std::size_t n, std::size_t seq,
                                            std::uint64_t seed = 0) {
  if (seq == 0 || tokens.size() <= seq)
    throw error("sample_windows: " + std::to_string(tokens.size()) + " tokens hold no window of " + std::to_string(seq) +
                " tokens with room to move (need more than " + std::to_string(seq) + ")");
  std::mt19937_64 rng(seed);
  std::vector<token_id> out;
  out.reserve(n * seq);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t at = static_cast<std::size_t>(rng() % (tokens.size() - seq));
    out.insert(out.end(), tokens.begin() + static_cast<std::ptrdiff_t>(at),
               tokens.begin() + static_cast<std::ptrdiff_t>(at + seq));
  }
  return out;
}

}  // namespace mxq::llm
