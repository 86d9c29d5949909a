// QEP (issue 14): with α = 1 and no damping the correction is the least-squares weight for the
// quantized inputs (checked against a QR solve of the overdetermined system); α = 0 changes
// nothing, so GPTQ after it is plain GPTQ bit for bit; on a 2-layer toy whose first layer is
// quantized, correcting the second lowers its output error against the full-precision model, on
// the calibration tokens and on fresh ones; bad input is a named error.
#include <catch2/catch.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <random>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/gptq.hpp>
#include <mxq/hessian.hpp>
#include <mxq/qep.hpp>
#include <mxq/quantize.hpp>

namespace test_qep {

using Catch::Matchers::Contains;
using mxq::matrix_view;

namespace {
std::vector<float> randn(std::size_t n, unsigned seed, float sd = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
// y [t, out] = x [t, in] · Wᵀ, in double, rounded to float.
std::vector<float> linear(const std::vector<float>& x, const std::vector<float>& w, std::size_t t, std::size_t in, std::size_t out) {
  std::vector<float> y(t * out);
  for (std::size_t i = 0; i < t; ++i)
    for (std::size_t o = 0; o < out; ++o) {
      double s = 0;
      for (std::size_t k = 0; k < in; ++k) s += double(x[i * in + k]) * w[o * in + k];
      y[i * out + o] = static_cast<float>(s);
    }
  return y;
}
double sq_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}
std::vector<float> rtn(const std::vector<float>& w, std::size_t rows, std::size_t cols) {
  std::vector<float> q(w.size());
  mxq::fake_quant<mxq::mxint4>(matrix_view<const float>(w.data(), rows, cols), matrix_view<float>(q.data(), rows, cols));
  return q;
}
}  // namespace

TEST_CASE("qep: alpha 1 without damping is the least-squares weight for the quantized inputs", "[qep]") {
  const std::size_t t = 200, in = 32, out = 12;
  const std::vector<float> x = randn(t * in, 1), w = randn(out * in, 2);
  std::vector<float> xq = x;  // a perturbed copy standing in for the quantized model's inputs
  const std::vector<float> noise = randn(t * in, 3, 0.2f);
  for (std::size_t i = 0; i < xq.size(); ++i) xq[i] += noise[i];
  mxq::qep_accumulator acc(in);
  acc.add(matrix_view<const float>(x.data(), 120, in), matrix_view<const float>(xq.data(), 120, in));  // two batches
  acc.add(matrix_view<const float>(x.data() + 120 * in, 80, in), matrix_view<const float>(xq.data() + 120 * in, 80, in));
  CHECK(acc.tokens() == t);
  std::vector<float> wc = w;
  mxq::qep_correct(matrix_view<float>(wc.data(), out, in), acc, {1.0f, 0.0f, 1});
  // Independent: solve X̂ W'ᵀ = X Wᵀ in the least-squares sense by column-pivoted QR.
  Eigen::MatrixXd X(t, in), XQ(t, in), W(out, in);
  for (std::size_t i = 0; i < t; ++i)
    for (std::size_t k = 0; k < in; ++k) X(i, k) = x[i * in + k], XQ(i, k) = xq[i * in + k];
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t k = 0; k < in; ++k) W(o, k) = w[o * in + k];
  const Eigen::MatrixXd ls = XQ.colPivHouseholderQr().solve(X * W.transpose()).transpose();  // [out, in]
  double err = 0, mag = 0;
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t k = 0; k < in; ++k) err = std::max(err, std::abs(wc[o * in + k] - ls(o, k))), mag = std::max(mag, std::abs(ls(o, k)));
  CHECK(err / mag < 1e-4);
  // And alpha 0.5 moves half the way (no damping).
  std::vector<float> wh = w;
  mxq::qep_correct(matrix_view<float>(wh.data(), out, in), acc, {0.5f, 0.0f, 1});
  for (std::size_t i = 0; i < w.size(); i += 7) CHECK(std::abs(wh[i] - 0.5f * (w[i] + wc[i])) < 1e-4f * mag);
}

TEST_CASE("qep: alpha 0 leaves the weight as it is, so GPTQ after it is plain GPTQ bit for bit", "[qep]") {
  const std::size_t t = 256, in = 64, out = 16;
  const std::vector<float> x = randn(t * in, 4), xq = randn(t * in, 5), w = randn(out * in, 6);
  mxq::qep_accumulator acc(in);
  acc.add(matrix_view<const float>(x.data(), t, in), matrix_view<const float>(xq.data(), t, in));
  std::vector<float> w0 = w;
  mxq::qep_correct(matrix_view<float>(w0.data(), out, in), acc, {0.0f, 1.0f});
  CHECK(w0 == w);
  mxq::hessian_accumulator h(in);
  h.add(matrix_view<const float>(xq.data(), t, in));
  const auto a = mxq::gptq<mxq::mxfp4>(matrix_view<const float>(w.data(), out, in), h.matrix());
  const auto b = mxq::gptq<mxq::mxfp4>(matrix_view<const float>(w0.data(), out, in), h.matrix());
  CHECK(a.dequantized == b.dequantized);
}

