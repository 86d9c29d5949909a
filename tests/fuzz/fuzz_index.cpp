// model.safetensors.index.json's text through the index parser the checkpoint reader uses.
#include <mxq/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mxq_fuzz::run([&] { (void)mxq::detail::st::parse_index(mxq_fuzz::text(data, size), "model.safetensors.index.json"); });
}
