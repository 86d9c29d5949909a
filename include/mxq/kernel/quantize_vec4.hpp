// Four-lane quantize / dequantize / fake_quant bodies, written once over the arch tag (last
// argument, as xsimd's kernels take it) on vec4::ops<A>: SSE4.2 on x86-64 CPUs without AVX2, NEON
// on AArch64. The arithmetic is the AVX2 kernels' (quantize.hpp explains why it is exact), lane
// for lane, so every body gives the scalar oracle's bits; only the final packing of codes goes
// through the portable bit packers.
//
// Included by quantize.hpp (which dispatches here); not a public header of its own.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "../format/block.hpp"
#include "../matrix_view.hpp"
#include "../packed.hpp"
#include "../quant/options.hpp"
#include "pack.hpp"
#include "simd.hpp"
#include "traits.hpp"
#include "vec4.hpp"

namespace mxq::kernel::detail::v4 {

// The region is empty where no 4-lane body of that arch is compiled (AArch64 has no regions).
MXQ_SSE42_BEGIN

template <class F>
inline constexpr int nvec = F::block_size / 4;

template <rounding R, class A>
MXQ_ALWAYS_INLINE typename vec4::ops<A>::f round_int(typename vec4::ops<A>::f v, A) noexcept {
  using V = vec4::ops<A>;
  if constexpr (R == rounding::nearest_even) {
    return V::round_even(v);
  } else if constexpr (R == rounding::toward_zero) {
    return V::round_zero(v);
  } else {  // nearest_away: trunc + (frac >= 1/2); v >= 0 and v - trunc(v) is exact
    const auto t = V::round_zero(v);
    return V::add(t, V::bit_and(V::ge(V::sub(v, t), V::set1(0.5f)), V::set1(1.0f)));
  }
}

// y = |x| / scale >= 0 on E's ladder (quantize.hpp's detail::ladder, four lanes).
template <class E, rounding R, class A>
struct ladder {
  using V = vec4::ops<A>;
  using I = elem_info<E>;
  typename V::f r, q;
  typename V::i base;

