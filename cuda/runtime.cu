// Device queries, streams, raw memory and the library-handle Context of fisher_unlearn::cuda.
#include "check.cuh"

#include "fisher_unlearn/cuda/context.hpp"
#include "fisher_unlearn/cuda/device.hpp"

#include <utility>

namespace fisher_unlearn::cuda {

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

std::string device_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
  }
  return count > 0 ? std::string() : std::string("the CUDA runtime reports 0 devices");
}

DeviceInfo device_info() {
  int device = 0;
  FISHER_UNLEARN_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp properties{};
  FISHER_UNLEARN_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  DeviceInfo info;
  info.name = properties.name;
  info.compute_major = properties.major;
  info.compute_minor = properties.minor;
  info.multiprocessors = properties.multiProcessorCount;
  info.global_memory_bytes = properties.totalGlobalMem;
  info.l2_cache_bytes = static_cast<std::size_t>(properties.l2CacheSize);
  return info;
}

void synchronize(void* stream) {
  FISHER_UNLEARN_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void device_synchronize() { FISHER_UNLEARN_CUDA_CHECK(cudaDeviceSynchronize()); }

Stream::Stream() {
  cudaStream_t stream = nullptr;
  FISHER_UNLEARN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  handle_ = stream;
}

Stream::~Stream() {
  if (handle_ != nullptr) (void)cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) (void)cudaStreamDestroy(static_cast<cudaStream_t>(handle_));
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

namespace detail {

void* device_allocate(std::size_t bytes) {
  void* pointer = nullptr;
  FISHER_UNLEARN_CUDA_CHECK(cudaMalloc(&pointer, bytes));
  return pointer;
}

void device_free(void* pointer) noexcept {
  // cudaFree synchronises the device, so memory still used by queued work is released safely.
  if (pointer != nullptr) (void)cudaFree(pointer);
}

void copy_host_to_device(void* device, const void* host, std::size_t bytes, void* stream) {
  FISHER_UNLEARN_CUDA_CHECK(
      cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)));
}

void copy_device_to_host(void* host, const void* device, std::size_t bytes, void* stream) {
  FISHER_UNLEARN_CUDA_CHECK(
      cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream)));
}

void copy_device_to_device(void* destination, const void* source, std::size_t bytes, void* stream) {
  FISHER_UNLEARN_CUDA_CHECK(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToDevice,
                                            static_cast<cudaStream_t>(stream)));
}

void fill_zero(void* device, std::size_t bytes, void* stream) {
  FISHER_UNLEARN_CUDA_CHECK(cudaMemsetAsync(device, 0, bytes, static_cast<cudaStream_t>(stream)));
}

}  // namespace detail

Context::Context(void* stream) : stream_(stream) {
  try {
    cublasHandle_t blas = nullptr;
    // cublasCreate reports a missing device only as NOT_INITIALIZED: ask the runtime first, so the
    // message names the real cause.
    int count = 0;
    FISHER_UNLEARN_CUDA_CHECK(cudaGetDeviceCount(&count));
    FISHER_UNLEARN_CUBLAS_CHECK(cublasCreate(&blas));
    blas_ = blas;
    FISHER_UNLEARN_CUBLAS_CHECK(cublasSetStream(blas, static_cast<cudaStream_t>(stream)));
    cusolverDnHandle_t solver = nullptr;
    FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnCreate(&solver));
    solver_ = solver;
    FISHER_UNLEARN_CUSOLVER_CHECK(cusolverDnSetStream(solver, static_cast<cudaStream_t>(stream)));
    info_ = static_cast<int*>(detail::device_allocate(sizeof(int)));
  } catch (...) {
    release();
    throw;
  }
}

Context::~Context() { release(); }

Context::Context(Context&& other) noexcept
    : stream_(other.stream_),
      blas_(std::exchange(other.blas_, nullptr)),
      solver_(std::exchange(other.solver_, nullptr)),
      workspace_(std::exchange(other.workspace_, nullptr)),
      workspace_bytes_(std::exchange(other.workspace_bytes_, 0)),
      info_(std::exchange(other.info_, nullptr)) {}

Context& Context::operator=(Context&& other) noexcept {
  if (this != &other) {
    release();
    stream_ = other.stream_;
    blas_ = std::exchange(other.blas_, nullptr);
    solver_ = std::exchange(other.solver_, nullptr);
    workspace_ = std::exchange(other.workspace_, nullptr);
    workspace_bytes_ = std::exchange(other.workspace_bytes_, 0);
    info_ = std::exchange(other.info_, nullptr);
  }
  return *this;
}

void Context::release() noexcept {
  if (blas_ != nullptr) (void)cublasDestroy(static_cast<cublasHandle_t>(blas_));
  if (solver_ != nullptr) (void)cusolverDnDestroy(static_cast<cusolverDnHandle_t>(solver_));
  detail::device_free(workspace_);
  detail::device_free(info_);
  blas_ = solver_ = workspace_ = nullptr;
  info_ = nullptr;
  workspace_bytes_ = 0;
}

void* Context::workspace(std::size_t bytes) {
  if (bytes > workspace_bytes_) {
    void* larger = detail::device_allocate(bytes);
    detail::device_free(workspace_);
    workspace_ = larger;
    workspace_bytes_ = bytes;
  }
  return workspace_;
}

}  // namespace fisher_unlearn::cuda
