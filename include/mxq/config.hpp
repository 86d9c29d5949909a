// Version, the library's error type and small portability macros.
#pragma once
#include <stdexcept>
#include <string>

#define MXQ_VERSION_MAJOR 0
#define MXQ_VERSION_MINOR 1
#define MXQ_VERSION_PATCH 0

#if defined(__CUDACC__)
#define MXQ_HOST_DEVICE __host__ __device__
#else
#define MXQ_HOST_DEVICE
#endif

namespace mxq {

// Every recoverable misuse (bad shape, NaN in calibration data, malformed file) throws this,
// with a message that names the offending object.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace mxq
