// The SIMD quantize / dequantize / fake_quant kernels against the scalar oracle, bit for bit:
// random and adversarial data (ties, saturation, NaN/Inf, +-0, FP32 subnormals, amax just below
// powers of two, extreme exponents), ragged rows, unaligned and strided views, every format,
// layout, rounding mode and scale rule with a fast path.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mxq/format.hpp"
#include "mxq/quantize.hpp"

// Everything in a namespace of its own: the test programs are unity builds (tests/CMakeLists.txt).
namespace test_kernel_quantize {

namespace {

using mxq::matrix_view;

// Values: index 0 of every block may be forced to a chosen amax; the generator mixes regimes.
struct gen {
  std::mt19937 rng;
  explicit gen(unsigned seed) : rng(seed) {}
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(rng); }
  int uni(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
  bool coin(double p) { return std::bernoulli_distribution(p)(rng); }
};

template <class F>
double midpoint(int k) {
  return mxq::element_codec<typename F::element>::midpoints[static_cast<std::size_t>(k)];
}

// A block of adversarial values for an E8M0 format at exponent e (scale 2^e).
template <class F>
void fill_e8m0_block(gen& g, float* b, std::size_t n, int regime) {
  using C = mxq::element_codec<typename F::element>;
  const int e = g.uni(-135, 125);
  const double s = std::ldexp(1.0, e);
  for (std::size_t i = 0; i < n; ++i) {
    double v;
    switch (regime) {
      case 0: v = g.normal() * std::ldexp(1.0, g.uni(-20, 20)); break;           // wide random
      case 1: v = midpoint<F>(g.uni(0, C::magnitude_count - 2)) * s; break;      // exact ties
      case 2: {                                                                 // near ties
        const float t = static_cast<float>(midpoint<F>(g.uni(0, C::magnitude_count - 2)) * s);
        v = std::nextafter(t, g.coin(0.5) ? std::numeric_limits<float>::infinity() : 0.0f);
        break;
      }
      case 3: v = C::magnitudes[static_cast<std::size_t>(g.uni(0, C::magnitude_count - 1))] * s; break;  // grid
      case 4: v = std::ldexp(static_cast<double>(g.normal()), g.uni(-150, -120)); break;           // subnormals
      default: v = g.normal() * s * 4.0; break;
    }
    float f = static_cast<float>(v);
    if (!std::isfinite(f)) f = 0.0f;
    b[i] = g.coin(0.5) ? -f : f;
  }
  // amax placement: exactly a power of two, just below one, the format maximum, beyond it.
  if (n > 0 && regime != 0) {
    const float p2 = static_cast<float>(std::ldexp(1.0, std::clamp(e + C::emax + g.uni(-1, 1), -149, 127)));
    switch (g.uni(0, 4)) {
      case 0: b[g.uni(0, static_cast<int>(n) - 1)] = p2; break;
      case 1: b[g.uni(0, static_cast<int>(n) - 1)] = -std::nextafter(p2, 0.0f); break;
      case 2: b[g.uni(0, static_cast<int>(n) - 1)] = static_cast<float>(C::max_value * s); break;
      case 3: b[g.uni(0, static_cast<int>(n) - 1)] = std::nextafter(static_cast<float>(C::max_value * s), 0.0f); break;
      default: break;
    }
  }
}

std::vector<float> make_matrix(gen& g, std::size_t rows, std::size_t cols, std::size_t block, bool nvfp4) {
  std::vector<float> m(rows * cols);
  constexpr float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c0 = 0; c0 < cols; c0 += block) {
      const std::size_t n = std::min(block, cols - c0);
      float* b = m.data() + r * cols + c0;
      const int regime = g.uni(0, 12);
      if (regime <= 5) {
        if (nvfp4) {
          // NVFP4 ties: with tensor scale 1, a block whose amax is 6*v has scale v (an E4M3 value).
          using C = mxq::element_codec<mxq::e2m1>;
          const double v = mxq::element_codec<mxq::e4m3>::magnitudes[static_cast<std::size_t>(g.uni(1, 126))];
          for (std::size_t i = 0; i < n; ++i) {
            float f = static_cast<float>(C::midpoints[static_cast<std::size_t>(g.uni(0, 6))] * v);
            if (regime == 1) f = std::nextafter(f, g.coin(0.5) ? inf : 0.0f);
            if (regime == 2) f = static_cast<float>(C::magnitudes[static_cast<std::size_t>(g.uni(0, 7))] * v);
            if (regime == 3) f = g.normal() * static_cast<float>(v);
            b[i] = g.coin(0.5) ? -f : f;
          }
          b[g.uni(0, static_cast<int>(n) - 1)] = static_cast<float>(6.0 * v);
        } else {
          // filled per format by the caller (needs F); generic data here
          for (std::size_t i = 0; i < n; ++i) b[i] = g.normal() * std::ldexp(1.0f, g.uni(-10, 10));
        }
      } else if (regime == 6) {
        for (std::size_t i = 0; i < n; ++i) b[i] = g.coin(0.5) ? 0.0f : -0.0f;  // all zeros
      } else if (regime == 7) {
        for (std::size_t i = 0; i < n; ++i) b[i] = g.normal();
        b[g.uni(0, static_cast<int>(n) - 1)] = g.coin(0.5) ? nan : (g.coin(0.5) ? inf : -inf);
      } else if (regime == 8) {
        for (std::size_t i = 0; i < n; ++i)  // FP32 subnormals only
          b[i] = std::bit_cast<float>(static_cast<std::uint32_t>(g.uni(0, 0x7FFFFF)) | (g.coin(0.5) ? 0x80000000u : 0u));
      } else if (regime == 9) {
        for (std::size_t i = 0; i < n; ++i)  // near FLT_MAX
          b[i] = std::numeric_limits<float>::max() * (g.coin(0.3) ? 1.0f : g.normal() * 0.3f);
      } else if (regime == 10) {
        for (std::size_t i = 0; i < n; ++i)  // mixed huge and tiny in one block
          b[i] = std::ldexp(g.normal(), g.uni(-149, 127));
      } else {
        for (std::size_t i = 0; i < n; ++i) b[i] = g.normal();
      }
    }
  if (nvfp4 && rows * cols > 0) m[0] = 6.0f * 448.0f;  // tensor amax -> tensor scale exactly 1
  return m;
}

bool same_bits(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

template <class F, class Layout>
void compare_packed(const mxq::packed_matrix<F, Layout>& fast, const mxq::packed_matrix<F, Layout>& ref,
                    const std::string& what) {
  INFO(what);
  REQUIRE(fast.rows() == ref.rows());
  REQUIRE(fast.cols() == ref.cols());
  CHECK(fast.tensor().scale == ref.tensor().scale);
  std::size_t bad_codes = 0, bad_scales = 0;
  for (std::size_t i = 0; i < ref.code_bytes().size(); ++i) bad_codes += fast.code_bytes()[i] != ref.code_bytes()[i];
  for (std::size_t i = 0; i < ref.scale_data().size(); ++i) bad_scales += fast.scale_data()[i] != ref.scale_data()[i];
  if (bad_codes || bad_scales) {
    for (std::size_t r = 0; r < ref.rows(); ++r)
      for (std::size_t c = 0; c < ref.cols(); ++c)
        if (fast.code(r, c) != ref.code(r, c) || fast.scale(r, c / ref.block_length()) != ref.scale(r, c / ref.block_length())) {
          UNSCOPED_INFO("first mismatch at row " << r << " col " << c << ": code " << int(fast.code(r, c)) << " vs "
                                                  << int(ref.code(r, c)) << ", scale " << int(fast.scale(r, c / ref.block_length()))
                                                  << " vs " << int(ref.scale(r, c / ref.block_length())));
          r = ref.rows();
          break;
        }
  }
  CHECK(bad_codes == 0);
  CHECK(bad_scales == 0);
}

void compare_values(const std::vector<float>& fast, const std::vector<float>& ref, const std::vector<float>& in,
                    const std::string& what) {
  INFO(what);
  REQUIRE(fast.size() == ref.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < ref.size(); ++i)
    if (!same_bits(fast[i], ref[i]) && ++bad <= 3)
      UNSCOPED_INFO("index " << i << ": input " << (i < in.size() ? in[i] : 0.0f) << " fast " << fast[i] << " ref " << ref[i]);
  CHECK(bad == 0);
}

template <class F, class Layout>
void check_case(gen& g, std::size_t rows, std::size_t cols, const mxq::quant_options& opt, std::size_t offset,
                const std::string& label) {
  constexpr bool nv = mxq::kernel::is_ue4m3_fast<F, mxq::lsb_first_layout>;
  const std::size_t bl = static_cast<std::size_t>(F::block_size);
  std::vector<float> storage = make_matrix(g, rows, cols + offset, bl, nv);  // spare columns for the offset
  std::vector<float> base(rows * cols);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < cols; ++c) base[r * cols + c] = storage[r * (cols + offset) + c];
    if constexpr (!nv) {
      for (std::size_t c0 = 0; c0 < cols; c0 += bl) {
        if (g.coin(0.45)) fill_e8m0_block<F>(g, base.data() + r * cols + c0, std::min(bl, cols - c0), g.uni(0, 5));
      }
    }
  }
  if constexpr (nv) base[0] = 6.0f * 448.0f;
  // Unaligned copy: the data starts `offset` floats into a buffer.
  std::vector<float> buf(base.size() + offset + 1);
  std::memcpy(buf.data() + offset, base.data(), base.size() * sizeof(float));
  const matrix_view<const float> x(buf.data() + offset, rows, cols);
  const std::string what = std::string(mxq::format_traits<F>::name) + " " + std::string(Layout::name) + " " + label +
                           " " + std::to_string(rows) + "x" + std::to_string(cols) + " offset " + std::to_string(offset);
  INFO(what);

