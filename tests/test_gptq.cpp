// GPTQ over any format: equality with a plain OBQ implementation (full inverses) on tiny layers,
// never worse than RTN on the H-weighted error, valid packed layout under act-order and static
// scales, damping retry, dead columns, caller scales, NVFP4 tensor scale, a user-defined format.
#include <catch2/catch.hpp>

#include <Eigen/Dense>
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <string_view>
#include <vector>

#include <mxq/format.hpp>
#include <mxq/gptq.hpp>
#include <mxq/hessian.hpp>
#include <mxq/metrics.hpp>
#include <mxq/quantize.hpp>

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_gptq {

using Catch::Matchers::Contains;

// A user-defined 4-bit format: sign + 3-bit linear magnitude (E1M2-like), blocks of 64, E8M0 scales.
struct my_e1m2 {
  static constexpr int bits = 4;
  static constexpr mxq::element_encoding encoding = mxq::element_encoding::sign_magnitude;
  static constexpr bool has_inf = false;
  static constexpr std::array<float, 8> magnitudes{0, 0.25f, 0.5f, 0.75f, 1, 1.25f, 1.5f, 1.75f};
  static constexpr int emax = 0;
};
struct my_fmt : mxq::block_format<my_e1m2, 64, mxq::e8m0_scale> {};
// The same element in blocks of 8, so tiny test layers hold several blocks.
struct my_fmt8 : mxq::block_format<my_e1m2, 8, mxq::e8m0_scale> { static constexpr std::string_view name = "my_fmt8"; };
// Small-block versions of library formats for the tiny brute-force layers.
struct mxfp4_b8 : mxq::block_format<mxq::e2m1, 8, mxq::e8m0_scale> { static constexpr std::string_view name = "mxfp4_b8"; };
struct nvfp4_b4 : mxq::block_format<mxq::e2m1, 4, mxq::ue4m3_scale<true>> { static constexpr std::string_view name = "nvfp4_b4"; };
struct int4_g8 : mxq::block_format<mxq::uint_element<4>, 8, mxq::float_scale<mxq::f32_storage, mxq::zero_point::minmax>> {
  static constexpr std::string_view name = "int4_g8";
};

namespace {

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct problem {
  std::size_t rows, cols;
  std::vector<float> w;  // [rows, cols]
  Eigen::MatrixXf h;     // [cols, cols]
  mxq::matrix_view<const float> wv() const { return {w.data(), rows, cols}; }
  mxq::matrix_view<const float> hv() const { return {h.data(), cols, cols}; }
};

// Correlated inputs (a random mixing of channels with uneven scales) -> H = (2/n) XᵀX.
problem make_problem(std::size_t rows, std::size_t cols, unsigned seed, std::size_t tokens = 0) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  problem p{rows, cols, std::vector<float>(rows * cols), {}};
  for (auto& v : p.w) v = nd(gen) * 0.05f;
  if (tokens == 0) tokens = 4 * cols + 16;
  row_major mix(static_cast<Eigen::Index>(cols), static_cast<Eigen::Index>(cols));
  for (Eigen::Index i = 0; i < mix.rows(); ++i)
    for (Eigen::Index j = 0; j < mix.cols(); ++j) mix(i, j) = (i == j ? 1.0f : 0.0f) + 0.4f * nd(gen);
  row_major z(static_cast<Eigen::Index>(tokens), static_cast<Eigen::Index>(cols));
  for (Eigen::Index t = 0; t < z.rows(); ++t)
    for (Eigen::Index j = 0; j < z.cols(); ++j) z(t, j) = nd(gen) * (1.0f + static_cast<float>(j % 5));
  const row_major x = z * mix;
  mxq::hessian_accumulator acc(cols);
  acc.add(mxq::matrix_view<const float>(x.data(), tokens, cols));
  p.h = acc.eigen();
  return p;
}

// Plain OBQ/GPTQ greedy in double: at each step quantize one column (with its block's parameters,
// chosen at the block's first column from the current weights, or fixed up front), then the
// optimal update of the still-free columns from a freshly inverted H[F, F].
template <class F>
std::vector<float> brute_force(const problem& p, const std::vector<std::size_t>& order, bool is_static,
                               const mxq::quant_options& q, double percdamp, double* loss) {
  using E = typename F::element;
  const std::size_t n = p.cols, blen = mxq::block_length<F>(n);
  Eigen::MatrixXd hd = p.h.cast<double>();
  const double damp = percdamp * hd.diagonal().mean();
  hd.diagonal().array() += damp;
  const mxq::tensor_params t = mxq::compute_tensor_params<F>(p.wv());
  std::vector<float> out(p.rows * n);
  *loss = 0.0;
  for (std::size_t r = 0; r < p.rows; ++r) {
    std::vector<double> w(n);
    for (std::size_t c = 0; c < n; ++c) w[c] = p.w[r * n + c];
    std::vector<mxq::block_params> params((n + blen - 1) / blen);
    if (is_static)
      for (std::size_t b = 0; b < params.size(); ++b) {
        std::vector<float> v;
        for (std::size_t c = b * blen; c < std::min(n, (b + 1) * blen); ++c) v.push_back(static_cast<float>(w[c]));
        params[b] = mxq::choose_block_params<F>(v, {}, q, t);
      }
    std::vector<std::size_t> free_cols(order.begin(), order.end());
    for (std::size_t pos = 0; pos < n; ++pos) {
      const std::size_t j = order[pos], b = j / blen;
      if (!is_static && (pos == 0 || order[pos - 1] / blen != b)) {  // block start (blocks contiguous)
        std::vector<float> v;
        for (std::size_t k = pos; k < n && order[k] / blen == b; ++k) v.push_back(static_cast<float>(w[order[k]]));
        params[b] = mxq::choose_block_params<F>(v, {}, q, t);
      }
      const float qv = mxq::decode_element<E>(mxq::encode_element<E>(static_cast<float>(w[j]), params[b], q), params[b]);
      const std::size_t m = free_cols.size();
      Eigen::MatrixXd sub(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(m));
      for (std::size_t a = 0; a < m; ++a)
        for (std::size_t c = 0; c < m; ++c)
          sub(static_cast<Eigen::Index>(a), static_cast<Eigen::Index>(c)) =
              hd(static_cast<Eigen::Index>(free_cols[a]), static_cast<Eigen::Index>(free_cols[c]));
      const Eigen::MatrixXd inv = sub.inverse();  // free_cols[0] == j
      const double err = (w[j] - qv) / inv(0, 0);
      *loss += (w[j] - qv) * (w[j] - qv) / inv(0, 0) / 2.0;
      for (std::size_t a = 1; a < m; ++a) w[free_cols[a]] -= err * inv(static_cast<Eigen::Index>(a), 0);
      w[j] = qv;
      free_cols.erase(free_cols.begin());
      out[r * n + j] = qv;
    }
  }
  return out;
}

template <class F>
std::vector<float> rtn(const problem& p) {
  std::vector<float> q(p.w.size());
  mxq::fake_quant<F>(p.wv(), mxq::matrix_view<float>(q.data(), p.rows, p.cols));
  return q;
}

template <class F>
void check_layout(const mxq::gptq_result<F>& r) {
  const std::vector<float> unpacked = mxq::dequantize(r.packed);
  REQUIRE(unpacked.size() == r.dequantized.size());
  for (std::size_t i = 0; i < unpacked.size(); ++i) REQUIRE(unpacked[i] == r.dequantized[i]);
}

template <class F>
void check_against_brute_force(const problem& p, mxq::gptq_options o) {
  const auto r = mxq::gptq<F>(p.wv(), p.hv(), o);
  double loss = 0.0;
  const auto ref = brute_force<F>(p, r.order, r.static_scales, o.quant, o.percdamp, &loss);
  std::size_t mismatches = 0;
  // Float working values vs double: min-max (affine) scales move continuously with the values, so
  // allow float noise; a different code would move a value by a grid step (>= 1e-3 of the range).
  float wmax = 0.0f;
  for (float v : p.w) wmax = std::max(wmax, std::fabs(v));
  for (std::size_t i = 0; i < ref.size(); ++i) mismatches += std::fabs(ref[i] - r.dequantized[i]) > 1e-5f * wmax;
  INFO("lazy " << o.block_size << " rows " << p.rows << " format " << mxq::format_traits<F>::name << " block " << F::block_size << " order " << static_cast<int>(o.order)
                 << " static " << r.static_scales);
  CHECK(mismatches == 0);
  CHECK(r.loss == Approx(loss).epsilon(1e-3));
  check_layout(r);
}

}  // namespace

