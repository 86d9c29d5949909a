// A JSON file (config.json, tokenizer.json, ...) parsed, errors naming the file.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "../io/error.hpp"

namespace mxq::llm::detail_json {

inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  if (!in) mxq::detail::io::fail(p, "cannot be read");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    mxq::detail::io::fail(p, std::string("not valid JSON: ") + e.what());
  }
}

}  // namespace mxq::llm::detail_json
