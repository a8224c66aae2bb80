// conv2d on CUDA, version 3: the forward convolution as an implicit GEMM on tensor cores, for the
// reduced precisions (see conv2d.h for the contract, conv2d_cuda.h for how a call picks a
// version). Inputs are rounded to TF32 (cvt.rna: 10 mantissa bits, ties away) or BF16 (7 bits,
// ties to even) as the fragments are built; products are accumulated in FP32 by mma.sync
// (ops/mma_sm80.h). The backward passes run version 2 (FP32 math: more precise than asked,
// which the precision contract allows).
//
// The GEMM is version 2's forward view: C [M = Fg, N = N*OH*OW] = A [M, K = Cg*KH*KW] * B [K, N]
// per group g (grid z), A = the weights rearranged k-major (wT [G][Kc][Fg], a small workspace),
// B = the taps of x gathered on the fly (zero for padding), y = C + bias.
//
// Tiles: a block computes 64 x 64 of C with 128 threads = 4 warps in a 2 x 2 arrangement, each
// warp 32 x 32 = 2 (m16) x 4 (n8) mma tiles, 32 FP32 accumulators per thread. One stage is
// kBK = 16 deep: two m16n8k8 TF32 steps or one m16n8k16 BF16 step per mma tile.
// Shared memory: As[2][kBK][64 + 8], Bs[2][kBK][64 + 8] floats, k-major, double-buffered
// (18 KiB); the row padding of 8 floats puts the 4 k rows a fragment load touches in different
// banks. Loading, per stage: element e = t + r*128 (r < 8) of each tile lands at
// (k, mn) = (e / 64, e % 64): consecutive threads read consecutive filters (A) or output
// pixels (B), one cp.async of 4 bytes each (zero-filled for padding and tile edges) on sm_80+,
// issued for stage kt+1 before stage kt is computed, as in version 2.
// Fragments (mma_sm80.h for the layouts; g = lane / 4, t = lane % 4): thread (warp wm, wn)
// reads A (m = wm*32 + i*16 + g (+8), k) from As[k][m] and B (k, n = wn*32 + j*8 + g) from
// Bs[k][n], rounding each value as it goes into a register.
// Epilogue: accumulator q of tile (i, j) is C row wm*32 + i*16 + g + 8*(q >= 2), column
// wn*32 + j*8 + 2t + (q & 1).
// Only sm_80 and newer have mma.sync: the launcher runs version 2 on older GPUs, and the kernel
// body is compiled only for them (and for native/emu, which emulates mma.sync lane by lane).
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/conv2d.h"
#include "ops/conv2d_cuda.h"
#include "ops/mma_sm80.h"
#include "ops/op_args.h"

#if defined(CN_CUDA_EMULATION) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define CN_CONV_V3_MMA 1
#else
#define CN_CONV_V3_MMA 0
#endif

