// Single-precision GEMM on CUDA (see gemm_cuda.h for the contract): one shared-memory tiled
// kernel, instantiated for the four transpose combinations, plus a kernel that only scales C
// (K == 0 or alpha == 0).
#include <algorithm>

#include "core/cuda_check.h"
#include "ops/gemm_cuda.h"

namespace cn {
namespace {

constexpr int kBM = 64;       // rows of C per block
constexpr int kBN = 64;       // columns of C per block
constexpr int kBK = 16;       // depth of one shared-memory tile
constexpr int kThreads = 256; // 16 x 16 threads, each a 4 x 4 register tile of C
constexpr int kPad = 4;       // keeps rows 16-byte aligned and staggers the transposing stores
constexpr int64_t kMaxGridX = 0x7fffffff;
constexpr int64_t kMaxGridZ = 65535;

// One thread's share of a 64 x 16 (A) or 16 x 64 (B) tile: 4 floats that are contiguous in
// global memory. `along_k` says the 4 run along K (A untransposed, B transposed): then the
// thread owns tile row/column t / 4 and depths (t % 4) * 4 .. + 3; otherwise it owns depth
// t / 16 and rows/columns (t % 16) * 4 .. + 3.
//
// Global element (outer, inner) sits at p[outer * ld + inner], with `inner` the contiguous index
// (K when along_k, else M or N); outer_n / inner_n bound the matrix. Out-of-range elements read
// as 0, which adds nothing to the product. vec: p is 16-byte aligned and ld % 4 == 0, so a group
// that starts at a multiple of 4 and lies wholly in range is one float4 load.
__device__ __forceinline__ void load_group(const float* __restrict__ p, int64_t ld, int outer,
                                           int inner, int outer_n, int inner_n, bool vec,
                                           float (&r)[4]) {
  if (outer >= outer_n) {
    r[0] = r[1] = r[2] = r[3] = 0.0f;
    return;
  }
  const float* q = p + static_cast<int64_t>(outer) * ld + inner;
  if (vec && inner + 3 < inner_n) {
    const float4 v = *reinterpret_cast<const float4*>(q);
    r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
    return;
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) r[i] = inner + i < inner_n ? q[i] : 0.0f;
}

// C = alpha * op(A) op(B) + beta * C, tiled (batched over blockIdx.z).
// Thread mapping: one block of 256 threads per 64 x 64 tile of C; blockIdx.x is the tile index
// (tile_offset + blockIdx.x = tile_row * tiles_n + tile_col), blockIdx.z the batch entry. Thread
// t = ty * 16 + tx accumulates C rows ty*4 .. +3, columns tx*4 .. +3 in registers.
// Tiles: K is walked in 16-deep steps; the block stages op(A) [64 x 16] and op(B) [16 x 64] in
// shared memory k-major (As[k][m], Bs[k][n]), each thread loading 4 contiguous floats of each
// (float4 when aligned, bounds-checked scalars at the edges, zeros outside the matrix). The next
// step's tiles are read into registers while the current ones are multiplied.
// Layout: row-major A, B, C with leading dimensions lda, ldb, ldc (see gemm_cuda.h); batch
// entry z uses A + z*strideA, B + z*strideB, C + z*strideC. vecC: C float4-aligned in every row.
template <bool kTransA, bool kTransB>
__global__ void __launch_bounds__(kThreads)
    sgemm_tiled_kernel(int M, int N, int K, float alpha, const float* __restrict__ A, int lda,
                       int64_t strideA, const float* __restrict__ B, int ldb, int64_t strideB,
                       float beta, float* __restrict__ C, int ldc, int64_t strideC, int tiles_n,
                       int64_t tile_offset, bool vecA, bool vecB, bool vecC) {
  __shared__ __align__(16) float As[kBK][kBM + kPad];
  __shared__ __align__(16) float Bs[kBK][kBN + kPad];

  const int t = threadIdx.x;
  const int tx = t % 16, ty = t / 16;
  const int64_t tile = tile_offset + blockIdx.x;
  const int m0 = static_cast<int>(tile / tiles_n) * kBM;
  const int n0 = static_cast<int>(tile % tiles_n) * kBN;
  A += static_cast<int64_t>(blockIdx.z) * strideA;
  B += static_cast<int64_t>(blockIdx.z) * strideB;
  C += static_cast<int64_t>(blockIdx.z) * strideC;

  // This thread's loading coordinates (see load_group).
  const int a_outer = kTransA ? t / 16 : t / 4;        // k (transA) or row m
  const int a_inner = kTransA ? (t % 16) * 4 : (t % 4) * 4;  // row m (transA) or k
  const int b_outer = kTransB ? t / 4 : t / 16;        // column n (transB) or k
  const int b_inner = kTransB ? (t % 4) * 4 : (t % 16) * 4;  // k (transB) or column n

  float ra[4], rb[4];
  auto load_tiles = [&](int k0) {
    if (kTransA) {
      load_group(A, lda, k0 + a_outer, m0 + a_inner, K, M, vecA, ra);
    } else {
      load_group(A, lda, m0 + a_outer, k0 + a_inner, M, K, vecA, ra);
    }
    if (kTransB) {
      load_group(B, ldb, n0 + b_outer, k0 + b_inner, N, K, vecB, rb);
    } else {
      load_group(B, ldb, k0 + b_outer, n0 + b_inner, K, N, vecB, rb);
    }
  };
  auto store_tiles = [&]() {
    if (kTransA) {
      *reinterpret_cast<float4*>(&As[a_outer][a_inner]) = make_float4(ra[0], ra[1], ra[2], ra[3]);
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) As[a_inner + i][a_outer] = ra[i];
    }
    if (kTransB) {
#pragma unroll
      for (int i = 0; i < 4; ++i) Bs[b_inner + i][b_outer] = rb[i];
    } else {
      *reinterpret_cast<float4*>(&Bs[b_outer][b_inner]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
    }
  };

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  load_tiles(0);
  store_tiles();
  __syncthreads();
  for (int k0 = 0; k0 < K; k0 += kBK) {
    const bool more = k0 + kBK < K;  // the same for every thread of the block
    if (more) load_tiles(k0 + kBK);
#pragma unroll
    for (int k = 0; k < kBK; ++k) {
      const float4 a = *reinterpret_cast<const float4*>(&As[k][ty * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&Bs[k][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w};
      const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    if (more) {
      __syncthreads();  // every thread is done reading the tiles before they are overwritten
      store_tiles();
      __syncthreads();  // the new tiles are complete before anyone reads them
    }
  }

  const int col = n0 + tx * 4;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int row = m0 + ty * 4 + i;
    if (row >= M) break;
    float* c = C + static_cast<int64_t>(row) * ldc + col;
    if (vecC && col + 3 < N) {
      float4 v = make_float4(alpha * acc[i][0], alpha * acc[i][1], alpha * acc[i][2],
                             alpha * acc[i][3]);
      if (beta != 0.0f) {
        const float4 old = *reinterpret_cast<const float4*>(c);
        v.x += beta * old.x; v.y += beta * old.y; v.z += beta * old.z; v.w += beta * old.w;
      }
      *reinterpret_cast<float4*>(c) = v;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (col + j < N) c[j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[j];
      }
    }
  }
}

// C[z][i][j] = beta * C[z][i][j] (0 without reading C when beta == 0), for z < batch, i < M,
// j < N. Thread mapping: a grid-stride loop over the batch * M * N elements, one per thread per
// step, 256 threads a block; 64-bit indices. Layout: C row-major, ldc, batch stride strideC.
__global__ void scale_c_kernel(int64_t batch, int M, int N, float beta, float* __restrict__ C,
                               int ldc, int64_t strideC) {
  const int64_t per = static_cast<int64_t>(M) * N;
  const int64_t total = batch * per;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const int64_t z = e / per;
    const int64_t r = e - z * per;
    const int64_t i = r / N, j = r - i * N;
    float* c = C + z * strideC + i * ldc + j;
    *c = beta == 0.0f ? 0.0f : beta * *c;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <bool kTransA, bool kTransB>
void launch_tiled(cudaStream_t stream, int M, int N, int K, float alpha, const float* A, int lda,
                  int64_t strideA, const float* B, int ldb, int64_t strideB, float beta, float* C,
                  int ldc, int64_t strideC, int64_t batch, const std::string& where) {
  const int64_t tiles_m = (static_cast<int64_t>(M) + kBM - 1) / kBM;
  const int tiles_n = static_cast<int>((static_cast<int64_t>(N) + kBN - 1) / kBN);
  const int64_t tiles = tiles_m * tiles_n;
  // float4 access needs every row start of every batch entry on a 16-byte boundary.
  const bool multi = batch > 1;
  const bool vecA = aligned16(A) && lda % 4 == 0 && (!multi || strideA % 4 == 0);
  const bool vecB = aligned16(B) && ldb % 4 == 0 && (!multi || strideB % 4 == 0);
  const bool vecC = aligned16(C) && ldc % 4 == 0 && (!multi || strideC % 4 == 0);
  for (int64_t z0 = 0; z0 < batch; z0 += kMaxGridZ) {
    const int64_t nz = std::min(kMaxGridZ, batch - z0);
    for (int64_t t0 = 0; t0 < tiles; t0 += kMaxGridX) {
      const int64_t nt = std::min(kMaxGridX, tiles - t0);
      dim3 grid(static_cast<unsigned>(nt), 1, static_cast<unsigned>(nz));
      sgemm_tiled_kernel<kTransA, kTransB><<<grid, kThreads, 0, stream>>>(
          M, N, K, alpha, A + z0 * strideA, lda, strideA, B + z0 * strideB, ldb, strideB, beta,
          C + z0 * strideC, ldc, strideC, tiles_n, t0, vecA, vecB, vecC);
      CN_CUDA_CHECK(cudaGetLastError(), where + " (sgemm)");
    }
  }
}

}  // namespace

void sgemm_strided_batched_cuda(cudaStream_t stream, bool transA, bool transB, int M, int N,
                                int K, float alpha, const float* A, int lda, int64_t strideA,
                                const float* B, int ldb, int64_t strideB, float beta, float* C,
                                int ldc, int64_t strideC, int64_t batch,
                                const std::string& where) {
  if (M <= 0 || N <= 0 || batch <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    if (beta == 1.0f) return;
    const int64_t total = batch * M * static_cast<int64_t>(N);
    const int64_t blocks = std::min<int64_t>((total + 255) / 256, 65535 * 32);
    scale_c_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(batch, M, N, beta, C, ldc,
                                                                      strideC);
    CN_CUDA_CHECK(cudaGetLastError(), where + " (sgemm scale)");
    return;
  }
  if (transA) {
    if (transB) {
      launch_tiled<true, true>(stream, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C,
                               ldc, strideC, batch, where);
    } else {
      launch_tiled<true, false>(stream, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C,
                                ldc, strideC, batch, where);
    }
  } else {
    if (transB) {
      launch_tiled<false, true>(stream, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta, C,
                                ldc, strideC, batch, where);
    } else {
      launch_tiled<false, false>(stream, M, N, K, alpha, A, lda, strideA, B, ldb, strideB, beta,
                                 C, ldc, strideC, batch, where);
    }
  }
}

void sgemm_cuda(cudaStream_t stream, bool transA, bool transB, int M, int N, int K, float alpha,
                const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc,
                const std::string& where) {
  sgemm_strided_batched_cuda(stream, transA, transB, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta,
                             C, ldc, 0, 1, where);
}

}  // namespace cn
