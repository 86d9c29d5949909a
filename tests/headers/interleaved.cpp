// Compiles and runs the documented example of <mxq/interleaved.hpp> with only that header included.
#include <mxq/interleaved.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <vector>

int main() {
  const std::size_t out = 64, in = 64, batch = 4;
  std::mt19937 gen(10);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> wv(out * in), x(in), y(out), xs(batch * in), ys(batch * out);
  for (float& v : wv) v = dist(gen);
  for (float& v : x) v = dist(gen);
  for (float& v : xs) v = dist(gen);
  for (std::size_t k = 0; k < in; ++k) xs[2 * in + k] = x[k];  // token 2 of the batch is x
  const mxq::matrix_view<const float> W(wv.data(), out, in);

  auto w = mxq::quantize<mxq::mxfp4>(W);
  const mxq::interleaved_matrix<mxq::mxfp4> wi(w);
  mxq::gemv(wi, x, y);
  mxq::gemm(wi, mxq::matrix_view<const float>(xs.data(), batch, in), mxq::matrix_view<float>(ys.data(), batch, out),
            {.threads = 2});

  const std::vector<float> d = mxq::dequantize(w);
  for (std::size_t r = 0; r < out; ++r) {
    double ref = 0.0, mag = 0.0;
    for (std::size_t k = 0; k < in; ++k) {
      const double p = static_cast<double>(d[r * in + k]) * x[k];
      ref += p, mag += std::fabs(p);
    }
    CHECK(std::fabs(y[r] - ref) <= 0.02 * mag + 1e-6);        // int8 activations, loosely
    CHECK(std::memcmp(&y[r], &ys[2 * out + r], sizeof(float)) == 0);  // the batch's row: the same bits
  }
  return 0;
}