namespace cn {
namespace {

constexpr int kBM = 64, kBN = 64;
constexpr int kV3Threads = 128;  // 4 warps, 2 x 2, 32 x 32 each
#if CN_CONV_V3_MMA
constexpr int kBK = 16;
constexpr int kPad = 8;  // floats of padding per shared row (bank spread)
constexpr int kWarpM = 32, kWarpN = 32;
constexpr int kMT = kWarpM / 16, kNT = kWarpN / 8;
#endif

#if CN_CONV_V3_MMA
// dst (shared) = *src (global), or 0 when src is null: one cp.async.
__device__ __forceinline__ void v3_copy4(float* dst, const float* src, const float* any) {
  __pipeline_memcpy_async(dst, src ? src : any, 4, src ? 0 : 4);
}
#endif

enum class Math { Tf32, Bf16 };

// y = conv(x, w) + b for the block's 64 x 64 tile of group blockIdx.z. See the file comment.
template <Math kMath>
__global__ void __launch_bounds__(kV3Threads) conv_v3_forward_kernel(ConvView s,
                                                                    const float* __restrict__ wt,
                                                                    const float* __restrict__ x,
                                                                    const float* __restrict__ b,
                                                                    float* __restrict__ y) {
#if CN_CONV_V3_MMA
  __shared__ __align__(16) float As[2][kBK][kBM + kPad];
  __shared__ __align__(16) float Bs[2][kBK][kBN + kPad];
  constexpr int kPer = kBK * kBM / kV3Threads;  // elements per thread per stage and tile: 8

  const int g = static_cast<int>(blockIdx.z);
  const int M = s.Fg;
  const int Ncols = static_cast<int>(s.N * s.P);
  const int K = s.Kc;
  const int tiles_n = (Ncols + kBN - 1) / kBN;
  const int m0 = static_cast<int>(blockIdx.x / tiles_n) * kBM;
  const int n0 = static_cast<int>(blockIdx.x % tiles_n) * kBN;
  if (m0 >= M || n0 >= Ncols) return;  // the whole block

  const int t = threadIdx.x;
  const int lane = t % 32, warp = t / 32;
  const int wm = (warp / 2) * kWarpM, wn = (warp % 2) * kWarpN;
  const int fg = lane / 4, ft = lane % 4;

  // This thread's slots: k offset (e / 64) and m / n (e % 64) are the same for A and B.
  // B: the decoded output pixel of column n0 + mn (base null outside N).
  const int mn = t % kBM;      // e % 64 for every r (128 = 2 * 64)
  const int k_first = t / kBM;  // e / 64 = k_first + 2r
  const int am = m0 + mn;
  const float* wt_g = wt + int64_t(g) * K * M;
  const float* bbase = nullptr;
  int h0 = 0, w0 = 0;
  {
    const int n = n0 + mn;
    if (n < Ncols) {
      const int img = static_cast<int>(n / s.P);
      const int p = static_cast<int>(n - img * s.P);
      const int oh = p / s.OW, ow = p - (p / s.OW) * s.OW;
      bbase = x + (int64_t(img) * s.C + int64_t(g) * s.Cg) * s.HW;
      h0 = oh * s.sh - s.ph;
      w0 = ow * s.sw - s.pw;
    }
  }
  const int kk = s.KH * s.KW;

  auto load_stage = [&](int k0, int buf) {
#pragma unroll
    for (int r = 0; r < kPer; ++r) {
      const int kr = k_first + 2 * r;
      const int k = k0 + kr;
      const float* a = (am < M && k < K) ? wt_g + int64_t(k) * M + am : nullptr;
      v3_copy4(&As[buf][kr][mn], a, wt);
      const float* bs = nullptr;
      if (bbase && k < K) {
        const int c = k / kk, rr = k - c * kk;
        const int kh = rr / s.KW, kw = rr - kh * s.KW;
        const int h = h0 + kh, w = w0 + kw;
        if (h >= 0 && h < s.H && w >= 0 && w < s.W) bs = bbase + c * s.HW + int64_t(h) * s.W + w;
      }
      v3_copy4(&Bs[buf][kr][mn], bs, x);
    }
  };

  float acc[kMT][kNT][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

  const int stages = (K + kBK - 1) / kBK;
  if (stages > 0) load_stage(0, 0);
  __pipeline_commit();
  for (int st = 0; st < stages; ++st) {
    const int buf = st & 1;
    if (st + 1 < stages) load_stage((st + 1) * kBK, buf ^ 1);
    __pipeline_commit();
    __pipeline_wait_prior(1);
    __syncthreads();
    if (kMath == Math::Tf32) {
#pragma unroll
      for (int ks = 0; ks < kBK; ks += 8) {
        uint32_t af[kMT][4], bf[kNT][2];
#pragma unroll
        for (int i = 0; i < kMT; ++i) {
          const int m = wm + i * 16 + fg;
          af[i][0] = mma_to_tf32(As[buf][ks + ft][m]);
          af[i][1] = mma_to_tf32(As[buf][ks + ft][m + 8]);
          af[i][2] = mma_to_tf32(As[buf][ks + ft + 4][m]);
          af[i][3] = mma_to_tf32(As[buf][ks + ft + 4][m + 8]);
        }
#pragma unroll
        for (int j = 0; j < kNT; ++j) {
          const int n = wn + j * 8 + fg;
          bf[j][0] = mma_to_tf32(Bs[buf][ks + ft][n]);
          bf[j][1] = mma_to_tf32(Bs[buf][ks + ft + 4][n]);
        }
#pragma unroll
        for (int i = 0; i < kMT; ++i)
#pragma unroll
          for (int j = 0; j < kNT; ++j) mma_m16n8k8_tf32(acc[i][j], af[i], bf[j], acc[i][j]);
      }
    } else {
      uint32_t af[kMT][4], bf[kNT][2];
      const int k0 = 2 * ft;
#pragma unroll
      for (int i = 0; i < kMT; ++i) {
        const int m = wm + i * 16 + fg;
        af[i][0] = mma_pack_bf16x2(As[buf][k0][m], As[buf][k0 + 1][m]);
        af[i][1] = mma_pack_bf16x2(As[buf][k0][m + 8], As[buf][k0 + 1][m + 8]);
        af[i][2] = mma_pack_bf16x2(As[buf][k0 + 8][m], As[buf][k0 + 9][m]);
        af[i][3] = mma_pack_bf16x2(As[buf][k0 + 8][m + 8], As[buf][k0 + 9][m + 8]);
      }
#pragma unroll
      for (int j = 0; j < kNT; ++j) {
        const int n = wn + j * 8 + fg;
        bf[j][0] = mma_pack_bf16x2(Bs[buf][k0][n], Bs[buf][k0 + 1][n]);
        bf[j][1] = mma_pack_bf16x2(Bs[buf][k0 + 8][n], Bs[buf][k0 + 9][n]);
      }
#pragma unroll
      for (int i = 0; i < kMT; ++i)
#pragma unroll
        for (int j = 0; j < kNT; ++j) mma_m16n8k16_bf16(acc[i][j], af[i], bf[j], acc[i][j]);
    }
    __syncthreads();  // everyone is done with `buf` before the next stage refills it
  }
  __pipeline_wait_prior(0);

  // Epilogue: columns decoded once, rows with their bias.
  int64_t col[kNT][2];
#pragma unroll
  for (int j = 0; j < kNT; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int n = n0 + wn + j * 8 + 2 * ft + h;
      if (n < Ncols) {
        const int64_t img = n / s.P;
        col[j][h] = img * s.F * s.P + (n - img * s.P);
      } else {
        col[j][h] = -1;
      }
    }
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int hm = 0; hm < 2; ++hm) {
      const int m = m0 + wm + i * 16 + fg + 8 * hm;
      if (m >= M) continue;
      const int64_t row = (int64_t(g) * s.Fg + m) * s.P;
      const float bias = b ? b[g * s.Fg + m] : 0.0f;
#pragma unroll
      for (int j = 0; j < kNT; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          if (col[j][h] >= 0) y[row + col[j][h]] = acc[i][j][2 * hm + h] + bias;
    }
#else
  (void)s; (void)wt; (void)x; (void)b; (void)y;  // sm_75 and older: never launched
#endif
}

// wT[g][k][m] = w[g*Fg + m][k] (k < Kc): A, contiguous along m.
// Thread mapping: a grid-stride loop over the F*Kc elements of wT in memory order (256 threads
// a block). Layout: w [F][Kc], wT [G][Kc][Fg].
__global__ void conv_v3_weights_kmajor_kernel(const float* __restrict__ w, float* __restrict__ wt,
                                              int Fg, int Kc, int64_t total) {
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t per = int64_t(Kc) * Fg;
    const int64_t g = e / per, r = e - g * per;
    const int64_t k = r / Fg, m = r - k * Fg;
    wt[e] = w[(g * Fg + m) * Kc + k];
  }
}

// Compute capability major of each physical GPU, read once (0: not read yet; devices' worker
// threads may ask at the same time, hence atomics).
std::atomic<int> g_cc_major[64] = {};
bool has_mma(const CudaDevice* dev) {
  const int p = dev->physical();
  if (p < 0 || p >= 64) return false;
  int major = g_cc_major[p].load(std::memory_order_relaxed);
  if (major == 0) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, p) != cudaSuccess) return false;
    major = prop.major;
    g_cc_major[p].store(major, std::memory_order_relaxed);
  }
  return major >= 8;
}

}  // namespace

