// CUDA-side error checking and RAII device memory, shared by every .cu file and by host code that
// drives the CUDA backend.
//
//   DIFFRT_CUDA_CHECK(stmt)  evaluates a cudaError_t, cublasStatus_t (cuBLAS and cuBLASLt) or
//                            cudnnStatus_t expression and throws
//                            diffrt::Error(ErrorCode::Cuda, "<stmt> failed: <status name> at file:line"),
//                            or ErrorCode::OutOfMemory for an allocation failure (cudaErrorMemoryAllocation,
//                            CUBLAS_STATUS_ALLOC_FAILED, cuDNN's allocation statuses), so callers such as the
//                            API can report device out-of-memory as such wherever it happens.
//   DIFFRT_CUDA_CHECK_LAUNCH() checks cudaGetLastError() after a kernel launch (launch-configuration
//                            errors only; asynchronous faults surface at the next synchronising call).
//   DeviceBuffer             move-only owner of one cudaMalloc allocation; allocation failure throws
//                            ErrorCode::OutOfMemory with the requested size in the message.
//
// The overloads below are the only place that knows the three status types; adding a library means one
// more pair of `status_ok`/`status_name` overloads.
#pragma once
#include <cublasLt.h>
#include <cublas_api.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstddef>
#include <string>
#include <utility>

#include "base/error.h"

namespace diffrt {
namespace cuda_detail {

inline bool status_ok(cudaError_t s) { return s == cudaSuccess; }
inline bool status_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
inline bool status_ok(cudnnStatus_t s) { return s == CUDNN_STATUS_SUCCESS; }

// Allocation failures are reported as ErrorCode::OutOfMemory, everything else as ErrorCode::Cuda.
inline ErrorCode status_code(cudaError_t s) {
  return s == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::Cuda;
}
inline ErrorCode status_code(cublasStatus_t s) {
  return s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::OutOfMemory : ErrorCode::Cuda;
}
inline ErrorCode status_code(cudnnStatus_t s) {
#if CUDNN_MAJOR >= 9
  const bool alloc = s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
                     s == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
#else
  const bool alloc = s == CUDNN_STATUS_ALLOC_FAILED;
#endif
  return alloc ? ErrorCode::OutOfMemory : ErrorCode::Cuda;
}

inline std::string status_name(cudaError_t s) {
  return std::string(cudaGetErrorName(s)) + " (" + cudaGetErrorString(s) + ")";
}
inline std::string status_name(cublasStatus_t s) { return cublasGetStatusName(s); }
inline std::string status_name(cudnnStatus_t s) { return cudnnGetErrorString(s); }

[[noreturn]] inline void check_failed(ErrorCode code, const char* stmt, const std::string& name, const char* file,
                                      int line) {
  if (code == ErrorCode::OutOfMemory) (void)cudaGetLastError();  // not sticky: clear it for the next call
  throw Error(code, std::string(stmt) + " failed: " + name + " at " + file + ":" + std::to_string(line));
}

}  // namespace cuda_detail

#define DIFFRT_CUDA_CHECK(stmt)                                                                  \
  do {                                                                                           \
    auto diffrt_status_ = (stmt);                                                                \
    if (!::diffrt::cuda_detail::status_ok(diffrt_status_))                                       \
      ::diffrt::cuda_detail::check_failed(::diffrt::cuda_detail::status_code(diffrt_status_), #stmt, \
                                          ::diffrt::cuda_detail::status_name(diffrt_status_),    \
                                          __FILE__, __LINE__);                                   \
  } while (0)

#define DIFFRT_CUDA_CHECK_LAUNCH() DIFFRT_CUDA_CHECK(cudaGetLastError())

// One device allocation. Never copied; moved by value. Size 0 holds no allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { allocate(bytes); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }

  // Frees the old allocation (contents are not kept) and allocates `bytes`.
  void allocate(size_t bytes) {
    release();
    if (bytes == 0) return;
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky-free allocation error
      fail(ErrorCode::OutOfMemory, "cudaMalloc of " + std::to_string(bytes) +
                                       " bytes failed: " + cuda_detail::status_name(e));
    }
    ptr_ = p;
    bytes_ = bytes;
  }
  // Grows (never shrinks) to at least `bytes`; contents are not kept when it grows.
  void reserve(size_t bytes) {
    if (bytes > bytes_) allocate(bytes);
  }
  void release() noexcept {
    if (ptr_) cudaFree(ptr_);  // errors here are unrecoverable and destructors must not throw
    ptr_ = nullptr;
    bytes_ = 0;
  }

  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace diffrt
