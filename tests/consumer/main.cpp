// An outside project: quantizes with a predefined and a user-defined format via mxq::mxq.
#include <cmath>
#include <cstdio>
#include <vector>

#include <mxq/mxq.hpp>

struct my_e1m2 {
  static constexpr int bits = 4;
  static constexpr mxq::element_encoding encoding = mxq::element_encoding::sign_magnitude;
  static constexpr bool has_inf = false;
  static constexpr std::array<float, 8> magnitudes{0, 0.25f, 0.5f, 0.75f, 1, 1.25f, 1.5f, 1.75f};
  static constexpr int emax = 0;
};
struct my_format : mxq::block_format<my_e1m2, 64, mxq::e8m0_scale> {};

int main() {
  std::vector<float> x(2 * 64);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.1f * static_cast<float>(i));
  const mxq::matrix_view<const float> v(x.data(), 2, 64);
  const auto a = mxq::dequantize(mxq::quantize<my_format>(v));
  const auto b = mxq::dequantize(mxq::quantize<mxq::mxfp4>(v));
  double ea = 0, eb = 0;
  for (std::size_t i = 0; i < x.size(); ++i) ea += std::fabs(a[i] - x[i]), eb += std::fabs(b[i] - x[i]);
  std::printf("custom %.4f mxfp4 %.4f\n", ea / x.size(), eb / x.size());
  return (ea / x.size() < 0.1 && eb / x.size() < 0.1) ? 0 : 1;
}
