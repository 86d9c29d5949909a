// Module header: the SIMD CPU kernels and the products built on them.
//   mxq::quantize / dequantize / fake_quant (quantize.hpp) route to kernel/quantize.hpp;
//   mxq::gemv / gemm (gemm.hpp) run kernel/gemv.hpp. Include this for direct kernel access
//   (mxq::kernel::can_quantize, has_fast_quant, quantize_into, parallel_ranges, ...).
#pragma once
#include "gemm.hpp"
#include "kernel/gemv.hpp"
#include "kernel/pack.hpp"
#include "kernel/quantize.hpp"
#include "kernel/simd.hpp"
#include "kernel/thread.hpp"
#include "kernel/traits.hpp"
#include "quantize.hpp"
