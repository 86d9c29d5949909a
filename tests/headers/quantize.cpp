// Compiles and runs the documented example of <mxq/quantize.hpp> with only that header included.
#include <mxq/quantize.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t out = 64, in = 64;
  std::mt19937 gen(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> w(out * in), o(out * in);
  for (float& x : w) x = dist(gen);

  mxq::matrix_view<const float> W(w.data(), out, in);
  auto q = mxq::quantize<mxq::mxfp4>(W);
  std::vector<float> d = mxq::dequantize(q);
  mxq::fake_quant<mxq::mxfp4>(W, mxq::matrix_view<float>(o.data(), out, in));
  auto q2 = mxq::quantize<mxq::mxfp4>(W, {.scale_rule = mxq::scale_rule::mse});

  CHECK(q.rows() == out && q.cols() == in && d.size() == out * in);
  CHECK(o == d);  // fake_quant is quantize + dequantize
  CHECK(q2.rows() == out && q2.cols() == in);
  double err = 0.0, err2 = 0.0, ref = 0.0;
  const std::vector<float> d2 = mxq::dequantize(q2);
  for (std::size_t i = 0; i < w.size(); ++i) {
    err += (d[i] - w[i]) * (d[i] - w[i]);
    err2 += (d2[i] - w[i]) * (d2[i] - w[i]);
    ref += w[i] * w[i];
  }
  CHECK(std::isfinite(err) && err > 0.0 && err / ref < 0.05);  // MXFP4 RTN: about 1 %
  CHECK(err2 <= err * (1.0 + 1e-6));  // the MSE scale search never loses to the OCP rule it starts from
  return 0;
}
