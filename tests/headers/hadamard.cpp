// Compiles and runs the documented example of <mxq/hadamard.hpp> with only that header included.
#include <mxq/hadamard.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <vector>

int main() {
  const std::size_t out = 8, in = 64, tokens = 4;
  std::vector<float> w(out * in), x(tokens * in);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.11f * static_cast<float>(i));
  const std::vector<float> w0 = w, x0 = x;
  mxq::matrix_view<float> W(w.data(), out, in), X(x.data(), tokens, in);

  mxq::hadamard_rotation r{.block = 32};
  mxq::rotate_rows(W, r);  // offline: W [out, in]
  mxq::rotate_rows(X, r);  // online:  X [tokens, in], before the (quantized) product

  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t o = 0; o < out; ++o) {
      double a = 0, b = 0;
      for (std::size_t k = 0; k < in; ++k) a += double(x0[t * in + k]) * w0[o * in + k], b += double(x[t * in + k]) * w[o * in + k];
      CHECK(std::abs(a - b) < 1e-4);
    }
  return 0;
}
