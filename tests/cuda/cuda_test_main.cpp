// Catch2 main of the CUDA tests: without a usable device it says why and returns 77, which ctest
// reports as "Skipped" (SKIP_RETURN_CODE 77); Catch2 v2 has no SKIP macro. Listing the tests (what
// catch_discover_tests does at build time) needs no device and always runs.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "fisher_unlearn/cuda/device.hpp"

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing = listing || std::string(argv[i]).rfind("--list", 0) == 0;
  if (!listing && !fisher_unlearn::cuda::device_available()) {
    std::printf("SKIPPED: no usable CUDA device (%s). These tests compare the GPU routines with the CPU path and "
                "need an NVIDIA GPU and driver; run them on such a machine (bench/cuda/run_device_checks.sh).\n",
                fisher_unlearn::cuda::device_unavailable_reason().c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
