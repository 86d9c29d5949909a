// An mxq quantized checkpoint (one safetensors file, from memory) through the packed-weight
// loader the model reader uses: every `<base>.weight_blocks` read and dequantized with the format
// its metadata names — inconsistent shapes, dtypes, scales, zero points and format names must be
// named errors, before anything sized by the file is allocated.
#include <string>
#include <vector>

#include <mxq/io/packed_io.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mxq_fuzz::run([&] {
    const auto b = mxq_fuzz::bytes(data, size);
    const mxq::checkpoint ck(mxq::safetensors_file(mxq::mapped_file(std::vector<std::byte>(b.begin(), b.end()), "fuzz.safetensors")),
                             "fuzz-checkpoint");
    const std::string suffix = ".weight_blocks";
    for (const auto& name : ck.names())
      if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
        (void)mxq::read_packed_dequantized(ck, name.substr(0, name.size() - suffix.size()));
  });
}
