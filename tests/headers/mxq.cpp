// Compiles and runs the documented example of the umbrella header <mxq/mxq.hpp>.
#include <mxq/mxq.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t out = 64, in = 64;
  std::mt19937 gen(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> w(out * in);
  for (float& x : w) x = dist(gen);

  mxq::matrix_view<const float> W(w.data(), out, in);
  mxq::packed_matrix<mxq::mxfp4> q = mxq::quantize<mxq::mxfp4>(W);
  std::vector<float> d = mxq::dequantize(q);
  std::size_t bytes = q.storage_bytes();

  CHECK(q.rows() == out && q.cols() == in && d.size() == out * in);
  CHECK(bytes == out * in / 2 + out * (in / 32));
  double err = 0.0, ref = 0.0;
  for (std::size_t i = 0; i < w.size(); ++i) err += (d[i] - w[i]) * (d[i] - w[i]), ref += w[i] * w[i];
  CHECK(err > 0.0 && err / ref < 0.05);
  return 0;
}