TEST_CASE("gptq equals a plain OBQ implementation on tiny layers", "[gptq]") {
  for (unsigned seed : {1u, 2u, 3u}) {
    const problem p = make_problem(4, 8, seed);
    mxq::gptq_options o;
    o.block_size = 4;
    check_against_brute_force<mxq::int4_pc>(p, o);
    check_against_brute_force<mxq::mxfp4>(p, o);  // one ragged block of 8
    check_against_brute_force<nvfp4_b4>(p, o);
    check_against_brute_force<my_fmt8>(p, o);
    const problem p2 = make_problem(3, 40, seed + 10);
    for (std::size_t lazy : {8u, 16u, 128u}) {
      o.block_size = lazy;
      check_against_brute_force<mxfp4_b8>(p2, o);
      check_against_brute_force<nvfp4_b4>(p2, o);
      check_against_brute_force<int4_g8>(p2, o);
      check_against_brute_force<mxq::int4_pc_sym>(p2, o);
      check_against_brute_force<my_fmt8>(p2, o);
    }
    for (auto ord : {mxq::act_order::blockwise, mxq::act_order::global}) {
      o.order = ord;
      o.block_size = 16;
      check_against_brute_force<mxfp4_b8>(p2, o);
      check_against_brute_force<int4_g8>(p2, o);
      check_against_brute_force<mxq::int4_pc>(p2, o);
    }
    o = {};
    o.static_scales = true;
    o.block_size = 8;
    check_against_brute_force<mxfp4_b8>(p2, o);
    check_against_brute_force<nvfp4_b4>(p2, o);
  }
}

