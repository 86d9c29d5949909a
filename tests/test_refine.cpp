// Coordinate-descent refinement of GPTQ's codes (refine.hpp): the reported loss is the loss
// recomputed in double from the codes; it never rises; run to convergence every weight holds the
// best code of its block's grid given the others (brute force over every code); the codes do not
// depend on the thread count; dead inputs and NaN blocks are left alone; GPTQ with
// refine_passes = K equals GPTQ then refine_codes and lowers the output error on fresh inputs; bad
// arguments are named errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/gptq.hpp>
#include <mxq/hessian.hpp>
#include <mxq/metrics.hpp>
#include <mxq/refine.hpp>

namespace test_refine {

using Catch::Matchers::Contains;
using mxq::matrix_view;

namespace {

// Correlated inputs with a few heavy channels (what makes GPTQ's column order matter).
std::vector<float> inputs(std::size_t t, std::size_t in, unsigned seed) {
  std::mt19937 mrng(7);  // one covariance: seeds draw samples of the same distribution
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> mix(in * in);
  for (auto& m : mix) m = d(mrng) / std::sqrt(static_cast<float>(in));
  std::mt19937 rng(seed);
  std::vector<float> x(t * in);
  std::vector<float> z(in);
  for (std::size_t i = 0; i < t; ++i) {
    for (auto& v : z) v = d(rng);
    for (std::size_t c = 0; c < in; ++c) {
      double s = z[c];
      for (std::size_t k = 0; k < in; ++k) s += 0.7 * mix[c * in + k] * z[k];
      x[i * in + c] = static_cast<float>(s * (c % 17 == 3 ? 6.0 : 1.0));
    }
  }
  return x;
}
std::vector<float> weights(std::size_t out, std::size_t in, unsigned seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> d(4.0f);
  std::vector<float> w(out * in);
  for (auto& v : w) v = 0.05f * d(rng);
  return w;
}
std::vector<float> hessian(const std::vector<float>& x, std::size_t t, std::size_t in) {
  mxq::hessian_accumulator h(in);
  h.add(matrix_view<const float>(x.data(), t, in));
  const auto m = h.matrix();
  std::vector<float> H(in * in);
  for (std::size_t i = 0; i < in; ++i)
    for (std::size_t j = 0; j < in; ++j) H[i * in + j] = m(i, j);
  return H;
}
// Row r's share of tr((W − Q)(H + damp·I)(W − Q)ᵀ) / 2 over the live columns, in double.
double row_loss(const std::vector<float>& w, const std::vector<float>& q, const std::vector<float>& H, std::size_t r,
                std::size_t cols, double damp) {
  double s = 0.0;
  {
    for (std::size_t i = 0; i < cols; ++i) {
      if (!(H[i * cols + i] > 0.0f)) continue;
      const double ei = double(w[r * cols + i]) - q[r * cols + i];
      for (std::size_t j = 0; j < cols; ++j) {
        if (!(H[j * cols + j] > 0.0f)) continue;
        const double ej = double(w[r * cols + j]) - q[r * cols + j];
        s += ei * ej * (double(H[i * cols + j]) + (i == j ? damp : 0.0));
      }
    }
  }
  return s / 2.0;
}
double loss_of(const std::vector<float>& w, const std::vector<float>& q, const std::vector<float>& H, std::size_t rows,
               std::size_t cols, double damp) {
  double s = 0.0;
  for (std::size_t r = 0; r < rows; ++r) s += row_loss(w, q, H, r, cols, damp);
  return s;
}

template <class F>
void check_format() {
  const std::size_t rows = 24, cols = 256, t = 2048;
  const auto x = inputs(t, cols, 11);
  const auto w = weights(rows, cols, 12);
  const auto H = hessian(x, t, cols);
  const matrix_view<const float> W(w.data(), rows, cols), Hv(H.data(), cols, cols);
  auto g = mxq::gptq<F>(W, Hv);
  const double before = loss_of(w, g.dequantized, H, rows, cols, g.damp);
  REQUIRE(g.loss == Approx(before).epsilon(1e-4));

  mxq::refine_options o;
  o.damp = g.damp;
  o.passes = 3;
  auto r = g;
  const auto rep = mxq::refine_codes<F>(W, Hv, r.packed, r.dequantized, o);
  CHECK(rep.loss_before == Approx(before).epsilon(1e-4));
  CHECK(rep.loss_after == Approx(loss_of(w, r.dequantized, H, rows, cols, g.damp)).epsilon(1e-6));
  CHECK(rep.loss_after < 0.95 * rep.loss_before);
  CHECK(rep.changed > 0);
  // Packed codes and dequantized values agree.
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t c = 0; c < cols; ++c)
      REQUIRE(mxq::decode_element<typename F::element>(r.packed.code(i, c), r.packed.params(i, c / r.packed.block_length())) ==
              r.dequantized[i * cols + c]);

