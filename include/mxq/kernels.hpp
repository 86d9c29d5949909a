// Module header: the SIMD CPU kernels and the products built on them.
//   mxq::quantize / dequantize / fake_quant (quantize.hpp) route to kernel/quantize.hpp;
//   mxq::gemv / gemm (gemm.hpp) run kernel/gemv.hpp, and on an 8-row interleaved copy
//   (interleaved.hpp) kernel/interleaved.hpp. Include this for direct kernel access
//   (mxq::kernel::can_quantize, has_fast_quant, quantize_into, parallel_ranges, ...).
//
//   constexpr bool fast = mxq::kernel::has_fast_quant<mxq::mxfp4>;   // kernels exist for the format
//   bool simd = mxq::kernel::can_quantize<mxq::mxfp4>(opts);          // ... and run on this CPU
//   mxq::kernel::active_isa();   // isa::avx2 or isa::generic, chosen once at run time (kernel/simd.hpp)
//   mxq::kernel::parallel_ranges(rows, threads, 16, [&](std::size_t r0, std::size_t r1) { ... });
#pragma once
#include "format.hpp"
#include "gemm.hpp"
#include "interleaved.hpp"
#include "kernel/gemv.hpp"
#include "kernel/interleaved.hpp"
#include "kernel/pack.hpp"
#include "kernel/quantize.hpp"
#include "kernel/simd.hpp"
#include "kernel/thread.hpp"
#include "kernel/traits.hpp"
#include "quantize.hpp"