TEST_CASE("gptq loss is half the damped H-weighted error", "[gptq]") {
  const problem p = make_problem(16, 96, 7);
  const auto r = mxq::gptq<mxq::mxfp4>(p.wv(), p.hv());
  Eigen::MatrixXf hd = p.h;
  hd.diagonal().array() += static_cast<float>(r.damp);
  CHECK(r.damp_fraction == 0.01);
  CHECK(r.damp == Approx(0.01 * p.h.diagonal().cast<double>().mean()));
  CHECK(r.loss == Approx(mxq::hessian_weighted_error(p.wv(), r.view(), {hd.data(), 96, 96}) / 2).epsilon(1e-3));
}

TEMPLATE_TEST_CASE("gptq is never worse than RTN on the H-weighted error", "[gptq]", mxq::mxfp4, mxq::mxint4,
                   mxq::mxint8, mxq::mxfp6_e2m3, mxq::mxfp8_e4m3, mxq::nvfp4, mxq::int4_g128, mxq::int4_pc,
                   mxq::int4_pc_sym, mxq::int3_g128_sym, my_fmt) {
  for (unsigned seed : {11u, 12u, 13u}) {
    const problem p = make_problem(24, 256, seed);
    const auto q_rtn = rtn<TestType>(p);
    const double e_rtn = mxq::hessian_weighted_error(p.wv(), {q_rtn.data(), p.rows, p.cols}, p.hv());
    mxq::gptq_options o;
    for (int variant = 0; variant < 5; ++variant) {
      o = {};
      if (variant == 1) o.static_scales = true;
      if (variant == 2) o.order = mxq::act_order::blockwise;
      if (variant == 3) o.order = mxq::act_order::global;
      if (variant == 4) o.quant.scale_rule = mxq::scale_rule::mse;
      const auto r = mxq::gptq<TestType>(p.wv(), p.hv(), o);
      const double e = mxq::hessian_weighted_error(p.wv(), r.view(), p.hv());
      INFO("seed " << seed << " variant " << variant << " rtn " << e_rtn << " gptq " << e);
      CHECK(e < e_rtn);
      check_layout(r);
    }
  }
}

