// Machine-independent Eigen products.
//
// Eigen chooses the blocking of every matrix product (and with it the order in which each dot
// product is summed) from the L1/L2/L3 sizes it reads from the CPU at run time, so one binary
// rounds differently on two machines. mxq's decisions (GPTQ codes, AWQ/SmoothQuant scales, the
// calibration forward pass) go through those products, so mxq pins the sizes Eigen plans with to
// fixed values the first time one of its algorithms runs. This is process-wide (Eigen keeps them
// in one static): products elsewhere in the program then use the same blocking, which changes no
// result's accuracy, only its last bits, and only speed marginally. Call pin_eigen_blocking()
// before starting other threads that use Eigen if that matters to you.
#pragma once
#include <Eigen/Core>
#include <cstddef>

namespace mxq {

// The cache sizes every mxq product is planned for (a 32 KiB L1d, 512 KiB L2, 256 MiB L3 part).
inline constexpr std::ptrdiff_t eigen_blocking_l1 = 32 * 1024;
inline constexpr std::ptrdiff_t eigen_blocking_l2 = 512 * 1024;
inline constexpr std::ptrdiff_t eigen_blocking_l3 = 256 * 1024 * 1024;

// Idempotent and thread-safe among mxq calls (a function-local static).
inline void pin_eigen_blocking() {
  static const bool pinned = [] {
    Eigen::setCpuCacheSizes(eigen_blocking_l1, eigen_blocking_l2, eigen_blocking_l3);
    return true;
  }();
  (void)pinned;
}

}  // namespace mxq
