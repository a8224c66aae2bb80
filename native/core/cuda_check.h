// Turns a cudaError_t into a typed error: OutOfMemoryError for allocation failures, CudaError
// (carrying the CUDA error name) for everything else. Never aborts.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "core/errors.h"

namespace cn {

[[noreturn]] inline void throw_cuda(cudaError_t err, const std::string& where) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  std::string name = cudaGetErrorName(err);
  Error e(err == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Cuda,
          where + ": " + name + " (" + cudaGetErrorString(err) + ")");
  e.cuda_name = name;
  throw e;
}

}  // namespace cn

#define CN_CUDA_CHECK(call, where)                    \
  do {                                                \
    cudaError_t cn_err_ = (call);                     \
    if (cn_err_ != cudaSuccess) ::cn::throw_cuda(cn_err_, where); \
  } while (0)
