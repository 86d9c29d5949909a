// A JSON file (config.json, tokenizer.json, ...) parsed, errors naming the file.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "../io/error.hpp"
#include "../io/json.hpp"

namespace mxq::llm::detail_json {

inline nlohmann::json read_json(const std::filesystem::path& p) {
  if (!std::filesystem::exists(p)) mxq::detail::io::fail(p, "cannot be read");
  return mxq::detail::io::read_json_file(p);
}

}  // namespace mxq::llm::detail_json
