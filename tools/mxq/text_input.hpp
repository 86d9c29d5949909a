// Text inputs of the commands (--text FILE, --text-dir DIR --glob PATTERN) and token-id files
// (.u16, or .u32 for vocabularies beyond 65536).
#pragma once
#include <fnmatch.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include <mxq/io/error.hpp>
#include <mxq/io/file.hpp>
#include <mxq/llm/forward.hpp>

#include "args.hpp"

namespace mxq::cli {

inline std::string read_text(const std::filesystem::path& f) {
  std::ifstream in(f, std::ios::binary);
  if (!in) throw mxq::error(f.string() + ": cannot be read");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `path` itself when it is a file, or every regular file under it whose name matches `glob`, in
// path order.
inline std::vector<std::filesystem::path> files_of(const std::filesystem::path& path, const std::string& glob) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(path)) return {path};
  if (!fs::is_directory(path)) throw mxq::error(path.string() + ": no such text file or directory");
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied))
    if (e.is_regular_file() && fnmatch(glob.c_str(), e.path().filename().c_str(), 0) == 0) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) throw mxq::error(path.string() + ": no file matches '" + glob + "'");
  return files;
}

// --text FILE, or every regular file under --text-dir matching --glob (on its name), path order.
inline std::vector<std::filesystem::path> text_files(const parsed_args& a, const std::string& file_key = "text",
                                                     const std::string& dir_key = "text-dir") {
  namespace fs = std::filesystem;
  if (a.has(file_key) == a.has(dir_key)) throw mxq::error("give one of --" + file_key + " FILE or --" + dir_key + " DIR");
  if (a.has(file_key)) {
    const fs::path f = a.require(file_key);
    if (!fs::is_regular_file(f)) throw mxq::error(f.string() + ": no such text file");
    return {f};
  }
  const fs::path d = a.require(dir_key);
  if (!fs::is_directory(d)) throw mxq::error(d.string() + ": no such directory");
  return files_of(d, a.get("glob", "*"));
}

// Token ids as little-endian uint16 (.u16) or uint32 (.u32), by the file's extension.
inline void write_tokens(const std::filesystem::path& out, std::span<const mxq::llm::token_id> ids, std::size_t vocab) {
  const std::string ext = out.extension().string();
  if (ext != ".u16" && ext != ".u32") throw mxq::error(out.string() + ": the output must end in .u16 or .u32");
  if (ext == ".u16" && vocab > 65536)
    throw mxq::error(out.string() + ": a vocabulary of " + std::to_string(vocab) + " tokens needs .u32");
  mxq::write_file_atomically(out, [&](std::ostream& o) {  // a failed write leaves no partial file
    for (mxq::llm::token_id t : ids) {
      const unsigned char b[4] = {static_cast<unsigned char>(t), static_cast<unsigned char>(t >> 8),
                                  static_cast<unsigned char>(t >> 16), static_cast<unsigned char>(t >> 24)};
      o.write(reinterpret_cast<const char*>(b), ext == ".u16" ? 2 : 4);
    }
  });
}

}  // namespace mxq::cli
