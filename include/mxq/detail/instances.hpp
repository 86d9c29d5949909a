// Explicit instantiation of mxq's heaviest templates for every predefined format.
//
// A program that reaches the format-generic algorithms through visit_format in many translation
// units (mxq's own tests and tool do) instantiates each of them for all 20 predefined formats in
// every one of those units. Compiled with MXQ_EXTERN_TEMPLATES defined, the headers declare those
// instantiations extern, and one translation unit per format (MXQ_INSTANTIATE_FORMAT(F), see
// src/instances/) provides them: each is compiled once. Without the macro nothing changes.
#pragma once

// Every predefined format (format/predefined.hpp), as an X-macro: X(format, arg).
#define MXQ_FOR_EACH_PREDEFINED_FORMAT(X, A)                                                                  \
  X(mxfp8_e4m3, A) X(mxfp8_e5m2, A) X(mxfp6_e3m2, A) X(mxfp6_e2m3, A) X(mxfp4, A) X(mxint8, A) X(mxint6, A)   \
  X(mxint4, A) X(mxint3, A) X(nvfp4, A) X(int8_pc, A) X(int4_pc, A) X(int3_pc, A) X(int4_g128, A)             \
  X(int3_g128, A) X(int8_pc_sym, A) X(int4_pc_sym, A) X(int3_pc_sym, A) X(int4_g128_sym, A) X(int3_g128_sym, A)

// MXQ_EXTERN_EXPLICIT(extern) declares, MXQ_EXTERN_EXPLICIT() defines.
#define MXQ_EXTERN_EXPLICIT(...) __VA_ARGS__
