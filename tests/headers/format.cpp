// Compiles and runs the documented example of <mxq/format.hpp> with only that header included.
#include <mxq/format.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cstdio>
#include <string_view>

int main() {
  using F = mxq::mxfp4;
  static_assert(F::bits == 4 && F::block_size == 32);
  double b = mxq::effective_bits<F>();
  int visited_block = 0;
  std::string_view visited_name;
  mxq::visit_format("nvfp4", [&](auto tag) {
    using G = typename decltype(tag)::type;
    visited_block = G::block_size;
    visited_name = mxq::format_traits<G>::name;
  });

  CHECK(b == 4.25);
  CHECK(visited_block == 16 && visited_name == "nvfp4");
  CHECK(mxq::is_known_format("mxint8") && !mxq::is_known_format("fp5"));
  return 0;
}
