// Launch geometry shared by the element-wise style kernels: 256-thread blocks and grid-stride
// loops over 64-bit indices, with the grid capped so huge tensors loop instead of overflowing
// gridDim.x.
#pragma once
#include <cstdint>

namespace cn {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(65535) * 32;

inline unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < kMaxBlocks ? (b > 0 ? b : 1) : kMaxBlocks);
}

#if defined(__CUDACC__)
__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}
#endif

}  // namespace cn
