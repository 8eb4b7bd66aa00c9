// What the CUDA backend does with and without a device: typed errors with file and line, argument
// checks that happen before any device call. Runs on every machine (no skip): each test checks the
// branch that the machine it runs on can reach.
#include <catch2/catch.hpp>

#include "fisher_unlearn/cuda/context.hpp"
#include "fisher_unlearn/cuda/device_buffer.hpp"
#include "fisher_unlearn/cuda/estimators.hpp"

#include <cstddef>
#include <limits>
#include <string>
#include <type_traits>

namespace fc = fisher_unlearn::cuda;

TEST_CASE("CudaError: a fisher_unlearn::Error that carries library, code, file and line", "[cuda][errors]") {
  static_assert(std::is_base_of_v<fisher_unlearn::Error, fc::CudaError>);
  const fc::CudaError error("cuBLAS", 13, "(CUBLAS_STATUS_EXECUTION_FAILED) in cublasSgemm(...)", "gram.cu", 42);
  CHECK(error.library() == "cuBLAS");
  CHECK(error.code() == 13);
  CHECK(std::string(error.file()) == "gram.cu");
  CHECK(error.line() == 42);
  const std::string what = error.what();
  CHECK(what.find("cuBLAS error 13") != std::string::npos);
  CHECK(what.find("gram.cu:42") != std::string::npos);
  CHECK(what.find("cublasSgemm") != std::string::npos);
}

TEST_CASE("device_count: answers without throwing, and the reason is empty exactly when a device exists",
          "[cuda][errors]") {
  const int count = fc::device_count();
  CHECK(count >= 0);
  CHECK(fc::device_available() == (count > 0));
  CHECK(fc::device_unavailable_reason().empty() == (count > 0));
}

TEST_CASE("DeviceBuffer: a failed allocation throws CudaError naming the call, its file and line",
          "[cuda][errors]") {
  // Without a device any allocation fails; with one, 2^60 bytes does.
  const std::size_t elements = fc::device_available() ? (std::size_t(1) << 58) : 16;
  try {
    fc::DeviceBuffer<float> buffer(elements);
    FAIL("the allocation should have thrown");
  } catch (const fc::CudaError& error) {
    const std::string what = error.what();
    CHECK(error.library() == "CUDA runtime");
    CHECK(error.code() != 0);
    CHECK(what.find("cudaMalloc") != std::string::npos);
    CHECK(std::string(error.file()).find("runtime.cu") != std::string::npos);
    CHECK(error.line() > 0);
  }
}

TEST_CASE("GPU estimators: bad arguments are rejected before any device call", "[cuda][errors]") {
  CHECK_THROWS_AS(fc::DiagonalFisherGpu<float>(10, 0.0f), fisher_unlearn::InvalidArgument);
  CHECK_THROWS_AS(fc::DiagonalFisherGpu<double>(0, 0.1), fisher_unlearn::InvalidArgument);
  CHECK_THROWS_AS(fc::WoodburyFisherGpu<double>(10, -1.0), fisher_unlearn::InvalidArgument);
  CHECK_THROWS_AS(fc::WoodburyFisherGpu<float>(10, std::numeric_limits<float>::quiet_NaN()),
                  fisher_unlearn::InvalidArgument);
}

TEST_CASE("GPU estimators and Context: without a device, construction throws CudaError", "[cuda][errors]") {
  if (fc::device_available()) {
    // The other branch: with a device, construction succeeds and the estimator is empty.
    fc::DiagonalFisherGpu<float> estimator(10, 0.1f);
    CHECK(estimator.num_gradients() == 0);
    CHECK_THROWS_AS(estimator.finalize(), fisher_unlearn::InvalidArgument);
    return;
  }
  CHECK_THROWS_AS(fc::Context(), fc::CudaError);
  CHECK_THROWS_AS(fc::DiagonalFisherGpu<float>(10, 0.1f), fc::CudaError);
  CHECK_THROWS_AS(fc::WoodburyFisherGpu<double>(10, 0.1), fc::CudaError);
  CHECK_THROWS_AS(fc::Stream(), fc::CudaError);
}
