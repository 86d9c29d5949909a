// hessian_accumulator: streaming running average equals (2/n) XᵀX, 16-bit inputs, double
// accumulation, threaded strips, merge, and NaN/Inf rejection naming the row.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <mxq/detail/bits.hpp>
#include <mxq/hessian.hpp>

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_hessian {

using Catch::Matchers::Contains;

namespace {

std::vector<float> random_rows(std::size_t rows, std::size_t cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) x[r * cols + c] = nd(gen) * (1.0f + static_cast<float>(c % 7));  // uneven channels
  return x;
}

Eigen::MatrixXd direct(const std::vector<float>& x, std::size_t rows, std::size_t cols) {
  Eigen::MatrixXd m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) m(static_cast<Eigen::Index>(r), static_cast<Eigen::Index>(c)) = x[r * cols + c];
  return (2.0 / static_cast<double>(rows)) * m.transpose() * m;
}

double max_rel_diff(mxq::matrix_view<const float> h, const Eigen::MatrixXd& ref) {
  const double scale = ref.cwiseAbs().maxCoeff();
  double d = 0.0;
  for (std::size_t i = 0; i < h.rows; ++i)
    for (std::size_t j = 0; j < h.cols; ++j)
      d = std::max(d, std::fabs(h(i, j) - ref(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j))) / scale);
  return d;
}

}  // namespace

TEST_CASE("hessian: streaming batches equal (2/n) X^T X", "[hessian]") {
  const std::size_t rows = 700, cols = 300;
  const auto x = random_rows(rows, cols, 1);
  const Eigen::MatrixXd ref = direct(x, rows, cols);
  for (bool dbl : {false, true})
    for (int threads : {1, 2}) {
      mxq::hessian_accumulator h(cols, {dbl, threads, "layer.q"});
      std::size_t r0 = 0;
      for (std::size_t len : {1u, 99u, 300u, 300u}) {  // uneven batches, running average
        h.add(mxq::matrix_view<const float>(x.data() + r0 * cols, len, cols));
        r0 += len;
      }
      REQUIRE(r0 == rows);
      CHECK(h.samples() == rows);
      CHECK(h.batches() == 4);
      const auto m = h.matrix();
      CHECK(max_rel_diff(m, ref) < 1e-5);
      if (dbl) CHECK((h.eigen_double() - ref).cwiseAbs().maxCoeff() < 1e-12 * ref.cwiseAbs().maxCoeff());
      for (std::size_t i = 0; i < cols; ++i)
        for (std::size_t j = 0; j < i; ++j) REQUIRE(m(i, j) == m(j, i));  // full symmetric
    }
}

TEST_CASE("hessian: bf16/f16 inputs, strided views, merge", "[hessian]") {
  const std::size_t rows = 64, cols = 40;
  auto x = random_rows(rows, cols, 2);
  std::vector<std::uint16_t> bf(x.size()), hf(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    bf[i] = mxq::detail::float_to_bf16_bits(x[i]);
    hf[i] = mxq::detail::float_to_half_bits(x[i]);
  }
  std::vector<float> xb(x.size()), xh(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    xb[i] = mxq::detail::bf16_bits_to_float(bf[i]);
    xh[i] = mxq::detail::half_bits_to_float(hf[i]);
  }
  mxq::hessian_accumulator a(cols), b(cols);
  a.add(mxq::matrix_view<const std::uint16_t>(bf.data(), rows, cols), mxq::half_type::bf16);
  b.add(mxq::matrix_view<const std::uint16_t>(hf.data(), rows, cols), mxq::half_type::f16);
  CHECK(max_rel_diff(a.matrix(), direct(xb, rows, cols)) < 1e-5);
  CHECK(max_rel_diff(b.matrix(), direct(xh, rows, cols)) < 1e-5);

  // A column-strided view (the transpose of a [cols, rows] buffer) goes through the copying path.
  std::vector<float> xt(x.size());
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) xt[c * rows + r] = x[r * cols + c];
  mxq::hessian_accumulator s(cols);
  s.add(mxq::matrix_view<const float>(xt.data(), cols, rows).t());
  CHECK(max_rel_diff(s.matrix(), direct(x, rows, cols)) < 1e-5);

  // merge of two halves = one pass over all rows
  mxq::hessian_accumulator h1(cols), h2(cols, {true, 1, {}});
  h1.add(mxq::matrix_view<const float>(x.data(), 20, cols));
  h2.add(mxq::matrix_view<const float>(x.data() + 20 * cols, rows - 20, cols));
  h1.merge(h2);
  CHECK(h1.samples() == rows);
  CHECK(max_rel_diff(h1.matrix(), direct(x, rows, cols)) < 1e-5);

  // count: a batch may count as sequences instead of rows (the reference's n)
  mxq::hessian_accumulator seq(cols);
  seq.add(mxq::matrix_view<const float>(x.data(), rows, cols), 2);
  CHECK(seq.samples() == 2);
  CHECK(max_rel_diff(seq.matrix(), direct(x, rows, cols) * (static_cast<double>(rows) / 2.0)) < 1e-5);
}

TEST_CASE("hessian: NaN/Inf in a batch names the row and leaves H unchanged", "[hessian]") {
  const std::size_t cols = 8;
  auto x = random_rows(10, cols, 3);
  mxq::hessian_accumulator h(cols, {false, 1, "model.layers.3.mlp.down_proj"});
  h.add(mxq::matrix_view<const float>(x.data(), 10, cols));
  const Eigen::MatrixXf before = h.eigen();
  auto bad = x;
  bad[7 * cols + 5] = std::numeric_limits<float>::quiet_NaN();
  REQUIRE_THROWS_AS(h.add(mxq::matrix_view<const float>(bad.data(), 10, cols)), mxq::error);
  REQUIRE_THROWS_WITH(h.add(mxq::matrix_view<const float>(bad.data(), 10, cols)),
                      Contains("row 7") && Contains("NaN") && Contains("column 5") && Contains("down_proj") &&
                          Contains("calibration row 17"));
  bad[7 * cols + 5] = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_WITH(h.add(mxq::matrix_view<const float>(bad.data(), 10, cols)), Contains("row 7") && Contains("Inf"));
  std::vector<std::uint16_t> bf(cols * 2, 0);
  bf[cols + 1] = 0x7FC0;  // bf16 NaN in row 1
  REQUIRE_THROWS_WITH(h.add(mxq::matrix_view<const std::uint16_t>(bf.data(), 2, cols), mxq::half_type::bf16),
                      Contains("row 1"));
  CHECK(h.samples() == 10);
  CHECK(h.eigen() == before);
  REQUIRE_THROWS_WITH(h.add(mxq::matrix_view<const float>(x.data(), 2, 4)), Contains("4 columns"));
}

}  // namespace test_hessian
