// Umbrella header for the CPU library (formats, RTN quantizers, packed storage).
//
//   mxq::matrix_view<const float> W(w.data(), out, in);        // row-major [out, in], caller's memory
//   mxq::packed_matrix<mxq::mxfp4> q = mxq::quantize<mxq::mxfp4>(W);
//   std::vector<float> d = mxq::dequantize(q);                 // [out, in] row-major
//   std::size_t bytes = q.storage_bytes();                     // codes + E8M0 scales
#pragma once
#include "config.hpp"
#include "format.hpp"
#include "matrix_view.hpp"
#include "packed.hpp"
#include "quantize.hpp"
