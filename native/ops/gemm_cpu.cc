// Single-precision GEMM on the CPU (see gemm.h for the contract).
//
// Algorithm: the Goto/BLIS scheme. C is computed in blocks: for each NC-wide column block of
// op(B) and each KC-deep slice of K, the KC x NC block of op(B) is packed into NR-wide
// micro-panels (k-major, zero-padded); for each MC-high row block of op(A) the MC x KC block is
// packed into MR-high micro-panels (k-major, zero-padded, alpha folded in). A register-blocked
// micro-kernel then multiplies one A micro-panel by one B micro-panel into an MR x NR tile of C
// held entirely in vector registers. Packing makes every micro-kernel load contiguous and
// aligned whatever the transposes and leading dimensions, and lets the B micro-panel stay in L1
// while A micro-panels stream from L2. Operands stored k-contiguous (A untransposed, B
// transposed) are packed with 4x4 SSE register transposes.
//
// Micro-kernels, chosen once at run time from what the CPU supports:
//   avx512  8 x 32  (16 zmm accumulators; MR = 8 divides every AlexNet channel count)
//   avx2    6 x 16  (12 ymm accumulators, the classic Haswell shape)
//   sse     6 x 8   (12 xmm accumulators, baseline x86-64, no FMA)
//   portable 8 x 8  (plain C++ the compiler vectorises: NEON on aarch64; on x86 only on request)
// Each also has a half-width variant (MR x NR/2) used for the last column panel when at most
// NR/2 columns remain, so N = 36 is not padded to 64. Ragged M/N edges are computed into a
// scratch tile and then merged, so C outside the M x N window is never touched.
// Blocking: KC = 256 (B micro-panel 32 KiB for avx512, fits the 48 KiB L1 with the A stream),
// MC = 192 (A block <= 192 KiB in L2), NC = 3072. K and M are split into equal-sized blocks
// rather than full blocks plus a sliver.
// M == 1 or N == 1 (matrix-vector) skips packing and runs on the calling thread.
// The environment variable CN_SGEMM_ISA (avx512 | avx2 | sse | portable) caps the choice, for
// testing. Builds for other processors (aarch64: Grace, Jetson) have the portable kernel only.
//
// Threads: with a pool, C is split into contiguous ranges of whole column micro-panels (or row
// micro-panels when N has too few), one range per worker; each worker runs the serial blocked
// code on its own sub-problem with thread_local packing buffers, so no two workers write the
// same memory. Small problems run on the calling thread, where the thread handoff would cost
// more than it saves.
#include "ops/gemm.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CN_X86 1
#include <immintrin.h>
#else
#define CN_X86 0
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace cn {
namespace {

// acc tile (mr x nr, computed by the kernel) is merged into C as C = acc + beta * C; beta == 0
// stores without reading C.
using Kernel = void (*)(int kc, const float* a, const float* b, float* c, int64_t ldc,
                        float beta);

struct Isa {
  const char* name;
  int mr, nr;
  Kernel full;  // mr x nr
  Kernel half;  // mr x nr/2
};

constexpr int KC = 256;
constexpr int MC = 192;
constexpr int NC = 3072;

#if CN_X86
template <int MR, int NV>
__attribute__((target("avx512f"))) void kernel_avx512(int kc, const float* a, const float* b,
                                                      float* c, int64_t ldc, float beta) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
    for (int i = 0; i < MR; ++i) {
      __m512 ai = _mm512_set1_ps(a[i]);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += MR;
    b += 16 * NV;
  }
  if (beta == 0.0f) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) _mm512_storeu_ps(c + i * ldc + 16 * v, acc[i][v]);
  } else {
    __m512 bb = _mm512_set1_ps(beta);
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        float* p = c + i * ldc + 16 * v;
        _mm512_storeu_ps(p, _mm512_fmadd_ps(bb, _mm512_loadu_ps(p), acc[i][v]));
      }
  }
}

template <int MR, int NV>
__attribute__((target("avx2,fma"))) void kernel_avx2(int kc, const float* a, const float* b,
                                                     float* c, int64_t ldc, float beta) {
  __m256 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    __m256 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
    for (int i = 0; i < MR; ++i) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += MR;
    b += 8 * NV;
  }
  if (beta == 0.0f) {
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) _mm256_storeu_ps(c + i * ldc + 8 * v, acc[i][v]);
  } else {
    __m256 bb = _mm256_set1_ps(beta);
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) {
        float* p = c + i * ldc + 8 * v;
        _mm256_storeu_ps(p, _mm256_fmadd_ps(bb, _mm256_loadu_ps(p), acc[i][v]));
      }
  }
}

