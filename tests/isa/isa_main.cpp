// Two translation units of one program, built with different -m flags (isa_base.cpp: baseline
// x86-64; isa_avx2.cpp: -mavx2 -mfma -mf16c), both include mxq's kernels and both run every kernel
// entry point. Before runtime dispatch this was an ODR violation: the two TUs compiled different
// bodies for the same inline functions (mxq::quantize<mxfp4>, ...) and the linker kept one, so the
// AVX2 copy could run on a CPU without AVX2. Now every TU holds the same code and the ISA is
// chosen at run time, so:
//   * both TUs see the same active_isa() and agree bit for bit on every result;
//   * on a CPU with AVX2 the baseline TU runs the SIMD kernels too (isa avx2, fast path on);
//   * under MXQ_ISA=generic (what a CPU without AVX2 gets) both run the scalar oracle, and the
//     quantized codes are still the same bytes (the kernels are bit-exact against the oracle).
// Run three times by ctest: as is, with MXQ_ISA=sse4_2 and with MXQ_ISA=generic.
#include "isa_run.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

isa_test::result run_base(const std::vector<float>&, std::size_t, std::size_t, const std::vector<float>&, std::size_t);
isa_test::result run_avx2(const std::vector<float>&, std::size_t, std::size_t, const std::vector<float>&, std::size_t);

namespace {
int failures = 0;
void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}
}  // namespace

int main() {
  const std::size_t rows = 72, cols = 200, batch = 5;  // cols: partial blocks and a partial chunk
  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> w(rows * cols), x(batch * cols);
  for (float& v : w) v = dist(gen);
  for (float& v : x) v = dist(gen);
  w[3] = 40.0f;  // an outlier block

  const isa_test::result a = run_base(w, rows, cols, x, batch);
  const isa_test::result b = run_avx2(w, rows, cols, x, batch);
  const char* env = std::getenv("MXQ_ISA");
  const bool forced_generic = env && std::string(env) == "generic";
  std::printf("baseline TU: isa %s, fast path %d; -mavx2 TU: isa %s, fast path %d; %zu result bytes\n", a.isa.c_str(),
              a.fast, b.isa.c_str(), b.fast, a.bytes.size());

  check(a.isa == b.isa && a.fast == b.fast, "both translation units see the same kernel ISA");
  check(!a.bytes.empty() && a.bytes == b.bytes, "both translation units give the same bytes");
  if (forced_generic) check(a.isa == "generic" && !a.fast, "MXQ_ISA=generic selects the scalar path");
  // MXQ_ISA=sse4_2: the 4-lane quantize bodies in both TUs (VEX-encoded in the -mavx2 one), same bytes.
  const bool forced_sse = env && std::string(env) == "sse4_2";
#if defined(__x86_64__) || defined(__i386__)
  if (forced_sse && __builtin_cpu_supports("sse4.2"))
    check(a.isa == "sse4_2" && a.fast, "MXQ_ISA=sse4_2 selects the SSE4.2 quantize bodies");
#endif
#if defined(MXQ_ISA_TEST_AVX2)
  // This machine's compiler built the -mavx2 TU, so the runtime ISA follows the CPU.
  if (!forced_generic && !forced_sse) {
    const bool cpu_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    check(a.fast == cpu_avx2, "the baseline TU runs the AVX2 kernels exactly where the CPU has AVX2+FMA");
  }
#endif
  // The scalar oracle's codes, for the record: the kernels are bit-exact against it.
  const auto ref = mxq::reference::quantize<mxq::mxfp4>(mxq::matrix_view<const float>(w.data(), rows, cols));
  check(ref.code_bytes().size() <= a.bytes.size() &&
            std::equal(ref.code_bytes().begin(), ref.code_bytes().end(), a.bytes.begin()),
        "MXFP4 codes equal the scalar oracle's");
  if (failures) return 1;
  std::printf("two TUs with different -m flags agree\n");
  return 0;
}
