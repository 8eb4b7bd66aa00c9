// DeviceBuffer<Scalar>: an owned array of Scalar in device memory (RAII over cudaMalloc/cudaFree).
// Copying a buffer copies its contents device-to-device; moving transfers ownership.
// Host transfers take spans, so any contiguous host storage (std::vector, Eigen) works.
#pragma once

#include "fisher_unlearn/cuda/device.hpp"
#include "fisher_unlearn/errors.hpp"

#include <cstddef>
#include <span>
#include <string>
#include <utility>

namespace fisher_unlearn::cuda {

template <class Scalar>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /// Uninitialised storage for `size` elements.
  explicit DeviceBuffer(std::size_t size)
      : data_(size == 0 ? nullptr : static_cast<Scalar*>(detail::device_allocate(size * sizeof(Scalar)))),
        size_(size) {}
  /// A device copy of `host` (synchronous with respect to the host).
  explicit DeviceBuffer(std::span<const Scalar> host, void* stream = nullptr) : DeviceBuffer(host.size()) {
    copy_from_host(host, stream);
    synchronize(stream);
  }
  ~DeviceBuffer() { detail::device_free(data_); }

  /// Waits for all device work first: the source may still be written on another stream.
  DeviceBuffer(const DeviceBuffer& other) : DeviceBuffer(other.size_) {
    if (size_ != 0) {
      device_synchronize();
      detail::copy_device_to_device(data_, other.data_, bytes(), nullptr);
      device_synchronize();
    }
  }
  DeviceBuffer& operator=(const DeviceBuffer& other) {
    if (this != &other) {
      DeviceBuffer copy(other);
      swap(copy);
    }
    return *this;
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    DeviceBuffer moved(std::move(other));
    swap(moved);
    return *this;
  }
  void swap(DeviceBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
  }

  Scalar* data() noexcept { return data_; }
  const Scalar* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t bytes() const noexcept { return size_ * sizeof(Scalar); }
  bool empty() const noexcept { return size_ == 0; }

  /// Stream-ordered copy of host.size() elements into the front of the buffer.
  void copy_from_host(std::span<const Scalar> host, void* stream = nullptr) {
    check_fits(host.size(), "copy_from_host");
    if (!host.empty()) detail::copy_host_to_device(data_, host.data(), host.size_bytes(), stream);
  }
  /// Stream-ordered copy of the first host.size() elements out to host; synchronise before reading.
  void copy_to_host(std::span<Scalar> host, void* stream = nullptr) const {
    check_fits(host.size(), "copy_to_host");
    if (!host.empty()) detail::copy_device_to_host(host.data(), data_, host.size_bytes(), stream);
  }
  void set_zero(void* stream = nullptr) {
    if (size_ != 0) detail::fill_zero(data_, bytes(), stream);
  }

 private:
  void check_fits(std::size_t count, const char* what) const {
    if (count > size_)
      throw InvalidArgument(std::string("DeviceBuffer::") + what + ": " + std::to_string(count) +
                            " elements do not fit a buffer of " + std::to_string(size_) +
                            "; allocate a larger buffer");
  }

  Scalar* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace fisher_unlearn::cuda