template <int MR, int NV>
void kernel_sse(int kc, const float* a, const float* b, float* c, int64_t ldc, float beta) {
  __m128 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm_setzero_ps();
  for (int k = 0; k < kc; ++k) {
    __m128 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm_load_ps(b + 4 * v);
    for (int i = 0; i < MR; ++i) {
      __m128 ai = _mm_set1_ps(a[i]);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm_add_ps(acc[i][v], _mm_mul_ps(ai, bv[v]));
    }
    a += MR;
    b += 4 * NV;
  }
  __m128 bb = _mm_set1_ps(beta);
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      float* p = c + i * ldc + 4 * v;
      __m128 r = acc[i][v];
      if (beta != 0.0f) r = _mm_add_ps(r, _mm_mul_ps(bb, _mm_loadu_ps(p)));
      _mm_storeu_ps(p, r);
    }
}

const Isa kAvx512{"avx512", 8, 32, kernel_avx512<8, 2>, kernel_avx512<8, 1>};
const Isa kAvx2{"avx2", 6, 16, kernel_avx2<6, 2>, kernel_avx2<6, 1>};
const Isa kSse{"sse", 6, 8, kernel_sse<6, 2>, kernel_sse<6, 1>};
#endif

// The portable micro-kernel: the same register tile in plain C++. With -O3 the compiler keeps
// acc in vector registers and vectorises the j loops (NEON on aarch64, SSE on x86-64).
template <int MR, int NR>
void kernel_portable(int kc, const float* a, const float* b, float* c, int64_t ldc, float beta) {
  float acc[MR][NR] = {};
  for (int k = 0; k < kc; ++k) {
    for (int i = 0; i < MR; ++i) {
      const float ai = a[i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
    }
    a += MR;
    b += NR;
  }
  for (int i = 0; i < MR; ++i) {
    float* p = c + i * ldc;
    if (beta == 0.0f) {
      for (int j = 0; j < NR; ++j) p[j] = acc[i][j];
    } else {
      for (int j = 0; j < NR; ++j) p[j] = acc[i][j] + beta * p[j];
    }
  }
}

const Isa kPortable{"portable", 8, 8, kernel_portable<8, 8>, kernel_portable<8, 4>};

const Isa& choose_isa() {
  const char* cap = std::getenv("CN_SGEMM_ISA");
  if (cap && std::strcmp(cap, "portable") == 0) return kPortable;
#if CN_X86
  __builtin_cpu_init();
  int level = 0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) level = 1;
  if (level == 1 && __builtin_cpu_supports("avx512f")) level = 2;
  if (cap) {
    if (std::strcmp(cap, "sse") == 0) level = 0;
    if (std::strcmp(cap, "avx2") == 0) level = std::min(level, 1);
  }
  return level == 2 ? kAvx512 : level == 1 ? kAvx2 : kSse;
#else
  return kPortable;
#endif
}

const Isa& isa() {
  static const Isa& chosen = choose_isa();
  return chosen;
}

// A growable 64-byte-aligned scratch array, one per thread and role.
struct Scratch {
  std::unique_ptr<float[]> raw;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      raw.reset(new float[n + 16]);
      cap = n;
    }
    uintptr_t p = reinterpret_cast<uintptr_t>(raw.get());
    return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
  }
};

// Equal-sized blocks no larger than cap, rounded up to a multiple of unit.
int block_size(int n, int cap, int unit) {
  int blocks = (n + cap - 1) / cap;
  int b = (n + blocks - 1) / blocks;
  return std::min(cap, (b + unit - 1) / unit * unit);
}

