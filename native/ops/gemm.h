// Single-precision GEMM on the CPU, the workhorse of conv2d and linear.
//
//   C[M,N] = alpha * op(A) * op(B) + beta * C
//
// Row-major storage. op(A) is A [M,K] (lda >= K) or, with transA, A^T where A is [K,M] (lda >= M);
// op(B) is B [K,N] (ldb >= N) or, with transB, B^T where B is [N,K] (ldb >= K). C is [M,N], ldc >= N.
// beta == 0 overwrites C without reading it (NaN in C does not propagate).
// The pool splits the work across its workers; pass nullptr to run on the calling thread only.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/parallel.h"

namespace cn {

void sgemm(ThreadPool* pool, bool transA, bool transB, int M, int N, int K, float alpha,
           const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);

// op(A) [M,K] packed once into the panels sgemm would pack it into on each call (alpha folded
// in), for an A that multiplies many B: the Winograd path's transformed filters, one per
// transform point, multiply every chunk of tiles. Valid for this process's micro-kernel only.
struct PackedA {
  int M = 0, K = 0;
  int kcb = 0, mcb = 0, mr = 0, nmb = 0;  // the blocking it was packed for
  std::vector<float> data;
  // Where element (i, k) of A lies in `data`, for writers that produce A straight into its
  // packed form (sgemm_layout_a). The padding rows past M in the last panel need not be
  // written: the products they feed are dropped.
  int64_t at(int i, int k) const {
    const int kb = k / kcb, kk = k - kb * kcb, kc = std::min(kcb, K - kb * kcb);
    const int mb = i / mcb, ii = i - mb * mcb, panel = ii / mr, r = ii - panel * mr;
    return (int64_t(kb) * nmb + mb) * mcb * kcb + (int64_t(panel) * kc + kk) * mr + r;
  }
  // Floats of the packed operand (data.size() once laid out).
  int64_t size() const { return M > 0 && K > 0 ? int64_t((K + kcb - 1) / kcb) * nmb * mcb * kcb : 0; }
};

// The layout of op(B) [K,N] in the panels sgemm packs it into (nr-wide, k-major; a last panel of
// at most nr/2 columns is nr/2 wide), for writers that produce B straight into that form. Rows i
// of A's panels are mr floats apart; columns of B's, one float apart within a panel.
struct PackedB {
  int K = 0, N = 0;
  int kcb = 0, ncb = 0, nr = 0, nkb = 0;
  int64_t at(int k, int j) const {
    const int jb = j / ncb, jj = j - jb * ncb, nc = std::min(ncb, N - jb * ncb);
    const int kb = k / kcb, kk = k - kb * kcb, kc = std::min(kcb, K - kb * kcb);
    const int panel = jj / nr, col = jj - panel * nr;
    const int pw = nc - panel * nr <= nr / 2 ? nr / 2 : nr;
    return (int64_t(jb) * nkb + kb) * ncb * kcb + int64_t(panel) * nr * kc + int64_t(kk) * pw + col;
  }
  int64_t size() const { return K > 0 && N > 0 ? int64_t((N + ncb - 1) / ncb) * nkb * ncb * kcb : 0; }
};
void sgemm_pack_a(bool transA, int M, int K, float alpha, const float* A, int lda, PackedA* out);
// Sets out's blocking for an M x K operand and sizes its data (a writer then fills every
// element (i, k), i < M, k < K, through at(); sgemm_pack_a also zeroes the padding).
// With allocate == false only the blocking is set (for operands kept in a caller's buffer).
void sgemm_layout_a(int M, int K, PackedA* out, bool allocate = true);
void sgemm_layout_b(int K, int N, PackedB* out);
// C[M,N] = A * op(B) + beta * C with A packed by sgemm_pack_a, on the calling thread. Each
// element is the same sum, bit for bit, whatever N is and wherever its column lies in B, and
// the same as sgemm's with the unpacked A when M, N > 1.
void sgemm_packed_a(const PackedA& A, bool transB, int N, const float* B, int ldb, float beta,
                    float* C, int ldc);
// C[M,N] = A * B + beta * C with both operands already packed: `a` holds la.size() floats laid
// out as la describes, `b` lb.size() floats as lb describes (la.K == lb.K), starting on a
// 64-byte boundary (the micro-kernels load B with aligned vector loads). On the calling
// thread; each element is the same sum, bit for bit, as sgemm_packed_a's.
void sgemm_packed_ab(const PackedA& la, const float* a, const PackedB& lb, const float* b,
                     float beta, float* C, int ldc);

// The micro-kernel chosen for this CPU: "avx512", "avx2", "sse" or "portable".
const char* sgemm_kernel_name();

// The plain triple loop, kept as the reference the fast path is tested against.
void sgemm_reference(bool transA, bool transB, int M, int N, int K, float alpha, const float* A,
                     int lda, const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace cn