  // More passes never raise it; to convergence every weight has its block's best code.
  o.passes = 1000;
  auto c = g;
  const auto conv = mxq::refine_codes<F>(W, Hv, c.packed, c.dequantized, o);
  CHECK(conv.loss_after <= rep.loss_after * (1 + 1e-9));
  CHECK(conv.passes_run < 1000);
  using E = typename F::element;
  constexpr int codes = 1 << F::bits;
  std::size_t checked = 0;
  for (std::size_t i = 0; i < rows; i += 3) {
    const double lc = row_loss(w, c.dequantized, H, i, cols, g.damp);
    for (std::size_t j = 0; j < cols; j += 5) {
      const auto p = c.packed.params(i, j / c.packed.block_length());
      for (int k = 0; k < codes; ++k) {
        const float v = mxq::decode_element<E>(static_cast<std::uint8_t>(k), p);
        // Every value the encoder can give (MXINT's unused most negative code is not one).
        if (!std::isfinite(v) || mxq::decode_element<E>(mxq::encode_element<E>(v, p, {}), p) != v) continue;
        auto q = c.dequantized;
        q[i * cols + j] = v;
        REQUIRE(row_loss(w, q, H, i, cols, g.damp) >= lc * (1 - 1e-9));
        ++checked;
      }
    }
  }
  CHECK(checked > 1000);

  // The thread count changes nothing; gptq's option is gptq then refine_codes.
  for (int threads : {1, 2, 3}) {
    auto u = g;
    o.passes = 3;
    o.threads = threads;
    mxq::refine_codes<F>(W, Hv, u.packed, u.dequantized, o);
    REQUIRE(u.dequantized == r.dequantized);
    REQUIRE(std::equal(u.packed.code_bytes().begin(), u.packed.code_bytes().end(), r.packed.code_bytes().begin()));
  }
  mxq::gptq_options go;
  go.refine_passes = 3;
  const auto gr = mxq::gptq<F>(W, Hv, go);
  CHECK(gr.dequantized == r.dequantized);
  CHECK(gr.loss == Approx(rep.loss_after).epsilon(1e-12));
  CHECK(gr.refine.changed == rep.changed);

  // Fresh inputs from the same distribution: the output error falls too.
  const auto x2 = inputs(t, cols, 99);
  const matrix_view<const float> X2(x2.data(), t, cols);
  const double e0 = mxq::relative_output_error(W, g.view(), X2);
  const double e1 = mxq::relative_output_error(W, gr.view(), X2);
  INFO("fresh-input output error " << e0 << " -> " << e1);
  CHECK(e1 < 0.97 * e0);
}

}  // namespace

TEST_CASE("refine_codes lowers GPTQ's loss to a coordinate-wise optimum, any format", "[refine]") {
  SECTION("mxfp4") { check_format<mxq::mxfp4>(); }
  SECTION("mxint4") { check_format<mxq::mxint4>(); }
  SECTION("nvfp4") { check_format<mxq::nvfp4>(); }
  SECTION("int4_g128 (zero points)") { check_format<mxq::int4_g128>(); }
}

TEST_CASE("refine_codes leaves dead inputs and NaN blocks alone", "[refine]") {
  const std::size_t rows = 8, cols = 64, t = 256;
  auto x = inputs(t, cols, 3);
  for (std::size_t i = 0; i < t; ++i) x[i * cols + 5] = 0.0f;  // input 5 never fires
  const auto w = weights(rows, cols, 4);
  const auto H = hessian(x, t, cols);
  const matrix_view<const float> W(w.data(), rows, cols), Hv(H.data(), cols, cols);
  auto g = mxq::gptq<mxq::mxfp4>(W, Hv);
  // Row 2's second block as NaN (what a NaN weight block is in the packed form).
  g.packed.scale(2, 1) = mxq::e8m0_scale::nan_code;
  const auto before = g;
  mxq::refine_options o;
  o.damp = g.damp;
  mxq::refine_codes<mxq::mxfp4>(W, Hv, g.packed, g.dequantized, o);
  for (std::size_t r = 0; r < rows; ++r) CHECK(g.dequantized[r * cols + 5] == before.dequantized[r * cols + 5]);
  for (std::size_t c = 32; c < 64; ++c) CHECK(g.packed.code(2, c) == before.packed.code(2, c));
}

TEST_CASE("refine_codes: bad arguments are named errors", "[refine]") {
  const std::size_t rows = 4, cols = 32;
  const auto w = weights(rows, cols, 1);
  std::vector<float> H(cols * cols, 0.0f);
  for (std::size_t i = 0; i < cols; ++i) H[i * cols + i] = 1.0f;
  const matrix_view<const float> W(w.data(), rows, cols), Hv(H.data(), cols, cols);
  auto g = mxq::gptq<mxq::mxfp4>(W, Hv);
  mxq::refine_options o;
  const matrix_view<const float> Hsmall(H.data(), cols / 2, cols / 2);
  CHECK_THROWS_WITH(mxq::refine_codes<mxq::mxfp4>(W, Hsmall, g.packed, g.dequantized, o), Contains("refine_codes: H is 16x16"));
  std::vector<float> shortq(rows * cols - 1);
  CHECK_THROWS_WITH(mxq::refine_codes<mxq::mxfp4>(W, Hv, g.packed, shortq, o), Contains("quantized matrix"));
  o.quant.rounding = mxq::rounding::stochastic;
  CHECK_THROWS_WITH(mxq::refine_codes<mxq::mxfp4>(W, Hv, g.packed, g.dequantized, o), Contains("stochastic"));
  o.quant.rounding = mxq::rounding::nearest_even;
  o.damp = -1;
  CHECK_THROWS_WITH(mxq::refine_codes<mxq::mxfp4>(W, Hv, g.packed, g.dequantized, o), Contains("damp"));
}

}  // namespace test_refine