// dst[k * width + r] = scale * src[r * ld + k] for r < rows, k < len; rows..width-1 are zeroed.
// The transposing half of packing: 4x4 SSE register transposes instead of scalar gathers,
// which otherwise dominate packing for transposed operands.
void pack_transposed(const float* src, int64_t ld, int rows, int len, float scale, int width,
                     float* dst) {
  int r = 0;
#if CN_X86
  const __m128 s4 = _mm_set1_ps(scale);
  for (; r + 4 <= rows; r += 4) {
    const float* s0 = src + r * ld;
    const float* s1 = s0 + ld;
    const float* s2 = s1 + ld;
    const float* s3 = s2 + ld;
    int k = 0;
    for (; k + 4 <= len; k += 4) {
      __m128 a = _mm_mul_ps(s4, _mm_loadu_ps(s0 + k)), b = _mm_mul_ps(s4, _mm_loadu_ps(s1 + k));
      __m128 c = _mm_mul_ps(s4, _mm_loadu_ps(s2 + k)), d = _mm_mul_ps(s4, _mm_loadu_ps(s3 + k));
      _MM_TRANSPOSE4_PS(a, b, c, d);
      float* o = dst + int64_t(k) * width + r;
      _mm_storeu_ps(o, a);
      _mm_storeu_ps(o + width, b);
      _mm_storeu_ps(o + 2 * width, c);
      _mm_storeu_ps(o + 3 * width, d);
    }
    for (; k < len; ++k) {
      float* o = dst + int64_t(k) * width + r;
      o[0] = scale * s0[k];
      o[1] = scale * s1[k];
      o[2] = scale * s2[k];
      o[3] = scale * s3[k];
    }
  }
#endif
  for (; r < rows; ++r) {
    const float* s0 = src + r * ld;
    for (int k = 0; k < len; ++k) dst[int64_t(k) * width + r] = scale * s0[k];
  }
  if (rows < width)
    for (int k = 0; k < len; ++k)
      for (int j = rows; j < width; ++j) dst[int64_t(k) * width + j] = 0.0f;
}

// dst[k * width + j] = scale * src[k * ld + j] for j < cols, zero-padded to width.
void pack_straight(const float* src, int64_t ld, int cols, int len, float scale, int width,
                   float* dst) {
  for (int k = 0; k < len; ++k, dst += width) {
    const float* s = src + k * ld;
    if (scale == 1.0f) {
      for (int j = 0; j < cols; ++j) dst[j] = s[j];
    } else {
      for (int j = 0; j < cols; ++j) dst[j] = scale * s[j];
    }
    for (int j = cols; j < width; ++j) dst[j] = 0.0f;
  }
}

// op(A)[i0 : i0+mc, p0 : p0+kc] -> micro-panels of mr rows: dst[panel][k][i] = alpha * op(A).
void pack_a(bool tA, const float* A, int lda, int i0, int mc, int p0, int kc, float alpha,
            int mr, float* dst) {
  for (int ip = 0; ip < mc; ip += mr, dst += static_cast<int64_t>(kc) * mr) {
    const int rows = std::min(mr, mc - ip);
    if (tA) {
      pack_straight(A + static_cast<int64_t>(p0) * lda + i0 + ip, lda, rows, kc, alpha, mr, dst);
    } else {
      pack_transposed(A + static_cast<int64_t>(i0 + ip) * lda + p0, lda, rows, kc, alpha, mr,
                      dst);
    }
  }
}

// Width of the packed panel that starts at column j of an n-wide block.
inline int panel_width(const Isa& I, int n, int j) {
  return n - j <= I.nr / 2 ? I.nr / 2 : I.nr;
}

// op(B)[p0 : p0+kc, j0 : j0+nc] -> micro-panels of nr (or nr/2 for a narrow last panel)
// columns: dst[panel][k][j]. Every panel starts at a multiple of kc * nr.
void pack_b(const Isa& I, bool tB, const float* B, int ldb, int p0, int kc, int j0, int nc,
            float* dst) {
  for (int jp = 0; jp < nc; jp += I.nr, dst += static_cast<int64_t>(kc) * I.nr) {
    const int cols = std::min(I.nr, nc - jp);
    const int pw = panel_width(I, nc, jp);
    if (tB) {
      pack_transposed(B + static_cast<int64_t>(j0 + jp) * ldb + p0, ldb, cols, kc, 1.0f, pw, dst);
    } else {
      pack_straight(B + static_cast<int64_t>(p0) * ldb + j0 + jp, ldb, cols, kc, 1.0f, pw, dst);
    }
  }
}

