// mxq formats: the predefined formats and their parameters.
#include <cstdio>
#include <string>

#include <mxq/format.hpp>

#include "command.hpp"

namespace cmd_formats {  // each command apart: mxq_cli is a unity build
namespace {

template <class F>
void print_row() {
  using E = typename F::element;
  using C = mxq::element_codec<E>;
  using S = typename F::scale;
  std::string scale(S::name);
  if constexpr (S::has_zero_point) scale += " + zero";
  const std::string block = F::block_size == 0 ? "row" : std::to_string(F::block_size);
  const std::string maxv = C::is_affine ? std::to_string((1 << F::bits) - 1) + " levels" : [] {
    char b[32];
    std::snprintf(b, sizeof b, "%g", static_cast<double>(C::max_value));
    return std::string(b);
  }();
  char eff[32];
  if (F::block_size == 0) std::snprintf(eff, sizeof eff, "%.3f @4096", mxq::effective_bits<F>(4096));
  else std::snprintf(eff, sizeof eff, "%.3f", mxq::effective_bits<F>());
  std::printf("| %-14s | %4d | %5s | %-14s | %-12s | %-11s |\n", std::string(mxq::format_traits<F>::name).c_str(),
              F::bits, block.c_str(), scale.c_str(), maxv.c_str(), eff);
}

int run(const mxq::cli::args_t& args) {
  if (!args.empty()) throw std::runtime_error("formats takes no arguments");
  std::printf("| %-14s | %4s | %5s | %-14s | %-12s | %-11s |\n", "format", "bits", "block", "scale", "max normal",
              "bits/value");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(16, '-').c_str(), std::string(6, '-').c_str(),
              std::string(7, '-').c_str(), std::string(16, '-').c_str(), std::string(14, '-').c_str(),
              std::string(13, '-').c_str());
  mxq::for_each_format([](auto tag) { print_row<typename decltype(tag)::type>(); });
  return 0;
}

const mxq::cli::registrar reg("formats", "print every predefined format", "usage: mxq formats   (prints the table of predefined formats)", run);

}  // namespace
}  // namespace cmd_formats