  REQUIRE(mxq::kernel::can_quantize<F, Layout>(opt) == mxq::kernel::simd_enabled());
  const auto fast = mxq::quantize<F, Layout>(x, opt);
  const auto ref = mxq::reference::quantize<F, Layout>(x, opt);
  compare_packed(fast, ref, what + " quantize");
  {  // into a reused packed matrix full of garbage
    mxq::packed_matrix<F, Layout> reuse(rows, cols);
    for (auto& b : reuse.code_bytes()) b = 0xA5;
    for (auto& sc : reuse.scale_data()) sc = 0x5A;
    mxq::quantize_into(x, reuse, opt);
    compare_packed(reuse, ref, what + " quantize_into");
  }
  compare_values(mxq::dequantize(fast), mxq::reference::dequantize(ref), base, what + " dequantize");

  if constexpr (std::is_same_v<Layout, mxq::lsb_first_layout>) {
    std::vector<float> fq(base.size()), rq(base.size());
    mxq::fake_quant<F>(x, matrix_view<float>(fq.data(), rows, cols), opt);
    mxq::reference::fake_quant<F>(x, matrix_view<float>(rq.data(), rows, cols), opt);
    compare_values(fq, rq, base, what + " fake_quant");
    // In place.
    std::vector<float> inplace = base;
    mxq::fake_quant<F>(matrix_view<const float>(inplace.data(), rows, cols), matrix_view<float>(inplace.data(), rows, cols), opt);
    compare_values(inplace, rq, base, what + " fake_quant in place");
    // Strided: the transposed view of a column-major copy, output strided as well.
    std::vector<float> cm(base.size()), out_cm(base.size()), ref_cm(base.size());
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) cm[c * rows + r] = base[r * cols + c];
    const matrix_view<const float> xt = matrix_view<const float>(cm.data(), cols, rows).t();
    mxq::fake_quant<F>(xt, matrix_view<float>(out_cm.data(), cols, rows).t(), opt);
    mxq::reference::fake_quant<F>(xt, matrix_view<float>(ref_cm.data(), cols, rows).t(), opt);
    compare_values(out_cm, ref_cm, cm, what + " fake_quant strided");
    compare_packed(mxq::quantize<F, Layout>(xt, opt), ref, what + " quantize strided");
  }
}

