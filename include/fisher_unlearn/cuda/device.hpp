// Device discovery, streams and raw device memory for fisher_unlearn::cuda, without CUDA types in the
// interface: a stream is a void* (a cudaStream_t; nullptr is the legacy default stream).
// Every function throws CudaError on failure, except the queries marked noexcept.
#pragma once

#include "fisher_unlearn/cuda/error.hpp"

#include <cstddef>
#include <string>

namespace fisher_unlearn::cuda {

/// Number of usable CUDA devices; 0 when there is no driver, no device, or the runtime fails.
int device_count() noexcept;

/// True when at least one CUDA device can be used.
inline bool device_available() noexcept { return device_count() > 0; }

/// Why no device is usable, in words ("no CUDA-capable device is detected", ...); empty when one is.
std::string device_unavailable_reason();

struct DeviceInfo {
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;
  std::size_t global_memory_bytes = 0;
  std::size_t l2_cache_bytes = 0;
};

/// Properties of the current device.
DeviceInfo device_info();

/// Blocks the host until all work queued on `stream` has finished; throws CudaError on a fault.
void synchronize(void* stream);

/// Blocks the host until all work on the current device has finished (every stream).
void device_synchronize();

/// An owned, non-blocking CUDA stream. Movable, not copyable.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(Stream&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  /// The cudaStream_t, as void*.
  void* get() const noexcept { return handle_; }
  void synchronize() const { cuda::synchronize(handle_); }

 private:
  void* handle_ = nullptr;
};

namespace detail {
// Raw memory primitives behind DeviceBuffer; stream-ordered copies are asynchronous with respect to
// the host unless the host memory is pageable (then CUDA completes them before returning).
void* device_allocate(std::size_t bytes);
void device_free(void* pointer) noexcept;
void copy_host_to_device(void* device, const void* host, std::size_t bytes, void* stream);
void copy_device_to_host(void* host, const void* device, std::size_t bytes, void* stream);
void copy_device_to_device(void* destination, const void* source, std::size_t bytes, void* stream);
void fill_zero(void* device, std::size_t bytes, void* stream);
}  // namespace detail

}  // namespace fisher_unlearn::cuda
