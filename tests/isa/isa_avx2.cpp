// Translation unit 2 of the two-TU test: built with -mavx2 -mfma -mf16c (where the compiler
// takes them; elsewhere with the same flags as TU 1).
#if defined(MXQ_ISA_TEST_AVX2) && !defined(__AVX2__)
#error "isa_avx2.cpp must be compiled with -mavx2 -mfma -mf16c (tests/isa/CMakeLists.txt)"
#endif
#include "isa_run.hpp"

isa_test::result run_avx2(const std::vector<float>& w, std::size_t rows, std::size_t cols, const std::vector<float>& x,
                          std::size_t batch) {
  return isa_test::run(w, rows, cols, x, batch);
}
