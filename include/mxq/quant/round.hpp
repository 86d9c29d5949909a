// Rounding a magnitude onto an element's grid: the scalar oracle every fast path must match.
#pragma once
#include <cmath>

#include "../format/element.hpp"
#include "options.hpp"

namespace mxq::detail {

// Index into element_codec<E>::magnitudes of |x| / scale, for |x| = a >= 0 and scale > 0.
// Comparisons are made as a <=> midpoint * scale in double, which is exact for every scale mxq
// produces (<= 28 significant bits), so ties are real ties.
template <class E>
int round_magnitude(double a, double scale, rounding mode, const quant_options& opt) {
  using C = element_codec<E>;
  constexpr int n = C::magnitude_count;
  if (mode == rounding::toward_zero || mode == rounding::stochastic) {
    // lo = largest index with magnitudes[lo] * scale <= a
    int lo = 0, hi = n - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (static_cast<double>(C::magnitudes[mid]) * scale <= a) lo = mid; else hi = mid - 1;
    }
    if (mode == rounding::toward_zero || lo == n - 1) return lo;
    const double m0 = C::magnitudes[lo], m1 = C::magnitudes[lo + 1];
    const double p = (a / scale - m0) / (m1 - m0);
    if (!opt.uniform) throw error("rounding::stochastic needs quant_options::uniform");
    return opt.uniform() < p ? lo + 1 : lo;
  }
  // k = first midpoint index with a <= midpoint * scale (n-1 if above all: saturate)
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (a <= C::midpoints[mid] * scale) hi = mid; else lo = mid + 1;
  }
  if (lo < n - 1 && a == C::midpoints[lo] * scale) {
    if (mode == rounding::nearest_away) return lo + 1;
    return (lo % 2 == 0) ? lo : lo + 1;  // ties to the even code
  }
  return lo;
}

// Integer rounding of a quotient for affine grids (same policy names).
inline double round_integer(double v, rounding mode, const quant_options& opt) {
  switch (mode) {
    case rounding::nearest_even: return std::nearbyint(v);  // default FE_TONEAREST
    case rounding::nearest_away: return std::round(v);
    case rounding::toward_zero: return std::trunc(v);
    case rounding::stochastic: {
      if (!opt.uniform) throw error("rounding::stochastic needs quant_options::uniform");
      const double f = std::floor(v);
      return opt.uniform() < (v - f) ? f + 1.0 : f;
    }
  }
  return std::nearbyint(v);
}

}  // namespace mxq::detail
