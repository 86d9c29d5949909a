// Translation unit 1 of the two-TU test: built for baseline x86-64 (no AVX2 flags).
#if defined(__AVX2__) || defined(__FMA__)
#error "isa_base.cpp must be compiled without -mavx2 / -mfma (tests/isa/CMakeLists.txt)"
#endif
#include "isa_run.hpp"

isa_test::result run_base(const std::vector<float>& w, std::size_t rows, std::size_t cols, const std::vector<float>& x,
                          std::size_t batch) {
  return isa_test::run(w, rows, cols, x, batch);
}
