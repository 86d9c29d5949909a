// The formats mxq ships. Each is a distinct type so it can carry its name and be specialized.
#pragma once
#include "block.hpp"

namespace mxq {

#define MXQ_DEFINE_FORMAT(NAME, ...) \
  struct NAME : block_format<__VA_ARGS__> { static constexpr std::string_view name = #NAME; }

// OCP microscaling formats: blocks of 32, E8M0 shared scale.
MXQ_DEFINE_FORMAT(mxfp8_e4m3, e4m3, 32, e8m0_scale);
MXQ_DEFINE_FORMAT(mxfp8_e5m2, e5m2, 32, e8m0_scale);
MXQ_DEFINE_FORMAT(mxfp6_e3m2, e3m2, 32, e8m0_scale);
MXQ_DEFINE_FORMAT(mxfp6_e2m3, e2m3, 32, e8m0_scale);
MXQ_DEFINE_FORMAT(mxfp4, e2m1, 32, e8m0_scale);
MXQ_DEFINE_FORMAT(mxint8, int_element<8>, 32, e8m0_scale);
MXQ_DEFINE_FORMAT(mxint6, int_element<6>, 32, e8m0_scale);
MXQ_DEFINE_FORMAT(mxint4, int_element<4>, 32, e8m0_scale);
MXQ_DEFINE_FORMAT(mxint3, int_element<3>, 32, e8m0_scale);

// NVIDIA NVFP4: E2M1 in blocks of 16, UE4M3 block scale and an FP32 tensor scale.
MXQ_DEFINE_FORMAT(nvfp4, e2m1, 16, ue4m3_scale<true>);

// Fixed-point baselines exactly like GPTQ's reference quantizer: per output channel (whole
// row) or per group of 128, asymmetric min-max with a zero point, or symmetric.
MXQ_DEFINE_FORMAT(int8_pc, uint_element<8>, 0, float_scale<f32_storage, zero_point::minmax>);
MXQ_DEFINE_FORMAT(int4_pc, uint_element<4>, 0, float_scale<f32_storage, zero_point::minmax>);
MXQ_DEFINE_FORMAT(int3_pc, uint_element<3>, 0, float_scale<f32_storage, zero_point::minmax>);
MXQ_DEFINE_FORMAT(int4_g128, uint_element<4>, 128, float_scale<f32_storage, zero_point::minmax>);
MXQ_DEFINE_FORMAT(int3_g128, uint_element<3>, 128, float_scale<f32_storage, zero_point::minmax>);
MXQ_DEFINE_FORMAT(int8_pc_sym, uint_element<8>, 0, float_scale<f32_storage, zero_point::symmetric>);
MXQ_DEFINE_FORMAT(int4_pc_sym, uint_element<4>, 0, float_scale<f32_storage, zero_point::symmetric>);
MXQ_DEFINE_FORMAT(int3_pc_sym, uint_element<3>, 0, float_scale<f32_storage, zero_point::symmetric>);
MXQ_DEFINE_FORMAT(int4_g128_sym, uint_element<4>, 128, float_scale<f32_storage, zero_point::symmetric>);
MXQ_DEFINE_FORMAT(int3_g128_sym, uint_element<3>, 128, float_scale<f32_storage, zero_point::symmetric>);

#undef MXQ_DEFINE_FORMAT

// Every predefined format, for runtime lookup by name (see format/registry.hpp).
template <class... F>
struct format_list {};
using predefined_formats =
    format_list<mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8, mxint6, mxint4, mxint3, nvfp4, int8_pc,
                int4_pc, int3_pc, int4_g128, int3_g128, int8_pc_sym, int4_pc_sym, int3_pc_sym, int4_g128_sym,
                int3_g128_sym>;

}  // namespace mxq