TEST_CASE("qep: on a 2-layer toy, correcting the second layer for the first's error lowers its output error", "[qep]") {
  // x -> W1 (quantized, MXINT4) -> W2. The full-precision model's second-layer input is x W1ᵀ,
  // the quantized model's x Q(W1)ᵀ. Error of the second layer: || x̂ Q(W2')ᵀ - x W1ᵀ W2ᵀ ||².
  const std::size_t t = 512, fresh = 256, d0 = 64, d1 = 96, d2 = 32;
  const std::vector<float> x = randn(t * d0, 7), xf = randn(fresh * d0, 8), w1 = randn(d1 * d0, 9, 0.3f), w2 = randn(d2 * d1, 10, 0.3f);
  const std::vector<float> w1q = rtn(w1, d1, d0);
  auto error_of = [&](const std::vector<float>& in0, std::size_t n, const std::vector<float>& w2q) {
    const std::vector<float> h = linear(in0, w1, n, d0, d1), hq = linear(in0, w1q, n, d0, d1);
    return sq_diff(linear(hq, w2q, n, d1, d2), linear(h, w2, n, d1, d2));
  };
  const std::vector<float> h = linear(x, w1, t, d0, d1), hq = linear(x, w1q, t, d0, d1);
  mxq::qep_accumulator acc(d1);
  acc.add(matrix_view<const float>(h.data(), t, d1), matrix_view<const float>(hq.data(), t, d1));
  for (float damp : {1.0f, 0.01f}) {
    INFO("damp " << damp);
    std::vector<float> w2c = w2;
    mxq::qep_correct(matrix_view<float>(w2c.data(), d2, d1), acc, {0.5f, damp});
    const std::vector<float> plain = rtn(w2, d2, d1), corrected = rtn(w2c, d2, d1);
    const double e_plain = error_of(x, t, plain), e_qep = error_of(x, t, corrected);
    const double f_plain = error_of(xf, fresh, plain), f_qep = error_of(xf, fresh, corrected);
    INFO("calibration " << e_plain << " -> " << e_qep << ", fresh " << f_plain << " -> " << f_qep);
    CHECK(e_qep < 0.95 * e_plain);
    CHECK(f_qep < 0.95 * f_plain);
  }
}

TEST_CASE("qep: the same bytes for any thread count", "[qep]") {
  const std::size_t t = 300, in = 640, out = 200;  // several strips and row blocks, ragged ends
  const std::vector<float> x = randn(t * in, 11), xq = randn(t * in, 12), w = randn(out * in, 13);
  std::vector<float> got[3];
  for (int threads : {1, 2, 3}) {
    mxq::qep_accumulator acc(in, threads);
    acc.add(matrix_view<const float>(x.data(), t, in), matrix_view<const float>(xq.data(), t, in));
    got[threads - 1] = w;
    mxq::qep_correct(matrix_view<float>(got[threads - 1].data(), out, in), acc, {0.5f, 0.01f, threads});
  }
  CHECK(got[0] != w);
  CHECK(got[0] == got[1]);
  CHECK(got[0] == got[2]);
}

TEST_CASE("qep: shapes that do not match, non-finite inputs and bad parameters are named errors", "[qep]") {
  std::vector<float> a(8 * 16, 1.0f), b(8 * 16, 1.0f), w(4 * 16, 1.0f);
  mxq::qep_accumulator acc(16);
  CHECK_THROWS_WITH(acc.add(matrix_view<const float>(a.data(), 8, 16), matrix_view<const float>(b.data(), 7, 16)),
                    Contains("the same tokens from both models"));
  CHECK_THROWS_WITH(mxq::qep_correct(matrix_view<float>(w.data(), 4, 16), acc, {}), Contains("no calibration tokens"));
  b[20] = std::nanf("");
  CHECK_THROWS_WITH(acc.add(matrix_view<const float>(a.data(), 8, 16), matrix_view<const float>(b.data(), 8, 16)),
                    Contains("row 1 holds a non-finite value"));
  CHECK(acc.tokens() == 0);
  CHECK_THROWS_WITH(mxq::qep_correct(matrix_view<float>(w.data(), 8, 8), acc, {}), Contains("8 input features for statistics of 16"));
  CHECK_THROWS_WITH(mxq::qep_correct(matrix_view<float>(w.data(), 4, 16), acc, {-1.0f, 1.0f}), Contains("alpha and damp"));
  // Inputs that never vary: H is singular without damping.
  std::vector<float> z(8 * 16, 0.0f);
  mxq::qep_accumulator zero(16);
  zero.add(matrix_view<const float>(z.data(), 8, 16), matrix_view<const float>(z.data(), 8, 16));
  CHECK_THROWS_WITH(mxq::qep_correct(matrix_view<float>(w.data(), 4, 16), zero, {0.5f, 0.0f}), Contains("not positive definite"));
}

}  // namespace test_qep
