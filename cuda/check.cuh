// Internal to the .cu files: turn every CUDA runtime / cuBLAS / cuSOLVER status into a CudaError
// carrying the failing call's text, file and line.
#pragma once

#include "fisher_unlearn/cuda/error.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <string>

namespace fisher_unlearn::cuda::detail {

inline const char* cuda_advice(cudaError_t code) {
  switch (code) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "no usable CUDA device or driver; run on a machine with an NVIDIA GPU or use the CPU estimators";
    case cudaErrorMemoryAllocation:
      return "out of device memory; use fewer gradients or a smaller block size, or free device buffers";
    case cudaErrorNoKernelImageForDevice:
      return "the library was not compiled for this GPU; rebuild with CMAKE_CUDA_ARCHITECTURES set for it";
    default:
      return "see the CUDA documentation for this code";
  }
}

[[noreturn]] inline void throw_cuda(cudaError_t code, const char* call, const char* file, int line) {
  (void)cudaGetLastError();  // clear a sticky-free error so that later calls are not blamed for it
  throw CudaError("CUDA runtime", static_cast<int>(code),
                  std::string("(") + cudaGetErrorName(code) + ": " + cudaGetErrorString(code) + ") in " + call +
                      "; " + cuda_advice(code),
                  file, line);
}

[[noreturn]] inline void throw_cublas(cublasStatus_t code, const char* call, const char* file, int line) {
  throw CudaError("cuBLAS", static_cast<int>(code),
                  std::string("(") + cublasGetStatusName(code) + ": " + cublasGetStatusString(code) + ") in " +
                      call,
                  file, line);
}

[[noreturn]] inline void throw_cusolver(cusolverStatus_t code, const char* call, const char* file, int line) {
  throw CudaError("cuSOLVER", static_cast<int>(code), std::string("in ") + call, file, line);
}

}  // namespace fisher_unlearn::cuda::detail

#define FISHER_UNLEARN_CUDA_CHECK(call)                                                         \
  do {                                                                                          \
    const cudaError_t fu_status_ = (call);                                                      \
    if (fu_status_ != cudaSuccess)                                                              \
      ::fisher_unlearn::cuda::detail::throw_cuda(fu_status_, #call, __FILE__, __LINE__);        \
  } while (0)

#define FISHER_UNLEARN_CUBLAS_CHECK(call)                                                       \
  do {                                                                                          \
    const cublasStatus_t fu_status_ = (call);                                                   \
    if (fu_status_ != CUBLAS_STATUS_SUCCESS)                                                    \
      ::fisher_unlearn::cuda::detail::throw_cublas(fu_status_, #call, __FILE__, __LINE__);      \
  } while (0)

#define FISHER_UNLEARN_CUSOLVER_CHECK(call)                                                     \
  do {                                                                                          \
    const cusolverStatus_t fu_status_ = (call);                                                 \
    if (fu_status_ != CUSOLVER_STATUS_SUCCESS)                                                  \
      ::fisher_unlearn::cuda::detail::throw_cusolver(fu_status_, #call, __FILE__, __LINE__);    \
  } while (0)

// After a kernel launch: a bad configuration shows up here, a fault at the next synchronising call.
#define FISHER_UNLEARN_CUDA_CHECK_LAUNCH() FISHER_UNLEARN_CUDA_CHECK(cudaGetLastError())
