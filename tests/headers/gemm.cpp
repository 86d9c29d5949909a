// Compiles and runs the documented example of <mxq/gemm.hpp> with only that header included.
#include <mxq/gemm.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t out = 64, in = 64, batch = 8;
  std::mt19937 gen(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> wv(out * in), x(in), y(out), xs(batch * in), ys(batch * out);
  for (float& v : wv) v = dist(gen);
  for (float& v : x) v = dist(gen);
  for (float& v : xs) v = dist(gen);
  const mxq::matrix_view<const float> W(wv.data(), out, in);
  const mxq::matrix_view<const float> X(xs.data(), batch, in);
  const mxq::matrix_view<float> Y(ys.data(), batch, out);

  auto w = mxq::quantize<mxq::mxfp4>(W);
  mxq::gemv(w, x, y);
  mxq::gemm(w, X, Y);
  mxq::gemm(w, X, Y, {.threads = 2, .activations = mxq::activation_precision::f32});

  // Against the FP32 product of the dequantized weights (the documented f32 bound, loosely).
  const std::vector<float> d = mxq::dequantize(w);
  for (std::size_t r = 0; r < out; ++r) {
    double ref = 0.0, mag = 0.0;
    for (std::size_t k = 0; k < in; ++k) {
      const double p = static_cast<double>(d[r * in + k]) * x[k];
      ref += p, mag += std::fabs(p);
    }
    CHECK(std::fabs(y[r] - ref) <= 0.02 * mag + 1e-6);  // int8 activations where available
    for (std::size_t t = 0; t < batch; ++t) {
      double rt = 0.0, mt = 0.0;
      for (std::size_t k = 0; k < in; ++k) {
        const double p = static_cast<double>(d[r * in + k]) * xs[t * in + k];
        rt += p, mt += std::fabs(p);
      }
      CHECK(std::fabs(Y(t, r) - rt) <= (in + 2) * 0x1p-23 * mt + 1e-6);
    }
  }
  return 0;
}
