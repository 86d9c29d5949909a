// Catch2's main for the kernel tests built for other CPUs (tests/cross/CMakeLists.txt), plus one
// check that the kernels under test are the ones meant: MXQ_EXPECT_ISA names the tier that
// mxq::kernel::active_isa() must report on the emulated CPU (neon64 under qemu-aarch64, sse4_2
// under qemu-x86_64 -cpu Nehalem), so a detection bug cannot turn the run into a scalar-only one.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "mxq/kernel/simd.hpp"

TEST_CASE("cross: the kernels run on the expected ISA tier", "[cross]") {
  const char* want = std::getenv("MXQ_EXPECT_ISA");
  const std::string got = mxq::kernel::isa_name(mxq::kernel::active_isa());
  INFO("active_isa() = " << got);
  if (want == nullptr) SUCCEED("MXQ_EXPECT_ISA not set");
  else REQUIRE(got == want);
}