TEST_CASE("gptq: act-order and static scales keep the stored layout valid", "[gptq]") {
  const problem p = make_problem(40, 200, 21);  // 200 = 6 MX blocks + a ragged one
  for (auto ord : {mxq::act_order::none, mxq::act_order::blockwise, mxq::act_order::global})
    for (bool st : {false, true})
      for (auto rule : {mxq::scale_rule::floor, mxq::scale_rule::mse}) {
        mxq::gptq_options o;
        o.order = ord;
        o.static_scales = st;
        o.quant.scale_rule = rule;
        check_layout(mxq::gptq<mxq::mxfp4>(p.wv(), p.hv(), o));
        check_layout(mxq::gptq<mxq::nvfp4>(p.wv(), p.hv(), o));
        check_layout(mxq::gptq<mxq::int4_g128>(p.wv(), p.hv(), o));
        check_layout(mxq::gptq<mxq::mxfp6_e3m2>(p.wv(), p.hv(), o));
        const auto r = mxq::gptq<my_fmt>(p.wv(), p.hv(), o);
        check_layout(r);
        if (ord == mxq::act_order::global) CHECK(r.static_scales);
        if (ord != mxq::act_order::none) {
          // processing order is a permutation; blockwise keeps every block a contiguous run
          std::vector<std::size_t> sorted = r.order;
          std::sort(sorted.begin(), sorted.end());
          for (std::size_t i = 0; i < sorted.size(); ++i) REQUIRE(sorted[i] == i);
          if (ord == mxq::act_order::blockwise) {
            std::vector<std::size_t> first(4, 999), last(4, 0);
            for (std::size_t i = 0; i < r.order.size(); ++i) {
              const std::size_t b = r.order[i] / 64;
              first[b] = std::min(first[b], i);
              last[b] = std::max(last[b], i);
            }
            for (std::size_t b = 0; b < 4; ++b) REQUIRE(last[b] - first[b] + 1 == std::min<std::size_t>(64, 200 - b * 64));
          }
        }
      }
}

TEST_CASE("gptq: caller scales and the NVFP4 tensor scale are kept", "[gptq]") {
  const problem p = make_problem(8, 64, 31);
  const auto packed_rtn = mxq::quantize<mxq::nvfp4>(p.wv());
  std::vector<mxq::block_params> given(8 * 4);
  for (std::size_t r = 0; r < 8; ++r)
    for (std::size_t b = 0; b < 4; ++b) given[r * 4 + b] = packed_rtn.params(r, b);
  mxq::gptq_options o;
  o.scales = given;
  o.tensor = packed_rtn.tensor();
  const auto r = mxq::gptq<mxq::nvfp4>(p.wv(), p.hv(), o);
  CHECK(r.static_scales);
  CHECK(r.packed.tensor().scale == mxq::compute_tensor_params<mxq::nvfp4>(p.wv()).scale);
  for (std::size_t row = 0; row < 8; ++row)
    for (std::size_t b = 0; b < 4; ++b) REQUIRE(r.packed.scale(row, b) == packed_rtn.scale(row, b));
  check_layout(r);
  // default: the tensor scale comes from the original weights
  const auto d = mxq::gptq<mxq::nvfp4>(p.wv(), p.hv());
  CHECK(d.packed.tensor().scale == mxq::compute_tensor_params<mxq::nvfp4>(p.wv()).scale);
  o.scales = std::span<const mxq::block_params>(given.data(), 5);
  CHECK_THROWS_WITH(mxq::gptq<mxq::nvfp4>(p.wv(), p.hv(), o), Contains("caller scales"));
}

TEST_CASE("gptq: indefinite H retries with 10x damping", "[gptq]") {
  const std::size_t n = 8;
  std::mt19937 gen(5);
  std::normal_distribution<double> nd;
  Eigen::MatrixXd a(n, n);
  for (auto& v : a.reshaped()) v = nd(gen);
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(a);
  const Eigen::MatrixXd v = qr.householderQ();
  Eigen::VectorXd lambda = Eigen::VectorXd::Ones(n);
  lambda(n - 1) = -0.05;  // mean diag ~0.87: 1% damping is not enough, 10% is
  const Eigen::MatrixXf h = (v * lambda.asDiagonal() * v.transpose()).cast<float>();
  std::vector<float> w(2 * n);
  for (auto& x : w) x = static_cast<float>(nd(gen));
  const mxq::matrix_view<const float> wv(w.data(), 2, n), hv(h.data(), n, n);
  const auto r = mxq::gptq<mxq::int4_pc>(wv, hv);
  CHECK(r.damp_retries == 1);
  CHECK(r.damp_fraction == Approx(0.1));
  CHECK(r.damp == Approx(0.1 * h.diagonal().cast<double>().mean()));
  check_layout(r);

  const Eigen::MatrixXf neg = -Eigen::MatrixXf::Identity(n, n);  // never positive definite
  mxq::gptq_options o;
  o.damp_retries = 2;
  CHECK_THROWS_WITH(mxq::gptq<mxq::int4_pc>(wv, {neg.data(), n, n}, o), Contains("not positive definite"));
  o.rtn_fallback = true;
  const auto f = mxq::gptq<mxq::int4_pc>(wv, {neg.data(), n, n}, o);
  CHECK(f.rtn_fallback);
  std::vector<float> q(w.size());
  mxq::fake_quant<mxq::int4_pc>(wv, mxq::matrix_view<float>(q.data(), 2, n));
  CHECK(f.dequantized == q);
}

