// Compiles and runs the documented example of <mxq/stats.hpp> with only that header included.
#include <mxq/stats.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const std::size_t in = 64, tokens = 64, batches = 2;
  std::mt19937 gen(6);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<std::vector<float>> data(batches, std::vector<float>(tokens * in));
  std::vector<mxq::matrix_view<const float>> calibration;
  for (auto& d : data) {
    for (float& v : d) v = dist(gen);
    calibration.emplace_back(d.data(), tokens, in);
  }
  const mxq::matrix_view<const float> X = calibration[0];

  mxq::activation_stats st(in, "layers.0.mlp.down_proj");
  for (auto& batch : calibration) st.add(batch);
  std::vector<float> amax = st.max_abs(), xmean = st.mean_abs(), ex2 = st.mean_sq();
  mxq::activation_quant a8 = mxq::activation_quant_by_name("mxint8");
  mxq::row_matrix_f Xq = a8(X);

  CHECK(st.channels() == in && st.tokens() == tokens * batches && st.batches() == batches);
  CHECK(amax.size() == in && xmean.size() == in && ex2.size() == in);
  for (std::size_t j = 0; j < in; ++j)
    CHECK(amax[j] >= xmean[j] && xmean[j] > 0.0f && ex2[j] >= xmean[j] * xmean[j] * (1.0f - 1e-5f));
  CHECK(static_cast<bool>(a8) && a8.name == "mxint8");
  CHECK(static_cast<std::size_t>(Xq.rows()) == tokens && static_cast<std::size_t>(Xq.cols()) == in);
  double err = 0.0, ref = 0.0;
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t j = 0; j < in; ++j) {
      const double dlt = Xq(static_cast<Eigen::Index>(t), static_cast<Eigen::Index>(j)) - X(t, j);
      err += dlt * dlt, ref += static_cast<double>(X(t, j)) * X(t, j);
    }
  CHECK(err > 0.0 && err / ref < 1e-3);  // MXINT8: about 1e-5
  return 0;
}
