// A safetensors file's bytes through the reader's own validation (parse_header, what
// safetensors_file runs on the mapped file), then every accepted tensor converted to float32 as
// the model loader does (bounded, so a valid huge shape does not time the harness out).
#include <algorithm>
#include <vector>

#include <mxq/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mxq_fuzz::run([&] {
    const auto buf = mxq_fuzz::bytes(data, size);
    const auto h = mxq::detail::st::parse_header(buf, "fuzz.safetensors");
    std::vector<float> out;
    for (const auto& t : h.tensors) {
      const std::size_t n = std::min<std::size_t>(t.numel(), 1 << 16);
      out.resize(n);
      (void)mxq::detail::st::convert_to_f32(t.dtype, buf.data() + h.data_offset + t.begin, n, out.data());
    }
  });
}