TEST_CASE("gptq: a dead input column is zeroed", "[gptq]") {
  problem p = make_problem(6, 48, 41);
  for (Eigen::Index i = 0; i < 48; ++i) p.h(5, i) = p.h(i, 5) = 0.0f;
  for (Eigen::Index i = 0; i < 48; ++i) p.h(30, i) = p.h(i, 30) = 0.0f;
  for (float& v : p.w) v += 0.5f;  // so that a zero is not a coincidence
  for (auto ord : {mxq::act_order::none, mxq::act_order::global}) {
    mxq::gptq_options o;
    o.order = ord;
    const auto r = mxq::gptq<mxq::mxint8>(p.wv(), p.hv(), o);
    CHECK(r.dead_columns == std::vector<std::size_t>{5, 30});
    for (std::size_t row = 0; row < 6; ++row) {
      CHECK(r.dequantized[row * 48 + 5] == 0.0f);
      CHECK(r.dequantized[row * 48 + 30] == 0.0f);
      CHECK(r.dequantized[row * 48 + 6] != 0.0f);
    }
    check_layout(r);
  }
}

TEST_CASE("gptq: result does not depend on the thread count", "[gptq]") {
  const problem p = make_problem(300, 96, 51);
  mxq::gptq_options o;
  o.threads = 1;
  const auto a = mxq::gptq<mxq::mxfp4>(p.wv(), p.hv(), o);
  o.threads = 3;
  const auto b = mxq::gptq<mxq::mxfp4>(p.wv(), p.hv(), o);
  CHECK(a.dequantized == b.dequantized);
  CHECK(a.loss == Approx(b.loss).epsilon(1e-9));
}

TEST_CASE("gptq: bad inputs are named errors", "[gptq]") {
  problem p = make_problem(4, 16, 61);
  CHECK_THROWS_WITH(mxq::gptq<mxq::mxfp4>(p.wv(), {p.h.data(), 15, 15}), Contains("H is 15x15"));
  p.w[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(mxq::gptq<mxq::mxfp4>(p.wv(), p.hv()), Contains("weight [0, 3]"));
  p.w[3] = 0.0f;
  p.h(2, 1) = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(mxq::gptq<mxq::mxfp4>(p.wv(), p.hv()), Contains("H[1, 2]"));
  p.h(2, 1) = 0.0f;
  mxq::gptq_options o;
  o.block_size = 0;
  CHECK_THROWS_AS(mxq::gptq<mxq::mxfp4>(p.wv(), p.hv(), o), mxq::error);
}

TEST_CASE("gptq: scale_rule::mse weights and stochastic rounding run", "[gptq]") {
  const problem p = make_problem(16, 128, 71);
  for (auto mw : {mxq::mse_weighting::hinv, mxq::mse_weighting::hseq, mxq::mse_weighting::hdiag, mxq::mse_weighting::uniform}) {
    mxq::gptq_options o;
    o.quant.scale_rule = mxq::scale_rule::mse;
    o.mse_weights = mw;
    check_layout(mxq::gptq<mxq::mxint4>(p.wv(), p.hv(), o));
  }
  std::mt19937_64 gen(1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  mxq::gptq_options o;
  o.quant.rounding = mxq::rounding::stochastic;
  o.quant.uniform = [&] { return u(gen); };
  check_layout(mxq::gptq<mxq::mxfp4>(p.wv(), p.hv(), o));
}

}  // namespace test_gptq
