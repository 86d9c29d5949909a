// Compiles and runs the documented example of <mxq/gptq.hpp> with only that header included.
#include <mxq/gptq.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t out = 64, in = 64, tokens = 256;
  std::mt19937 gen(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> w(out * in), x(tokens * in);
  for (float& v : w) v = dist(gen);
  for (float& v : x) v = dist(gen);
  const mxq::matrix_view<const float> W(w.data(), out, in), inputs(x.data(), tokens, in);

  mxq::hessian_accumulator h(in);
  h.add(inputs);
  auto r = mxq::gptq<mxq::mxfp4>(W, h.matrix());

  CHECK(r.rows == out && r.cols == in && r.dequantized.size() == out * in);
  CHECK(r.packed.rows() == out && r.packed.cols() == in);
  CHECK(std::isfinite(r.loss) && r.loss > 0.0 && r.damp_fraction > 0.0 && !r.rtn_fallback);
  double err = 0.0, ref = 0.0;
  for (std::size_t i = 0; i < w.size(); ++i)
    err += (r.dequantized[i] - w[i]) * (r.dequantized[i] - w[i]), ref += w[i] * w[i];
  CHECK(err > 0.0 && err / ref < 0.1);
  return 0;
}
