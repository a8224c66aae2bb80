// linear on CUDA (see loss.h for the contract): three sgemm_cuda calls, a bias broadcast and a
// deterministic column-sum for db. Every output is overwritten.
//
//   forward          y [N,M]  = x [N,K] w[M,K]^T (+ b)      y starts as b, then beta = 1
//   backward data    dx [N,K] = dy [N,M] w [M,K]
//   backward weight  dw [M,K] = dy^T x;  db [M] = sum_n dy[n, :]
#include <algorithm>
#include <string>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/gemm_cuda.h"
#include "ops/op_args.h"
#include "ops/registry.h"

namespace cn {
namespace {



// y[n, m] = b[m] for n < N, m < M.
// Thread mapping: a grid-stride loop over the N*M elements of y, one per thread per step,
// 256 threads a block; 64-bit indices. Layout: y row-major [N, M], b [M].
__global__ void linear_bias_fill_kernel(float* __restrict__ y, const float* __restrict__ b,
                                        int64_t N, int M) {
  const int64_t total = N * M;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    y[e] = b[e % M];
  }
}

// db[m] = sum over n < N of dy[n, m], in a fixed order (no atomics, so the result is the same
// on every run).
// Thread mapping: a block of 32 x 8 threads owns 32 consecutive columns; thread (tx, ty) sums
// rows ty, ty+8, ty+16, ... of column blockIdx.x*32 + tx (coalesced across tx), then thread
// (tx, 0) adds the 8 partial sums in ty order. Shapes: dy row-major [N, M], db [M].
__global__ void linear_bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ db,
                                        int N, int M) {
  __shared__ float part[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int m = blockIdx.x * 32 + tx;
  float s = 0.0f;
  if (m < M) {
    for (int n = ty; n < N; n += 8) s += dy[static_cast<int64_t>(n) * M + m];
  }
  part[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && m < M) {
    float total = 0.0f;
    for (int r = 0; r < 8; ++r) total += part[r][tx];
    db[m] = total;
  }
}

std::string where(const char* op, const CudaDevice* dev) {
  return std::string(op) + ": launching on " + dev->id();
}

}  // namespace

// linear_forward: [y, x, w, b?] | [N, K, M] | []
void linear_forward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int N = int_arg(c, 0), K = int_arg(c, 1), M = int_arg(c, 2);
  float* y = arg(c, 0);
  const float *x = arg(c, 1), *w = arg(c, 2), *b = arg(c, 3);
  if (N <= 0 || M <= 0) return;
  dev->activate();
  const std::string at = where("linear_forward", dev);
  if (b) {
    const int64_t total = static_cast<int64_t>(N) * M;
    linear_bias_fill_kernel<<<blocks_for(total), kThreads, 0, dev->stream()>>>(y, b, N, M);
    CN_CUDA_CHECK(cudaGetLastError(), at);
  }
  sgemm_cuda(dev->stream(), false, true, N, M, K, 1.0f, x, K, w, K, b ? 1.0f : 0.0f, y, M, at);
}

// linear_backward_data: [dx, dy, w] | [N, K, M] | []
void linear_backward_data_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int N = int_arg(c, 0), K = int_arg(c, 1), M = int_arg(c, 2);
  if (N <= 0 || K <= 0) return;
  dev->activate();
  sgemm_cuda(dev->stream(), false, false, N, K, M, 1.0f, arg(c, 1), M, arg(c, 2), K, 0.0f, arg(c, 0),
             K, where("linear_backward_data", dev));
}

// linear_backward_weight: [dw, db?, x, dy] | [N, K, M] | []
void linear_backward_weight_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const int N = int_arg(c, 0), K = int_arg(c, 1), M = int_arg(c, 2);
  float *dw = arg(c, 0), *db = arg(c, 1);
  const float *x = arg(c, 2), *dy = arg(c, 3);
  if (M <= 0) return;
  dev->activate();
  const std::string at = where("linear_backward_weight", dev);
  sgemm_cuda(dev->stream(), true, false, M, K, N, 1.0f, dy, M, x, K, 0.0f, dw, K, at);
  if (db) {
    const unsigned blocks = static_cast<unsigned>((static_cast<int64_t>(M) + 31) / 32);
    linear_bias_grad_kernel<<<blocks, dim3(32, 8), 0, dev->stream()>>>(dy, db, N, M);
    CN_CUDA_CHECK(cudaGetLastError(), at);
  }
}

}  // namespace cn
