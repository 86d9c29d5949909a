// Compiles and runs the documented example of <mxq/kernels.hpp> with only that header included.
#include <mxq/kernels.hpp>

#include "check.hpp"  // CHECK, normal_values (no mxq header)

#include <cstddef>
#include <cstdio>
#include <vector>

int main() {
  const std::size_t rows = 1000;
  const int threads = 2;
  const mxq::quant_options opts{};
  std::vector<int> seen(rows, 0);

  constexpr bool fast = mxq::kernel::has_fast_quant<mxq::mxfp4>;
  bool simd = mxq::kernel::can_quantize<mxq::mxfp4>(opts);
  mxq::kernel::parallel_ranges(rows, threads, 16, [&](std::size_t r0, std::size_t r1) {
    for (std::size_t r = r0; r < r1; ++r) ++seen[r];
  });

  static_assert(fast, "MXFP4 has SIMD quantize kernels");
  static_assert(!mxq::kernel::has_fast_quant<mxq::int4_g128>, "the INT baselines run the scalar oracle");
  CHECK(simd == mxq::kernel::simd_enabled());  // x86-64 with SSE4.2 or AVX2, AArch64 (not MXQ_ISA=generic)
  for (std::size_t r = 0; r < rows; ++r) CHECK(seen[r] == 1);
  return 0;
}