// The blocked product on the calling thread. M, N, K > 0 and alpha != 0.
// With `packed` (panels of the same M, K, alpha laid out as sgemm_layout_a says, at packed_a),
// A and lda are unused; with `packed_b` (B's panels as sgemm_layout_b says, at packed_b_data),
// B, ldb and tB are.
void gemm_serial(const Isa& I, bool tA, bool tB, int M, int N, int K, float alpha,
                 const float* A, int lda, const float* B, int ldb, float beta, float* C,
                 int ldc, const PackedA* packed = nullptr, const float* packed_a = nullptr,
                 const PackedB* packed_b = nullptr, const float* packed_b_data = nullptr) {
  static thread_local Scratch a_buf, b_buf, t_buf;
  const int kcb = block_size(K, KC, 1);
  const int mcb = block_size(M, MC, I.mr);
  const int ncb = block_size(N, NC, I.nr);
  const int nmb = (M + mcb - 1) / mcb, nkb = (K + kcb - 1) / kcb;
  float* ap = packed ? nullptr : a_buf.get(static_cast<size_t>(mcb) * kcb);
  float* bp = packed_b ? nullptr : b_buf.get(static_cast<size_t>(ncb) * kcb);
  float* tile = t_buf.get(static_cast<size_t>(I.mr) * I.nr);

  for (int jc = 0; jc < N; jc += ncb) {
    const int nc = std::min(ncb, N - jc);
    for (int pc = 0; pc < K; pc += kcb) {
      const int kc = std::min(kcb, K - pc);
      const float bet = pc == 0 ? beta : 1.0f;
      if (packed_b) {
        bp = const_cast<float*>(packed_b_data) +
             (static_cast<int64_t>(jc / ncb) * nkb + pc / kcb) * ncb * kcb;
      } else {
        pack_b(I, tB, B, ldb, pc, kc, jc, nc, bp);
      }
      for (int ic = 0; ic < M; ic += mcb) {
        const int mc = std::min(mcb, M - ic);
        if (packed) {
          ap = const_cast<float*>(packed_a) +
               (static_cast<int64_t>(pc / kcb) * nmb + ic / mcb) * mcb * kcb;
        } else {
          pack_a(tA, A, lda, ic, mc, pc, kc, alpha, I.mr, ap);
        }
        for (int jr = 0; jr < nc; jr += I.nr) {
          const int cols = std::min(I.nr, nc - jr);
          const int pw = panel_width(I, nc, jr);
          const Kernel kern = pw == I.nr ? I.full : I.half;
          const float* bpanel = bp + static_cast<int64_t>(jr) * kc;
          for (int ir = 0; ir < mc; ir += I.mr) {
            const int rows = std::min(I.mr, mc - ir);
            const float* apanel = ap + static_cast<int64_t>(ir) * kc;
            float* c = C + static_cast<int64_t>(ic + ir) * ldc + jc + jr;
            if (rows == I.mr && cols == pw) {
              kern(kc, apanel, bpanel, c, ldc, bet);
              continue;
            }
            kern(kc, apanel, bpanel, tile, pw, 0.0f);
            for (int i = 0; i < rows; ++i) {
              float* crow = c + static_cast<int64_t>(i) * ldc;
              const float* trow = tile + i * pw;
              if (bet == 0.0f) {
                for (int j = 0; j < cols; ++j) crow[j] = trow[j];
              } else {
                for (int j = 0; j < cols; ++j) crow[j] = trow[j] + bet * crow[j];
              }
            }
          }
        }
      }
    }
  }
}

// Matrix-vector products (M == 1 or N == 1). Packing would copy the whole matrix for a single
// use of each element and pad the vector side to a full micro-tile, so these run directly on
// the matrix instead: out[r] = dot(mat row r, v) or out += v[k] * mat row k.
float dot(const float* a, const float* b, int n) {
  int k = 0;
  float lanes[4];
#if CN_X86
  __m128 s0 = _mm_setzero_ps(), s1 = _mm_setzero_ps();
  for (; k + 8 <= n; k += 8) {
    s0 = _mm_add_ps(s0, _mm_mul_ps(_mm_loadu_ps(a + k), _mm_loadu_ps(b + k)));
    s1 = _mm_add_ps(s1, _mm_mul_ps(_mm_loadu_ps(a + k + 4), _mm_loadu_ps(b + k + 4)));
  }
  _mm_storeu_ps(lanes, _mm_add_ps(s0, s1));
#else
  // The same eight running sums in plain C++ (vectorised by the compiler).
  float s0[4] = {}, s1[4] = {};
  for (; k + 8 <= n; k += 8)
    for (int l = 0; l < 4; ++l) {
      s0[l] += a[k + l] * b[k + l];
      s1[l] += a[k + 4 + l] * b[k + 4 + l];
    }
  for (int l = 0; l < 4; ++l) lanes[l] = s0[l] + s1[l];
#endif
  float sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; k < n; ++k) sum += a[k] * b[k];
  return sum;
}