template <class F, class Layout = mxq::lsb_first_layout>
void check_format(unsigned seed) {
  gen g(seed);
  const std::size_t bl = static_cast<std::size_t>(F::block_size);
  const bool whole_blocks_only = std::is_same_v<Layout, mxq::split_halves_layout>;
  std::vector<std::pair<std::size_t, std::size_t>> shapes = {{1, bl}, {3, 4 * bl}, {17, 8 * bl}, {64, 2 * bl}};
  if (!whole_blocks_only) {
    for (std::size_t c : {std::size_t{1}, std::size_t{7}, bl - 1, bl + 1, 2 * bl + 9, std::size_t{100}, std::size_t{333}})
      shapes.emplace_back(5, c);
  }
  for (mxq::rounding r : {mxq::rounding::nearest_even, mxq::rounding::nearest_away, mxq::rounding::toward_zero})
    for (mxq::scale_rule sr : {mxq::scale_rule::floor, mxq::scale_rule::ceil})
      for (const auto& [rows, cols] : shapes)
        for (std::size_t offset : {std::size_t{0}, std::size_t{1}, std::size_t{3}}) {
          mxq::quant_options opt;
          opt.rounding = r;
          opt.scale_rule = sr;
          check_case<F, Layout>(g, rows, cols, opt, offset,
                                std::string("round ") + std::to_string(static_cast<int>(r)) + " rule " +
                                    std::to_string(static_cast<int>(sr)));
        }
  // mse (the oracle's candidate search, then the vector element path), weighted and not.
  for (mxq::rounding r : {mxq::rounding::nearest_even, mxq::rounding::nearest_away}) {
    mxq::quant_options opt;
    opt.rounding = r;
    opt.scale_rule = mxq::scale_rule::mse;
    check_case<F, Layout>(g, 9, 3 * bl + (whole_blocks_only ? 0 : 5), opt, 1, "mse");
    std::vector<float> w(4 * bl);
    for (float& v : w) v = std::fabs(g.normal()) + 0.01f;
    opt.column_weights = w;
    check_case<F, Layout>(g, 6, 4 * bl, opt, 0, "mse weighted");
  }
}

}  // namespace