bool conv2d_v3_usable(const CudaDevice* dev, const Conv2dShape& s) {
  return conv2d_v2_fits(s) && has_mma(dev);
}

void conv2d_forward_cuda_v3(const OpCall& c, int precision) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Conv2dShape s = conv_shape(c);
  const ConvView vs = conv_view(s);
  if (s.N <= 0 || s.F <= 0 || vs.P <= 0) return;
  dev->activate();
  const std::string at = std::string("conv2d_forward: launching on ") + dev->id() + " (conv2d v3)";
  cudaStream_t st = dev->stream();
  const int64_t wsize = int64_t(s.F) * vs.Kc;
  StoragePtr ws = dev->allocate(static_cast<size_t>(std::max<int64_t>(wsize, 1)) * sizeof(float));
  float* wt = ws->as<float>();
  if (wsize > 0) {
    conv_v3_weights_kmajor_kernel<<<blocks_for(wsize), kThreads, 0, st>>>(arg(c, 2), wt, vs.Fg,
                                                                          vs.Kc, wsize);
    CN_CUDA_CHECK(cudaGetLastError(), at);
  }
  const int64_t tiles = ((vs.Fg + kBM - 1) / kBM) * ((int64_t(s.N) * vs.P + kBN - 1) / kBN);
  if (tiles <= 0) return;
  const dim3 grid(static_cast<unsigned>(tiles), 1, static_cast<unsigned>(s.G));
  if (precision == kConvPrecisionBf16) {
    conv_v3_forward_kernel<Math::Bf16><<<grid, kV3Threads, 0, st>>>(vs, wt, arg(c, 1), arg(c, 3),
                                                                    arg(c, 0));
  } else {
    conv_v3_forward_kernel<Math::Tf32><<<grid, kV3Threads, 0, st>>>(vs, wt, arg(c, 1), arg(c, 3),
                                                                    arg(c, 0));
  }
  CN_CUDA_CHECK(cudaGetLastError(), at);
}

}  // namespace cn