// by_rows: out[r] = dot(mat row r, v[0 : len]) for r < rows (n == rows).
// otherwise: out[0 : n] = sum over k < rows of v[k] * mat row k.
void gemv(bool by_rows, const float* mat, int64_t ld, int rows, int len, const float* v,
          float* out, int n) {
  if (by_rows) {
    for (int r = 0; r < rows; ++r) out[r] = dot(mat + r * ld, v, len);
    return;
  }
  std::fill(out, out + n, 0.0f);
  for (int k = 0; k < rows; ++k) {
    const float* row = mat + k * ld;
    const float vk = v[k];
    for (int j = 0; j < n; ++j) out[j] += vk * row[j];
  }
}

void gemv_case(bool tA, bool tB, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  static thread_local std::vector<float> vec_buf, out_buf;
  vec_buf.resize(K);
  const int n = M == 1 ? N : M;
  out_buf.resize(n);
  float* v = vec_buf.data();
  float* out = out_buf.data();
  if (M == 1) {
    // v = op(A) row 0; out[j] = sum_k v[k] * op(B)[k, j].
    for (int k = 0; k < K; ++k) v[k] = tA ? A[int64_t(k) * lda] : A[k];
    if (tB) {
      gemv(true, B, ldb, N, K, v, out, N);
    } else {
      gemv(false, B, ldb, K, N, v, out, N);
    }
  } else {
    // v = op(B) column 0; out[i] = sum_k op(A)[i, k] * v[k].
    for (int k = 0; k < K; ++k) v[k] = tB ? B[k] : B[int64_t(k) * ldb];
    if (tA) {
      gemv(false, A, lda, K, M, v, out, M);
    } else {
      gemv(true, A, lda, M, K, v, out, M);
    }
  }
  const int64_t step = M == 1 ? 1 : ldc;
  for (int i = 0; i < n; ++i) {
    float& c = C[i * step];
    c = beta == 0.0f ? alpha * out[i] : alpha * out[i] + beta * c;
  }
}

