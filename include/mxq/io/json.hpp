// JSON text from a file the user handed us (config.json, tokenizer.json, a safetensors header, an
// index), parsed with limits a hostile file cannot exceed: nesting depth (nlohmann parses
// iteratively, but the values it builds are walked recursively by their users), total size, and
// every error — syntax, depth, size — an io_error naming the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "error.hpp"

namespace mxq::detail::io {

struct json_limits {
  int max_depth = 64;                          // real configs and tokenizers nest < 10 deep
  std::size_t max_bytes = std::size_t{1} << 30;  // a 1 GiB JSON file is not a config
};

// Called for every key at depth 1 (the safetensors header's duplicate check); empty: none.
using json_key_fn = std::function<void(const std::string&)>;

// `what` (e.g. "bad safetensors header") starts each message when given.
inline nlohmann::json parse_json(std::string_view text, const std::filesystem::path& file, const std::string& what = {},
                                 const json_limits& lim = {}, const json_key_fn& top_key = {}) {
  const std::string pre = what.empty() ? std::string() : what + ": ";
  if (text.size() > lim.max_bytes)
    fail(file, pre + "JSON of " + std::to_string(text.size()) + " bytes is larger than the limit of " +
                   std::to_string(lim.max_bytes) + " bytes");
  struct too_deep {};
  auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using ev_t = nlohmann::json::parse_event_t;
    if ((ev == ev_t::object_start || ev == ev_t::array_start) && depth >= lim.max_depth) throw too_deep{};
    if (top_key && ev == ev_t::key && depth == 1) top_key(parsed.get_ref<const std::string&>());
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), cb);
  } catch (const too_deep&) {
    fail(file, pre + "JSON nested deeper than " + std::to_string(lim.max_depth) + " levels");
  } catch (const nlohmann::json::exception& e) {
    fail(file, pre + "invalid JSON: " + e.what());
  }
}

// The whole file's text (refused above lim.max_bytes before it is read).
inline std::string read_text(const std::filesystem::path& file, const json_limits& lim = {}) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) fail(file, "cannot open: " + ec.message());
  if (size > lim.max_bytes)
    fail(file, std::to_string(size) + " bytes is larger than the limit of " + std::to_string(lim.max_bytes) + " bytes");
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(file, "cannot open for reading");
  std::string s(static_cast<std::size_t>(size), '\0');
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  if (in.gcount() != static_cast<std::streamsize>(s.size())) fail(file, "cannot be read (it changed while being read?)");
  return s;
}

inline nlohmann::json read_json_file(const std::filesystem::path& file, const std::string& what = {},
                                     const json_limits& lim = {}) {
  return parse_json(read_text(file, lim), file, what, lim);
}

}  // namespace mxq::detail::io
