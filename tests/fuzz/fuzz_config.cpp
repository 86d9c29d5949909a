// config.json's text through load_model_config's parser and checks, then the RoPE frequencies
// the forward pass derives from it (rope_scaling, head_dim, theta all come from the file).
#include <mxq/llm/config.hpp>
#include <mxq/llm/rope.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mxq_fuzz::run([&] {
    const std::filesystem::path file = "config.json";
    const auto c = mxq::llm::parse_model_config(mxq::detail::io::parse_json(mxq_fuzz::text(data, size), file), file);
    if (c.head_dim <= 1 << 16) (void)mxq::llm::rope_inv_freq(c);
  });
}
