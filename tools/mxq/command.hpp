// Self-registering subcommands of the mxq tool: each cmd_*.cpp adds its commands at static-init
// time, so command families live in separate files (compiled together, tools/CMakeLists.txt).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mxq::cli {

using args_t = std::vector<std::string>;
struct command {
  std::string summary;
  std::string usage;  // printed by `mxq <command> --help`
  std::function<int(const args_t&)> run;
};

inline std::map<std::string, command>& registry() {
  static std::map<std::string, command> r;
  return r;
}

struct registrar {
  registrar(const std::string& name, std::string summary, std::string usage, std::function<int(const args_t&)> fn) {
    registry()[name] = command{std::move(summary), std::move(usage), std::move(fn)};
  }
};

}  // namespace mxq::cli
