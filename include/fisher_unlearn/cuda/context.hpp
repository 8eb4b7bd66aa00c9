// Context: a cuBLAS handle and a cuSOLVER handle bound to one stream, plus a growable device
// workspace; every routine that calls a library takes one. Public types carry no CUDA types: the
// handles are exposed as void* (cublasHandle_t, cusolverDnHandle_t) for callers who mix in their own.
#pragma once

#include "fisher_unlearn/cuda/device.hpp"

#include <cstddef>

namespace fisher_unlearn::cuda {

class Context {
 public:
  /// Creates the handles on the current device and binds them to `stream` (not owned; nullptr is the
  /// legacy default stream). Throws CudaError when there is no usable device.
  explicit Context(void* stream = nullptr);
  ~Context();
  Context(Context&& other) noexcept;
  Context& operator=(Context&& other) noexcept;
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  void* stream() const noexcept { return stream_; }
  void* blas_handle() const noexcept { return blas_; }
  void* solver_handle() const noexcept { return solver_; }

  /// Device scratch space of at least `bytes`, reused across calls; valid until the next call that
  /// asks for more. Stream-ordered use only (the routines that use it run on stream()).
  void* workspace(std::size_t bytes);
  /// One device int for cuSOLVER's status output.
  int* device_info() noexcept { return info_; }

 private:
  void release() noexcept;

  void* stream_ = nullptr;
  void* blas_ = nullptr;
  void* solver_ = nullptr;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  int* info_ = nullptr;
};

}  // namespace fisher_unlearn::cuda
