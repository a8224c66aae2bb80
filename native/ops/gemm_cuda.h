// Single-precision GEMM on CUDA, the workhorse of conv2d and linear on the GPU. Our own tiled
// kernel (cuBLAS is used only as a benchmark driver, never by the library).
//
//   C[M,N] = alpha * op(A) * op(B) + beta * C
//
// Same contract as gemm.h: row-major storage; op(A) is A [M,K] (lda >= K) or, with transA, A^T
// where A is [K,M] (lda >= M); op(B) is B [K,N] (ldb >= N) or, with transB, B^T where B is
// [N,K] (ldb >= K); C is [M,N], ldc >= N. beta == 0 overwrites C without reading it (NaN in C
// does not propagate). M or N <= 0 does nothing; K <= 0 or alpha == 0 only scales C by beta.
// All pointers are device pointers; the work is queued on `stream` and not waited for.
//
// Launch failures throw cn::Error (ErrorKind::Cuda) with `where` at the front of the message,
// so callers pass "<op>: launching on <device>".
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace cn {

void sgemm_cuda(cudaStream_t stream, bool transA, bool transB, int M, int N, int K, float alpha,
                const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc,
                const std::string& where = "sgemm_cuda: launching");

// `batch` independent products: the same as sgemm_cuda on A + i*strideA, B + i*strideB and
// C + i*strideC for i in [0, batch), in one launch. A stride of 0 shares an operand (the
// weights of a convolution across images). The C matrices must not overlap.
void sgemm_strided_batched_cuda(cudaStream_t stream, bool transA, bool transB, int M, int N,
                                int K, float alpha, const float* A, int lda, int64_t strideA,
                                const float* B, int ldb, int64_t strideB, float beta, float* C,
                                int ldc, int64_t strideC, int64_t batch,
                                const std::string& where = "sgemm_cuda: launching");

}  // namespace cn
