// mxq: command-line front end of the library. Every error is reported as one line on stderr
// with a non-zero exit status.
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include "command.hpp"

int main(int argc, char** argv) {
  // A write past a file-size limit (ulimit -f) then fails with EFBIG and a named error, as a full
  // disk does, instead of SIGXFSZ killing the process without a word.
  std::signal(SIGXFSZ, SIG_IGN);
  auto& reg = mxq::cli::registry();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fprintf(stderr, "usage: mxq <command> [options]\ncommands:\n");
    for (auto& [name, c] : reg) std::fprintf(stderr, "  %-16s %s\n", name.c_str(), c.summary.c_str());
    return argc < 2 ? 2 : 0;
  }
  auto it = reg.find(argv[1]);
  if (it == reg.end()) {
    std::fprintf(stderr, "mxq: unknown command '%s' (try mxq --help)\n", argv[1]);
    return 2;
  }
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::printf("%s\n", it->second.usage.c_str());
      return 0;
    }
  try {
    return it->second.run(mxq::cli::args_t(argv + 2, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mxq %s: error: %s\n", argv[1], e.what());
    return 1;
  }
}