TEST_CASE("kernel quantize: E8M0 mini-float formats match the oracle", "[kernel][quantize]") {
  check_format<mxq::mxfp4>(1);
  check_format<mxq::mxfp4, mxq::split_halves_layout>(2);
  check_format<mxq::mxfp6_e2m3>(3);
  check_format<mxq::mxfp6_e3m2>(4);
  check_format<mxq::mxfp8_e4m3>(5);
  check_format<mxq::mxfp8_e5m2>(6);
}

TEST_CASE("kernel quantize: MXINT formats match the oracle", "[kernel][quantize]") {
  check_format<mxq::mxint8>(7);
  check_format<mxq::mxint6>(8);
  check_format<mxq::mxint4>(9);
  check_format<mxq::mxint4, mxq::split_halves_layout>(10);
  check_format<mxq::mxint3>(11);
}

TEST_CASE("kernel quantize: NVFP4 matches the oracle", "[kernel][quantize]") {
  check_format<mxq::nvfp4>(12);
  check_format<mxq::nvfp4, mxq::split_halves_layout>(13);
}

TEST_CASE("kernel quantize: large random matrices, every mode", "[kernel][quantize]") {
  gen g(99);
  for (mxq::rounding r : {mxq::rounding::nearest_even, mxq::rounding::nearest_away, mxq::rounding::toward_zero}) {
    mxq::quant_options opt;
    opt.rounding = r;
    check_case<mxq::mxfp4, mxq::lsb_first_layout>(g, 61, 4096 + 32 * 3 + 17, opt, 1, "large");
    check_case<mxq::mxint4, mxq::lsb_first_layout>(g, 61, 1000, opt, 0, "large");
    check_case<mxq::mxfp8_e4m3, mxq::lsb_first_layout>(g, 33, 1111, opt, 2, "large");
    check_case<mxq::mxfp6_e2m3, mxq::lsb_first_layout>(g, 33, 1111, opt, 2, "large");
    check_case<mxq::nvfp4, mxq::lsb_first_layout>(g, 40, 1000, opt, 0, "large");
  }
}

