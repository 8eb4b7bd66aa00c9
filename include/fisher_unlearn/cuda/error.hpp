// CudaError: the typed exception every failed CUDA runtime, cuBLAS, cuSOLVER or cuRAND call becomes,
// carrying the library that failed, its status code, and the file and line of the call.
// Nothing in fisher_unlearn::cuda calls exit(); every call into CUDA is checked.
#pragma once

#include "fisher_unlearn/errors.hpp"

#include <string>
#include <utility>

namespace fisher_unlearn::cuda {

/// A CUDA call failed: no device or driver, out of device memory, a kernel fault, a cuBLAS/cuSOLVER
/// status other than success. what() reads "<library> error <code> (<name>) at <file>:<line> in
/// <call>: <advice>".
class CudaError : public Error {
 public:
  CudaError(std::string library, int code, std::string detail, const char* file, int line)
      : Error(library + " error " + std::to_string(code) + " " + detail + " at " + file + ":" +
              std::to_string(line)),
        library_(std::move(library)), code_(code), file_(file), line_(line) {}

  /// "CUDA runtime", "cuBLAS", "cuSOLVER" or "cuRAND".
  const std::string& library() const noexcept { return library_; }
  /// The status code the library returned (cudaError_t, cublasStatus_t, ... as an int).
  int code() const noexcept { return code_; }
  const char* file() const noexcept { return file_; }
  int line() const noexcept { return line_; }

 private:
  std::string library_;
  int code_;
  const char* file_;
  int line_;
};

}  // namespace fisher_unlearn::cuda