void scale_c(int M, int N, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    float* c = C + static_cast<int64_t>(i) * ldc;
    if (beta == 0.0f) {
      std::fill(c, c + N, 0.0f);
    } else if (beta != 1.0f) {
      for (int j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

}  // namespace

void sgemm(ThreadPool* pool, bool transA, bool transB, int M, int N, int K, float alpha,
           const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  if (M == 1 || N == 1) {
    gemv_case(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const Isa& I = isa();
  const int T = pool_size(pool);
  // Waking a worker costs tens of microseconds; below ~8 MFLOP (about 50 us on one core) a split
  // gains little or loses.
  const double flops = 2.0 * M * N * K;
  if (T == 1 || flops < 8e6) {
    gemm_serial(I, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int npan = (N + I.nr - 1) / I.nr, mpan = (M + I.mr - 1) / I.mr;
  // Split N when it has at least two panels per worker (or more panels than M): each worker then
  // packs only its own part of B and all of A, and A is usually the smaller operand here.
  if (npan >= 2 * T || npan >= mpan) {
    parallel_for(pool, npan, [&](int64_t b, int64_t e, int) {
      const int j0 = static_cast<int>(b) * I.nr;
      const int j1 = std::min(N, static_cast<int>(e) * I.nr);
      const float* Bj = transB ? B + static_cast<int64_t>(j0) * ldb : B + j0;
      gemm_serial(I, transA, transB, M, j1 - j0, K, alpha, A, lda, Bj, ldb, beta, C + j0, ldc);
    });
  } else {
    parallel_for(pool, mpan, [&](int64_t b, int64_t e, int) {
      const int i0 = static_cast<int>(b) * I.mr;
      const int i1 = std::min(M, static_cast<int>(e) * I.mr);
      const float* Ai = transA ? A + i0 : A + static_cast<int64_t>(i0) * lda;
      gemm_serial(I, transA, transB, i1 - i0, N, K, alpha, Ai, lda, B, ldb, beta,
                  C + static_cast<int64_t>(i0) * ldc, ldc);
    });
  }
}

void sgemm_reference(bool transA, bool transB, int M, int N, int K, float alpha, const float* A,
                     int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int k = 0; k < K; ++k) {
        float a = transA ? A[int64_t(k) * lda + i] : A[int64_t(i) * lda + k];
        float b = transB ? B[int64_t(j) * ldb + k] : B[int64_t(k) * ldb + j];
        sum += a * b;
      }
      float& c = C[int64_t(i) * ldc + j];
      c = beta == 0.0f ? alpha * sum : alpha * sum + beta * c;
    }
  }
}

void sgemm_layout_a(int M, int K, PackedA* out, bool allocate) {
  const Isa& I = isa();
  const int kcb = K > 0 ? block_size(K, KC, 1) : 0, mcb = M > 0 ? block_size(M, MC, I.mr) : 0;
  const int nkb = K > 0 ? (K + kcb - 1) / kcb : 0, nmb = M > 0 ? (M + mcb - 1) / mcb : 0;
  const size_t size = static_cast<size_t>(nkb) * nmb * mcb * kcb;
  if (out->M == M && out->K == K && out->mr == I.mr && out->data.size() == (allocate ? size : 0))
    return;
  out->M = M;
  out->K = K;
  out->mr = I.mr;
  out->kcb = kcb;
  out->mcb = mcb;
  out->nmb = nmb;
  if (allocate) {
    // Sized without copying or refilling what is there: a layer sequence (conv3, conv4, conv5)
    // changes the layout on every call. Padding rows past M are never written by a writer
    // through at(); the micro-kernel's results for them are dropped, so what they hold does not
    // matter (new memory is zero).
    if (size > out->data.capacity()) out->data.clear();
    out->data.resize(size);
  } else {
    out->data.clear();
  }
}

void sgemm_layout_b(int K, int N, PackedB* out) {
  const Isa& I = isa();
  out->K = K;
  out->N = N;
  out->nr = I.nr;
  out->kcb = K > 0 ? block_size(K, KC, 1) : 0;
  out->ncb = N > 0 ? block_size(N, NC, I.nr) : 0;
  out->nkb = K > 0 ? (K + out->kcb - 1) / out->kcb : 0;
}

void sgemm_packed_ab(const PackedA& la, const float* a, const PackedB& lb, const float* b,
                     float beta, float* C, int ldc) {
  if (la.M <= 0 || lb.N <= 0) return;
  if (la.K <= 0) {
    scale_c(la.M, lb.N, beta, C, ldc);
    return;
  }
  gemm_serial(isa(), false, false, la.M, lb.N, la.K, 1.0f, nullptr, 0, nullptr, 0, beta, C, ldc,
              &la, a, &lb, b);
}

void sgemm_pack_a(bool transA, int M, int K, float alpha, const float* A, int lda,
                  PackedA* out) {
  const Isa& I = isa();
  sgemm_layout_a(M, K, out);
  if (M <= 0 || K <= 0) return;
  const int nmb = out->nmb;
  for (int pc = 0; pc < K; pc += out->kcb)
    for (int ic = 0; ic < M; ic += out->mcb)
      pack_a(transA, A, lda, ic, std::min(out->mcb, M - ic), pc, std::min(out->kcb, K - pc),
             alpha, I.mr,
             out->data.data() +
                 (static_cast<int64_t>(pc / out->kcb) * nmb + ic / out->mcb) * out->mcb *
                     out->kcb);
}

void sgemm_packed_a(const PackedA& A, bool transB, int N, const float* B, int ldb, float beta,
                    float* C, int ldc) {
  if (A.M <= 0 || N <= 0) return;
  if (A.K <= 0) {
    scale_c(A.M, N, beta, C, ldc);
    return;
  }
  const Isa& I = isa();
  gemm_serial(I, false, transB, A.M, N, A.K, 1.0f, nullptr, 0, B, ldb, beta, C, ldc, &A,
              A.data.data());
}

const char* sgemm_kernel_name() { return isa().name; }

}  // namespace cn
