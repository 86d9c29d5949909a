// Compiles and runs the documented example of <mxq/hessian.hpp> with only that header included.
#include <mxq/hessian.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t in_features = 64, tokens = 96, batches = 3;
  std::mt19937 gen(4);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<std::vector<float>> data(batches, std::vector<float>(tokens * in_features));
  std::vector<mxq::matrix_view<const float>> calibration;
  for (auto& d : data) {
    for (float& v : d) v = dist(gen);
    calibration.emplace_back(d.data(), tokens, in_features);
  }

  mxq::hessian_accumulator h(in_features);
  for (auto& batch : calibration) h.add(batch);
  mxq::matrix_view<const float> H = h.matrix();

  CHECK(H.rows == in_features && H.cols == in_features);
  CHECK(h.samples() == tokens * batches && h.batches() == batches);
  // H = (2/n) sum x x^T: symmetric, diagonal 2 E[x^2] (about 2 for unit normal inputs).
  for (std::size_t i = 0; i < in_features; ++i) {
    CHECK(H(i, i) > 1.0f && H(i, i) < 3.0f);
    for (std::size_t j = 0; j < i; ++j) CHECK(H(i, j) == H(j, i));
  }
  double d00 = 0.0;
  for (auto& batch : calibration)
    for (std::size_t t = 0; t < tokens; ++t) d00 += static_cast<double>(batch(t, 0)) * batch(t, 0);
  d00 *= 2.0 / static_cast<double>(tokens * batches);
  CHECK(std::fabs(H(0, 0) - d00) < 1e-4 * d00);
  return 0;
}