TEST_CASE("kernel quantize: rows split over threads give the oracle's bits", "[kernel][quantize][threads]") {
  // quant_options::threads splits rows over the pool (grain ~16K elements), strided views and
  // ragged rows included; every split must reproduce the oracle exactly.
  gen g(123);
  for (int threads : {2, 3, 0}) {
    mxq::quant_options opt;
    opt.threads = threads;
    const std::string label = "threads " + std::to_string(threads);
    check_case<mxq::mxfp4, mxq::lsb_first_layout>(g, 67, 4096 + 17, opt, 1, label);
    check_case<mxq::mxint4, mxq::split_halves_layout>(g, 45, 2048, opt, 0, label);
    check_case<mxq::nvfp4, mxq::lsb_first_layout>(g, 50, 1000, opt, 2, label);
    check_case<mxq::mxfp8_e4m3, mxq::lsb_first_layout>(g, 40, 999, opt, 3, label);
    opt.scale_rule = mxq::scale_rule::mse;
    check_case<mxq::mxint4, mxq::lsb_first_layout>(g, 20, 2000, opt, 0, label + " mse");
  }
}

TEST_CASE("kernel quantize: every FP32 exponent, every E8M0 scale", "[kernel][quantize]") {
  // One block per (exponent, pattern): the whole FP32 range including subnormals and the
  // largest finite values, for each rounding mode and scale rule.
  std::vector<float> m;
  std::mt19937 rng(5);
  for (int e = -149; e <= 127; ++e)
    for (int pattern = 0; pattern < 3; ++pattern)
      for (int i = 0; i < 32; ++i) {
        const float base = std::ldexp(1.0f, e);
        float v = pattern == 0 ? base * (1.0f + static_cast<float>(i) / 32.0f)
                : pattern == 1 ? std::nextafter(base, 0.0f) * (i % 2 ? -1.0f : 1.0f)
                               : base * std::uniform_real_distribution<float>(0.0f, 1.999f)(rng);
        if (!std::isfinite(v)) v = std::numeric_limits<float>::max();
        m.push_back(v);
      }
  const std::size_t rows = m.size() / 64;
  const matrix_view<const float> x(m.data(), rows, 64);
  auto run = [&](auto tag) {
    using F = typename decltype(tag)::type;
    for (mxq::rounding r : {mxq::rounding::nearest_even, mxq::rounding::nearest_away, mxq::rounding::toward_zero})
      for (mxq::scale_rule sr : {mxq::scale_rule::floor, mxq::scale_rule::ceil}) {
        mxq::quant_options opt;
        opt.rounding = r;
        opt.scale_rule = sr;
        const std::string what = std::string(mxq::format_traits<F>::name) + " exponent sweep";
        compare_packed(mxq::quantize<F>(x, opt), mxq::reference::quantize<F>(x, opt), what);
        std::vector<float> a(m.size()), b(m.size());
        mxq::fake_quant<F>(x, matrix_view<float>(a.data(), rows, 64), opt);
        mxq::reference::fake_quant<F>(x, matrix_view<float>(b.data(), rows, 64), opt);
        compare_values(a, b, m, what + " fake_quant");
      }
  };
  mxq::for_each_format([&](auto tag) {
    using F = typename decltype(tag)::type;
    if constexpr (mxq::kernel::has_fast_quant<F>) run(tag);
  });
}

