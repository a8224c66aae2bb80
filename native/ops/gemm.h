// Single-precision GEMM on the CPU, the workhorse of conv2d and linear.
//
//   C[M,N] = alpha * op(A) * op(B) + beta * C
//
// Row-major storage. op(A) is A [M,K] (lda >= K) or, with transA, A^T where A is [K,M] (lda >= M);
// op(B) is B [K,N] (ldb >= N) or, with transB, B^T where B is [N,K] (ldb >= K). C is [M,N], ldc >= N.
// beta == 0 overwrites C without reading it (NaN in C does not propagate).
// The pool splits the work across its workers; pass nullptr to run on the calling thread only.
#pragma once
#include "core/parallel.h"

namespace cn {

void sgemm(ThreadPool* pool, bool transA, bool transB, int M, int N, int K, float alpha,
           const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);

// The micro-kernel chosen for this CPU: "avx512", "avx2", "sse" or "portable".
const char* sgemm_kernel_name();

// The plain triple loop, kept as the reference the fast path is tested against.
void sgemm_reference(bool transA, bool transB, int M, int N, int K, float alpha, const float* A,
                     int lda, const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace cn
