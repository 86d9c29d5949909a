// Quantize with formats the library does not define (see custom_format.hpp).
#include "custom_format.hpp"

#include <cmath>
#include <cstdio>
#include <vector>

#include <mxq/quantize.hpp>

int main() {
  std::vector<float> w(4 * 128);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + static_cast<float>(i % 7));
  const mxq::matrix_view<const float> view(w.data(), 4, 128);

  auto q1 = mxq::quantize<user::mx_e1m2>(view);     // packed 4-bit codes + E8M0 scales
  auto q2 = mxq::quantize<user::mxint4_b64>(view);  // blocks of 64
  const auto d1 = mxq::dequantize(q1), d2 = mxq::dequantize(q2);
  double e1 = 0, e2 = 0, ref = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    e1 += (d1[i] - w[i]) * (d1[i] - w[i]);
    e2 += (d2[i] - w[i]) * (d2[i] - w[i]);
    ref += w[i] * w[i];
  }
  std::printf("%-10s %zu bytes, relative error %.4e\n", "mx_e1m2", q1.storage_bytes(), e1 / ref);
  std::printf("%-10s %zu bytes, relative error %.4e\n", "mxint4_b64", q2.storage_bytes(), e2 / ref);
  return 0;
}