TEST_CASE("kernel dequantize: arbitrary codes and scale bytes decode like the oracle", "[kernel][dequantize]") {
  std::mt19937 rng(17);
  auto run = [&](auto tag, auto layout_tag) {
    using F = typename decltype(tag)::type;
    using L = typename decltype(layout_tag)::type;
    for (std::size_t cols : {std::size_t{F::block_size}, std::size_t{8 * F::block_size}, std::size_t{F::block_size * 3 + 5}}) {
      if (std::is_same_v<L, mxq::split_halves_layout> && cols % F::block_size) continue;
      mxq::packed_matrix<F, L> q(13, cols, mxq::tensor_params{0.75f});
      for (auto& b : q.code_bytes()) b = static_cast<std::uint8_t>(rng());
      for (auto& s : q.scale_data()) s = static_cast<std::uint8_t>(rng());
      q.scale(0, 0) = 0;
      q.scale(1, 0) = 254;
      q.scale(2, 0) = 0xFF;
      // Rebuild the codes through set_code so bits past the row's end stay zero as quantize leaves them.
      for (std::size_t r = 0; r < q.rows(); ++r)
        for (std::size_t c = 0; c < cols; ++c) q.set_code(r, c, q.code(r, c));
      const std::string what = std::string(mxq::format_traits<F>::name) + " " + std::string(L::name) + " " + std::to_string(cols);
      compare_values(mxq::dequantize(q), mxq::reference::dequantize(q), {}, what);
      // Strided output.
      std::vector<float> a(13 * cols), b(13 * cols);
      mxq::dequantize(q, matrix_view<float>(a.data(), cols, 13).t());
      mxq::reference::dequantize(q, matrix_view<float>(b.data(), cols, 13).t());
      compare_values(a, b, {}, what + " strided");
    }
  };
  mxq::for_each_format([&](auto tag) {
    using F = typename decltype(tag)::type;
    if constexpr (mxq::kernel::has_fast_quant<F>) run(tag, mxq::format_tag<mxq::lsb_first_layout>{});
    if constexpr (mxq::kernel::has_fast_quant<F, mxq::split_halves_layout>) run(tag, mxq::format_tag<mxq::split_halves_layout>{});
  });
}

