// Minimal flag parser for the mxq commands: --name value, --flag, and positionals. Unknown
// flags and missing values are errors, so a typo never silently changes a run.
#pragma once
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "command.hpp"

namespace mxq::cli {

struct parsed_args {
  std::map<std::string, std::string> values;
  std::set<std::string> flags;
  std::vector<std::string> positional;

  bool has(const std::string& k) const { return values.count(k) || flags.count(k); }
  std::string get(const std::string& k, const std::string& def) const {
    auto it = values.find(k);
    return it == values.end() ? def : it->second;
  }
  std::string require(const std::string& k) const {
    auto it = values.find(k);
    if (it == values.end()) throw std::runtime_error("missing required option --" + k);
    return it->second;
  }
  double number(const std::string& k, double def) const {
    auto it = values.find(k);
    if (it == values.end()) return def;
    try {
      std::size_t pos = 0;
      const double v = std::stod(it->second, &pos);
      if (pos != it->second.size()) throw std::invalid_argument("trailing characters");
      return v;
    } catch (const std::exception&) {
      throw std::runtime_error("option --" + k + " expects a number, got '" + it->second + "'");
    }
  }
  long integer(const std::string& k, long def) const {
    const double v = number(k, static_cast<double>(def));
    if (v != static_cast<double>(static_cast<long>(v))) throw std::runtime_error("option --" + k + " expects an integer");
    return static_cast<long>(v);
  }
};

// `with_value`: options that take a value; `switches`: boolean flags.
inline parsed_args parse(const args_t& args, const std::set<std::string>& with_value,
                         const std::set<std::string>& switches = {}) {
  parsed_args p;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string name = a.substr(2), value;
      const auto eq = name.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) value = name.substr(eq + 1), name = name.substr(0, eq);
      if (switches.count(name) && !inline_value) {
        p.flags.insert(name);
      } else if (with_value.count(name)) {
        if (!inline_value) {
          if (i + 1 >= args.size()) throw std::runtime_error("option --" + name + " needs a value");
          value = args[++i];
        }
        p.values[name] = value;
      } else {
        throw std::runtime_error("unknown option --" + name);
      }
    } else {
      p.positional.push_back(a);
    }
  }
  return p;
}

}  // namespace mxq::cli
