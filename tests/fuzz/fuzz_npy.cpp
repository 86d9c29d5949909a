// A .npy file's bytes through npy_load's parser (npy_parse), then the float32 conversion
// npy_load_f32 applies to float arrays.
#include <mxq/io/npy.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mxq_fuzz::run([&] {
    const auto a = mxq::npy_parse(mxq_fuzz::bytes(data, size), "fuzz.npy");
    if (a.dtype == mxq::npy_dtype::f32 || a.dtype == mxq::npy_dtype::f16) (void)a.to_f32();
  });
}