TEST_CASE("kernel quantize: f16 and bf16 inputs equal quantizing their float values", "[kernel][quantize]") {
  gen g(23);
  const std::size_t rows = 7, cols = 200;
  std::vector<mxq::f16> h(rows * cols);
  std::vector<mxq::bf16> bh(rows * cols);
  std::vector<float> hf(rows * cols), bf(rows * cols);
  for (std::size_t i = 0; i < h.size(); ++i) {
    const float v = g.normal() * std::ldexp(1.0f, g.uni(-20, 10));
    h[i] = mxq::f16::from_float(v);
    bh[i] = mxq::bf16::from_float(v * 1e20f);
    hf[i] = h[i].to_float();
    bf[i] = bh[i].to_float();
  }
  h[5] = mxq::f16{0x7C00};  // +Inf: NaN block
  hf[5] = h[5].to_float();
  auto run = [&](auto tag) {
    using F = typename decltype(tag)::type;
    const mxq::quant_options opt;
    compare_packed(mxq::quantize<F>(matrix_view<const mxq::f16>(h.data(), rows, cols), opt),
                   mxq::reference::quantize<F>(matrix_view<const float>(hf.data(), rows, cols), opt), "f16");
    compare_packed(mxq::quantize<F>(matrix_view<const mxq::bf16>(bh.data(), rows, cols), opt),
                   mxq::reference::quantize<F>(matrix_view<const float>(bf.data(), rows, cols), opt), "bf16");
    {  // fake_quant from 16-bit input
      std::vector<float> a(rows * cols), b(rows * cols);
      mxq::fake_quant<F>(matrix_view<const mxq::bf16>(bh.data(), rows, cols), matrix_view<float>(a.data(), rows, cols), opt);
      mxq::reference::fake_quant<F>(matrix_view<const float>(bf.data(), rows, cols), matrix_view<float>(b.data(), rows, cols), opt);
      compare_values(a, b, bf, "bf16 fake_quant");
      mxq::fake_quant<F>(matrix_view<const mxq::f16>(h.data(), rows, cols), matrix_view<float>(a.data(), rows, cols), opt);
      mxq::reference::fake_quant<F>(matrix_view<const float>(hf.data(), rows, cols), matrix_view<float>(b.data(), rows, cols), opt);
      compare_values(a, b, hf, "f16 fake_quant");
    }
    // Strided 16-bit view.
    compare_packed(mxq::quantize<F>(matrix_view<const mxq::bf16>(bh.data(), rows / 2, cols, 2 * static_cast<std::ptrdiff_t>(cols)), opt),
                   mxq::reference::quantize<F>(matrix_view<const float>(bf.data(), rows / 2, cols, 2 * static_cast<std::ptrdiff_t>(cols)), opt),
                   "bf16 strided");
  };
  mxq::for_each_format([&](auto tag) {
    using F = typename decltype(tag)::type;
    if constexpr (mxq::kernel::has_fast_quant<F>) run(tag);
  });
  // A format without a fast path converts and runs the oracle.
  const auto a = mxq::quantize<mxq::int4_g128>(matrix_view<const mxq::f16>(h.data(), rows, cols));
  const auto b = mxq::reference::quantize<mxq::int4_g128>(matrix_view<const float>(hf.data(), rows, cols));
  CHECK(std::equal(a.code_bytes().begin(), a.code_bytes().end(), b.code_bytes().begin()));
}

TEST_CASE("kernel fake_quant: NVFP4 with a caller's tensor scale", "[kernel][quantize]") {
  gen g(31);
  std::vector<float> x(9 * 48);
  for (float& v : x) v = g.normal() * 3.0f;
  for (float ts : {1.0f, 0.0123f, 3.5e-39f, 1e30f, 0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN()}) {
    const mxq::tensor_params t{ts};
    std::vector<float> a(x.size()), b(x.size());
    mxq::fake_quant<mxq::nvfp4>(matrix_view<const float>(x.data(), 9, 48), matrix_view<float>(a.data(), 9, 48), {}, &t);
    mxq::reference::fake_quant<mxq::nvfp4>(matrix_view<const float>(x.data(), 9, 48), matrix_view<float>(b.data(), 9, 48), {}, &t);
    compare_values(a, b, x, "tensor scale " + std::to_string(ts));
  }
}

TEST_CASE("kernel quantize: stochastic rounding and non-fast formats still take the oracle", "[kernel][quantize]") {
  mxq::quant_options opt;
  opt.rounding = mxq::rounding::stochastic;
  CHECK_FALSE(mxq::kernel::can_quantize<mxq::mxfp4>(opt));
  CHECK_FALSE(mxq::kernel::can_quantize<mxq::int4_g128>({}));
  CHECK(mxq::kernel::can_quantize<mxq::mxfp4>({}) == mxq::kernel::simd_enabled());
  std::mt19937 rng(3);
  opt.uniform = [&] { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); };
  std::vector<float> x(64, 0.3f);
  const auto q = mxq::quantize<mxq::mxfp4>(matrix_view<const float>(x.data(), 2, 32), opt);
  CHECK(q.rows() == 2);
}

}  // namespace test_kernel_quantize
