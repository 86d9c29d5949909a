// tokenizer.json's text (up to the first NUL byte) through the tokenizer's constructor; the bytes
// after it are encoded and the ids decoded again, as `mxq tokenize` and --calib-text do.
#include <algorithm>
#include <cstring>

#include <mxq/llm/tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return mxq_fuzz::run([&] {
    const auto* nul = static_cast<const std::uint8_t*>(std::memchr(data, 0, size));
    const std::size_t json_size = nul ? static_cast<std::size_t>(nul - data) : size;
    const mxq::llm::tokenizer tok(mxq_fuzz::text(data, json_size), "tokenizer.json");
    if (!nul) return;
    const auto text = mxq_fuzz::text(nul + 1, std::min<std::size_t>(size - json_size - 1, 4096));
    const auto ids = tok.encode(text);
    (void)tok.decode(ids);
  });
}