  MXQ_ALWAYS_INLINE ladder(typename V::f y, A a) noexcept {
    if constexpr (I::is_int) {
      r = round_int<R>(V::mul(y, V::set1(static_cast<float>(1 << I::mbits))), a);
      q = V::set1(1.0f / static_cast<float>(1 << I::mbits));
      base = V::izero();
    } else {
      const auto ey = V::template shr<23>(V::as_i(y));
      const auto eq = V::max(ey, V::iset1(I::emin_b));
      const auto inv_q = V::as_f(V::template shl<23>(V::sub(V::iset1(254 + I::mbits), eq)));
      r = round_int<R>(V::mul(y, inv_q), a);
      q = V::as_f(V::template shl<23>(V::sub(eq, V::iset1(I::mbits))));
      base = V::template shl<I::mbits>(V::sub(eq, V::iset1(I::emin_b)));
    }
  }
  MXQ_ALWAYS_INLINE typename V::i index() const noexcept {
    return V::min(V::add(V::trunc_i(r), base), V::iset1(I::max_idx));
  }
  MXQ_ALWAYS_INLINE typename V::f magnitude() const noexcept { return V::min(V::mul(r, q), V::set1(I::max_value)); }
};

template <class E, class A>
MXQ_ALWAYS_INLINE typename vec4::ops<A>::i encode_codes(typename vec4::ops<A>::i idx, typename vec4::ops<A>::f neg, A) noexcept {
  using V = vec4::ops<A>;
  using C = element_codec<E>;
  const auto n = V::as_i(neg);
  if constexpr (C::encoding == element_encoding::twos_complement)
    return V::select(n, V::bit_and(V::sub(V::izero(), idx), V::iset1(C::code_mask)), idx);
  else
    return V::bit_or(idx, V::bit_and(n, V::iset1(C::sign_bit)));
}

template <class E, class A>
MXQ_ALWAYS_INLINE typename vec4::ops<A>::f apply_sign(typename vec4::ops<A>::f mag, typename vec4::ops<A>::f neg, A) noexcept {
  using V = vec4::ops<A>;
  using C = element_codec<E>;
  const auto sign = V::set1(-0.0f);
  if constexpr (C::encoding == element_encoding::twos_complement)
    return V::bit_or(mag, V::bit_and(V::bit_and(neg, V::neq(mag, V::zero())), sign));
  else
    return V::bit_or(mag, V::bit_and(neg, sign));
}

// Codes at the top of each lane -> decoded element values (quantize.hpp's decode_top).
template <class E, class A>
MXQ_ALWAYS_INLINE typename vec4::ops<A>::f decode_top(typename vec4::ops<A>::i top, A) noexcept {
  using V = vec4::ops<A>;
  using I = elem_info<E>;
  using C = element_codec<E>;
  if constexpr (I::is_int) {
    return V::mul(V::to_f(V::template sar<32 - I::bits>(top)), V::set1(1.0f / static_cast<float>(1 << I::mbits)));
  } else {
    constexpr int ebits = I::bits - 1 - I::mbits;
    constexpr std::uint32_t keep = 0x80000000u | (((1u << (I::bits - 1)) - 1u) << (23 - I::mbits));
    auto v = V::mul(V::bit_and(V::as_f(V::template sar<8 - ebits>(top)), V::as_f(V::iset1(static_cast<std::int32_t>(keep)))),
                    V::as_f(V::iset1((254 - I::bias) << 23)));
    if constexpr (C::magnitude_count < (1 << (I::bits - 1))) {  // Inf / NaN codes exist
      const auto mag = V::template shr<33 - I::bits>(V::template shl<1>(top));
      const auto special = V::gt(mag, V::iset1(I::max_idx));
      auto sv = V::set1(std::numeric_limits<float>::quiet_NaN());
      if constexpr (C::traits::has_inf)
        sv = V::select(V::as_f(V::eq(mag, V::iset1(I::max_idx + 1))), V::set1(std::numeric_limits<float>::infinity()), sv);
      v = V::select(V::as_f(special), V::bit_or(sv, V::bit_and(V::as_f(top), V::set1(-0.0f))), v);
    }
    return v;
  }
}

// A block as nvec vectors (the ragged last block from a zero-padded copy) and its |x| vectors;
// returns the largest |bits| (>= 0x7F800000: the block holds Inf or NaN).
template <class F, class T, class A>
MXQ_ALWAYS_INLINE int load_block(const T* x, std::size_t len, typename vec4::ops<A>::f* v, typename vec4::ops<A>::f* a,
                                 float* pad, A) noexcept {
  using V = vec4::ops<A>;
  constexpr int NV = nvec<F>;
  if (len == static_cast<std::size_t>(F::block_size)) {
    for (int i = 0; i < NV; ++i) v[i] = V::load(x + 4 * i);
  } else {
    for (std::size_t i = 0; i < static_cast<std::size_t>(F::block_size); ++i) pad[i] = i < len ? to_f32(x[i]) : 0.0f;
    for (int i = 0; i < NV; ++i) v[i] = V::load(pad + 4 * i);
  }
  const auto absm = V::as_f(V::iset1(0x7FFFFFFF));
  auto m = V::izero();
  for (int i = 0; i < NV; ++i) {
    a[i] = V::bit_and(v[i], absm);
    m = V::max(m, V::as_i(a[i]));
  }
  return V::hmax(m);
}

// Narrows nvec vectors of codes to bytes and packs the block's len codes at dst.
template <class F, class Layout, class A>
MXQ_ALWAYS_INLINE void store_codes(const typename vec4::ops<A>::i* c, std::size_t len, std::uint8_t* dst, A) noexcept {
  using V = vec4::ops<A>;
  constexpr int NV = nvec<F>;
  constexpr std::size_t B = F::block_size;
  alignas(16) std::uint8_t scratch[64 + 8] = {};
  for (int i = 0; i < NV; ++i) V::store_u8(scratch + 4 * i, c[i]);
  if (len < B) std::memset(scratch + len, 0, B - len);
  pack_block<elem_info<typename F::element>::bits, Layout>(scratch, len, B, dst);
}

template <class F, class A>
int e8m0_scalar_code(const typename vec4::ops<A>::f* v, std::size_t len, std::span<const float> w, const quant_options& opt, A) {
  using V = vec4::ops<A>;
  alignas(16) float blk[64];
  for (int i = 0; i < nvec<F>; ++i) V::store(blk + 4 * i, v[i]);
  const block_params p = e8m0_scale::choose<typename F::element>(std::span<const float>(blk, len), w, opt);
  return p.nan ? 0xFF : static_cast<int>(p.scale_code);
}

// One row of an E8M0 format: codes + scales (Out == codes), or fake-quantized values.
template <class F, rounding R, block_out Out, class Layout, class T, class A>
void e8m0_row(const T* x, std::size_t cols, const quant_options& opt, std::uint8_t* code_row, std::uint8_t* scale_row,
              float* out, A arch) {
  using V = vec4::ops<A>;
  using E = typename F::element;
  using C = element_codec<E>;
  constexpr int NV = nvec<F>;
  constexpr std::size_t B = F::block_size;
  constexpr int bits = elem_info<E>::bits;
  alignas(16) float pad[64];
  alignas(16) float vals[64];
  typename V::f v[NV], a[NV];
  typename V::i c[NV];
  for (std::size_t c0 = 0, b = 0; c0 < cols; c0 += B, ++b) {
    const std::size_t len = std::min(B, cols - c0);
    const int amax_bits = load_block<F>(x + c0, len, v, a, pad, arch);
    int code = e8m0_scale_code<F>(amax_bits, opt.scale_rule);
    if (code < 0) {
      const std::span<const float> w = opt.column_weights.empty() ? std::span<const float>{} : opt.column_weights.subspan(c0, len);
      code = e8m0_scalar_code<F>(v, len, w, opt, arch);
    }
    float* dst = nullptr;
    if constexpr (Out == block_out::values) dst = len == B ? out + c0 : vals;
    if (code == 0xFF) {
      if constexpr (Out == block_out::codes) {
        for (int i = 0; i < NV; ++i) c[i] = V::iset1(C::nan_code);
      } else {
        for (std::size_t i = 0; i < len; ++i) dst[i] = std::numeric_limits<float>::quiet_NaN();
      }
    } else {
      const auto inv_s = V::set1(pow2f_e8m0(127 - code));
      const auto s = V::set1(pow2f_e8m0(code - 127));
      for (int i = 0; i < NV; ++i) {
        const auto neg = V::lt(v[i], V::zero());
        const ladder<E, R, A> l(V::mul(a[i], inv_s), arch);
        if constexpr (Out == block_out::codes) c[i] = encode_codes<E>(l.index(), neg, arch);
        else V::store(dst + 4 * i, apply_sign<E>(V::mul(l.magnitude(), s), neg, arch));
      }
    }
    if constexpr (Out == block_out::codes) {
      scale_row[b] = static_cast<std::uint8_t>(code);
      store_codes<F, Layout>(c, len, code_row + c0 * bits / 8, arch);
    } else if (len < B) {
      std::memcpy(out + c0, vals, len * sizeof(float));
    }
  }
}

// One row of a UE4M3-scaled E2M1 format (thresholds and values from ue4m3_tables).
template <class F, block_out Out, class Layout, class T, class A>
void ue4m3_row(const T* x, std::size_t cols, const quant_options& opt, const tensor_params& t, const ue4m3_tables& tb,
               std::uint8_t* code_row, std::uint8_t* scale_row, float* out, A arch) {
  using V = vec4::ops<A>;
  using S = typename F::scale;
  using C = element_codec<e2m1>;
  constexpr int NV = nvec<F>;
  constexpr std::size_t B = F::block_size;
  alignas(16) float pad[64];
  alignas(16) float vals[64];
  typename V::f v[NV], a[NV];
  typename V::i cv[NV];
  const float ts = S::has_tensor_scale ? t.scale : 1.0f;
  const float denom = C::max_value * ts;  // the oracle's FP32 recipe: amax / (6 * tensor scale)
  for (std::size_t c0 = 0, b = 0; c0 < cols; c0 += B, ++b) {
    const std::size_t len = std::min(B, cols - c0);
    const int amax_bits = load_block<F>(x + c0, len, v, a, pad, arch);
    int code;
    bool nan = false;
    if (amax_bits >= 0x7F800000) {
      nan = true;
      code = S::nan_code;
    } else if (opt.scale_rule == scale_rule::floor) {
      code = amax_bits == 0 ? 0 : std::max(e4m3_rne_index(std::bit_cast<float>(amax_bits) / denom), 1);
    } else {
      alignas(16) float blk[64];
      for (int i = 0; i < NV; ++i) V::store(blk + 4 * i, v[i]);
      const std::span<const float> w = opt.column_weights.empty() ? std::span<const float>{} : opt.column_weights.subspan(c0, len);
      const block_params p = S::template choose<e2m1>(std::span<const float>(blk, len), w, opt, t);
      nan = p.nan;
      code = static_cast<int>(p.scale_code);
    }
    if constexpr (Out == block_out::codes) scale_row[b] = static_cast<std::uint8_t>(code);
    if (nan) {
      if constexpr (Out == block_out::codes) {
        for (int i = 0; i < NV; ++i) cv[i] = V::iset1(C::nan_code);
      } else {
        for (std::size_t i = 0; i < len; ++i) out[c0 + i] = std::numeric_limits<float>::quiet_NaN();
      }
    } else {
      const float* thr = tb.thr[code];
      for (int i = 0; i < NV; ++i) {
        auto idx = V::izero();
        for (int k = 0; k < 7; ++k) idx = V::sub(idx, V::as_i(V::ge(a[i], V::set1(thr[k]))));
        const auto neg = V::lt(v[i], V::zero());
        if constexpr (Out == block_out::codes) {
          cv[i] = V::bit_or(idx, V::bit_and(V::as_i(neg), V::iset1(8)));
        } else {
          alignas(16) std::uint8_t ib[4];  // no 4-lane float shuffle by index: four table reads
          V::store_u8(ib, idx);
          const float* val = tb.val[code];
          alignas(16) const float mv[4] = {val[ib[0]], val[ib[1]], val[ib[2]], val[ib[3]]};
          const auto m = V::load(mv);
          V::store(vals + 4 * i, V::bit_xor(m, V::bit_and(neg, V::set1(-0.0f))));
        }
      }
      if constexpr (Out == block_out::values) std::memcpy(out + c0, vals, len * sizeof(float));
    }
    if constexpr (Out == block_out::codes) store_codes<F, Layout>(cv, len, code_row + c0 / 2, arch);
  }
}

// ---- entry points' bodies --------------------------------------------------------------------

template <class F, class Layout, class T, class A>
void quantize_rows(matrix_view<const T> x, packed_matrix<F, Layout>& q, std::size_t first_row, const quant_options& opt, A arch) {
  const std::size_t bpr = q.blocks_per_row();
  std::uint8_t* codes = q.code_bytes().data() + first_row * q.row_bytes();
  std::uint8_t* scales = q.scale_data().data() + first_row * bpr;
  if constexpr (is_e8m0_fast<F, Layout>) {
    with_rounding(opt.rounding, [&](auto rc) {
      for_each_row(x, opt.threads, [&](const T* row, std::size_t r) {
        e8m0_row<F, decltype(rc)::value, block_out::codes, Layout>(row, x.cols, opt, codes + r * q.row_bytes(),
                                                                   scales + r * bpr, nullptr, arch);
      });
    });
  } else {
    auto tb = std::make_unique<ue4m3_tables>();
    build_ue4m3_tables<typename F::scale>(*tb, q.tensor(), opt.rounding);
    for_each_row(x, opt.threads, [&](const T* row, std::size_t r) {
      ue4m3_row<F, block_out::codes, Layout>(row, x.cols, opt, q.tensor(), *tb, codes + r * q.row_bytes(), scales + r * bpr,
                                             nullptr, arch);
    });
  }
}

template <class F, class T, class A>
void fake_quant(matrix_view<const T> x, matrix_view<float> out, const quant_options& opt, const tensor_params& t, A arch) {
  std::unique_ptr<ue4m3_tables> tb;
  if constexpr (is_ue4m3_fast<F, lsb_first_layout>) {
    tb = std::make_unique<ue4m3_tables>();
    build_ue4m3_tables<typename F::scale>(*tb, t, opt.rounding);
  }
  with_rounding(opt.rounding, [&](auto rc) {
    for_each_row(x, opt.threads, [&](const T* row, std::size_t r) {
      thread_local std::vector<float> obuf;  // strided output: one row buffer per thread
      if (!out.row_contiguous()) obuf.resize(out.cols);
      float* o = out.row_contiguous() ? out.row(r) : obuf.data();
      if constexpr (is_e8m0_fast<F, lsb_first_layout>)
        e8m0_row<F, decltype(rc)::value, block_out::values, lsb_first_layout>(row, x.cols, opt, nullptr, nullptr, o, arch);
      else
        ue4m3_row<F, block_out::values, lsb_first_layout>(row, x.cols, opt, t, *tb, nullptr, nullptr, o, arch);
      if (!out.row_contiguous())
        for (std::size_t c = 0; c < out.cols; ++c) out(r, c) = obuf[c];
    });
  });
}

template <class F, class Layout, class A>
void dequantize(const packed_matrix<F, Layout>& q, matrix_view<float> out, A arch) {
  using V = vec4::ops<A>;
  using E = typename F::element;
  constexpr int bits = elem_info<E>::bits;
  constexpr std::size_t B = F::block_size;
  constexpr int NV = nvec<F>;
  std::unique_ptr<ue4m3_tables> tb;
  if constexpr (is_ue4m3_fast<F, Layout>) {
    tb = std::make_unique<ue4m3_tables>();
    build_ue4m3_tables<typename F::scale>(*tb, q.tensor(), rounding::nearest_even);
  }
  std::vector<float> obuf(out.row_contiguous() ? 0 : out.cols);
  alignas(16) std::uint8_t codes[64 + 8];
  alignas(16) float vals[64];
  const std::size_t bpr = q.blocks_per_row();
  for (std::size_t r = 0; r < q.rows(); ++r) {
    float* o = out.row_contiguous() ? out.row(r) : obuf.data();
    const std::uint8_t* src = q.code_bytes().data() + r * q.row_bytes();
    const auto* sc = q.scale_data().data() + r * bpr;
    for (std::size_t c0 = 0, b = 0; c0 < q.cols(); c0 += B, ++b) {
      const std::size_t len = std::min(B, q.cols() - c0);
      float* dst = len == B ? o + c0 : vals;
      unpack_block<bits, Layout>(src + c0 * bits / 8, len, B, codes);
      if constexpr (is_e8m0_fast<F, Layout>) {
        const int code = sc[b];
        if (code == 0xFF) {
          for (std::size_t i = 0; i < len; ++i) dst[i] = std::numeric_limits<float>::quiet_NaN();
        } else {
          const auto s = V::set1(pow2f_e8m0(code - 127));
          for (int i = 0; i < NV; ++i)
            V::store(dst + 4 * i, V::mul(decode_top<E>(V::template shl<32 - bits>(V::load_u8(codes + 4 * i)), arch), s));
        }
      } else {
        const int code = sc[b] & 0x7F;
        if (!tb->valid[code]) {
          for (std::size_t i = 0; i < len; ++i) dst[i] = std::numeric_limits<float>::quiet_NaN();
        } else {
          const float* val = tb->val[code];
          for (std::size_t i = 0; i < B; ++i) {  // 16 codes: a table read each (no 4-lane float shuffle by index)
            const float m = val[codes[i] & 7];
            dst[i] = codes[i] & 8 ? -m : m;
          }
        }
      }
      if (len < B) std::memcpy(o + c0, vals, len * sizeof(float));
    }
    if (!out.row_contiguous())
      for (std::size_t c = 0; c < out.cols; ++c) out(r, c) = obuf[c];
  }
}

MXQ_SSE42_END

}  // namespace mxq::kernel::detail::v4
