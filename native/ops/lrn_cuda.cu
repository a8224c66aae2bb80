// Local response normalisation across channels on CUDA (NCHW); the contract is lrn.h, the
// reference lrn_cpu.cc.
//
// Both kernels follow the CPU's arithmetic element for element, so the results agree bit for
// bit when beta == 0.75 (otherwise to powf's few ulp):
//   - window sums: when min(size, C) <= 16, a float sum over the clipped window from its first
//     channel up; wider windows slide a double accumulator along the channels (add the entering
//     channels, then subtract the leaving ones), exactly as slide_sum does;
//   - products and sums are written as __fmul_rn/__fadd_rn/__fsub_rn so nvcc cannot fuse them
//     into FMAs (the x86-64 CPU build rounds each operation);
//   - scale^-beta is sqrt(sqrt(s)) / s for beta == 0.75 and s in (0, FLT_MAX] (correctly rounded
//     __fsqrt_rn/__fdiv_rn, as sqrtps/divps), powf otherwise.
#include <cfloat>
#include <cstdint>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/lrn.h"
#include "ops/op_args.h"
#include "ops/registry.h"

namespace cn {

namespace {

constexpr int kDirectWindow = 16;  // as lrn_cpu.cc




__device__ __forceinline__ float pow_neg_beta(float s, float beta) {
  if (beta == 0.75f && s > 0.0f && s <= FLT_MAX) return __fdiv_rn(__fsqrt_rn(__fsqrt_rn(s)), s);
  return powf(s, -beta);
}

// Forward. Thread mapping: a grid-stride loop over the N*H*W positions (p = n*H*W + hw), one
// position per thread per step; the thread walks all C channels of its position, so at every
// channel a warp reads 32 consecutive floats of one channel plane (coalesced).
// Shapes: x, y, scale [N, C, H, W], NCHW contiguous; channel c of position p is at
// n*C*HW + c*HW + hw. Writes scale = k + coef * sum_{j in win(c)} x_j^2 (coef = alpha/size,
// rounded on the host as the CPU does) and y = x * scale^-beta.
__global__ void lrn_forward_kernel(int64_t positions, int64_t HW, int C, int lo, int hi,
                                   bool sliding, float coef, float k, float beta,
                                   const float* __restrict__ x, float* __restrict__ y,
                                   float* __restrict__ scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < positions;
       p += stride) {
    const int64_t n = p / HW, hw = p - n * HW;
    const int64_t base = n * C * HW + hw;
    const float* xb = x + base;
    double acc = 0.0;  // sliding window [a0, a1], empty at the start
    int a0 = 0, a1 = -1;
    for (int c = 0; c < C; ++c) {
      const int j0 = max(c - lo, 0), j1 = min(c + hi, C - 1);
      float sum;
      if (sliding) {
        for (int j = max(a1 + 1, j0); j <= j1; ++j) {
          const float v = xb[j * HW];
          acc += static_cast<double>(__fmul_rn(v, v));
        }
        for (int j = a0; j < min(j0, a1 + 1); ++j) {
          const float v = xb[j * HW];
          acc -= static_cast<double>(__fmul_rn(v, v));
        }
        a0 = j0;
        a1 = j1;
        sum = static_cast<float>(acc);
      } else {
        const float v0 = xb[j0 * HW];
        sum = __fmul_rn(v0, v0);
        for (int j = j0 + 1; j <= j1; ++j) {
          const float v = xb[j * HW];
          sum = __fadd_rn(sum, __fmul_rn(v, v));
        }
      }
      const float sc = __fadd_rn(k, __fmul_rn(coef, sum));
      const int64_t e = base + c * HW;
      scale[e] = sc;
      y[e] = __fmul_rn(pow_neg_beta(sc, beta), x[e]);
    }
  }
}

// Backward. Thread mapping as the forward: one N*H*W position per thread per step, walking the
// C channels (coalesced per channel plane). Shapes: x, y, scale, dy, dx [N, C, H, W], NCHW
// contiguous; dx is overwritten:
//   dx[c] = dy[c] * scale[c]^-beta - coef * x[c] * sum_{j in [c-hi, c+lo] clipped} u[j],
//   u[j] = dy[j] * y[j] / scale[j], coef = 2*alpha*beta/size (rounded on the host as the CPU).
// u is recomputed from global memory (L1-resident) for each window it enters instead of being
// stored: the CPU keeps it in scratch, but the values are the same correctly rounded floats.
__global__ void lrn_backward_kernel(int64_t positions, int64_t HW, int C, int lo, int hi,
                                    bool sliding, float coef, float beta,
                                    const float* __restrict__ x, const float* __restrict__ y,
                                    const float* __restrict__ scale,
                                    const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < positions;
       p += stride) {
    const int64_t n = p / HW, hw = p - n * HW;
    const int64_t base = n * C * HW + hw;
    const float* yb = y + base;
    const float* sb = scale + base;
    const float* db = dy + base;
    auto u = [&](int j) {
      const int64_t off = j * HW;
      return __fdiv_rn(__fmul_rn(db[off], yb[off]), sb[off]);
    };
    double acc = 0.0;
    int a0 = 0, a1 = -1;
    for (int c = 0; c < C; ++c) {
      const int j0 = max(c - hi, 0), j1 = min(c + lo, C - 1);
      float usum;
      if (sliding) {
        for (int j = max(a1 + 1, j0); j <= j1; ++j) acc += static_cast<double>(u(j));
        for (int j = a0; j < min(j0, a1 + 1); ++j) acc -= static_cast<double>(u(j));
        a0 = j0;
        a1 = j1;
        usum = static_cast<float>(acc);
      } else {
        usum = u(j0);
        for (int j = j0 + 1; j <= j1; ++j) usum = __fadd_rn(usum, u(j));
      }
      const int64_t e = base + c * HW;
      const float pw = pow_neg_beta(scale[e], beta);
      dx[e] = __fsub_rn(__fmul_rn(dy[e], pw), __fmul_rn(__fmul_rn(coef, x[e]), usum));
    }
  }
}

}  // namespace

// lrn_forward: [y, scale, x] | [N,C,H,W,size] | [alpha, beta, k]
void lrn_forward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const LrnShape s = lrn_shape(c);
  const int64_t HW = static_cast<int64_t>(s.H) * s.W;
  const int64_t positions = static_cast<int64_t>(s.N) * HW;
  if (positions <= 0 || s.C <= 0) return;
  const int lo = s.size / 2, hi = (s.size - 1) / 2;
  const float coef = static_cast<float>(static_cast<double>(s.alpha) / s.size);
  const bool sliding = (s.size < s.C ? s.size : s.C) > kDirectWindow;
  dev->activate();
  lrn_forward_kernel<<<blocks_for(positions), kThreads, 0, dev->stream()>>>(
      positions, HW, s.C, lo, hi, sliding, coef, s.k, s.beta, arg(c, 2), arg(c, 0), arg(c, 1));
  CN_CUDA_CHECK(cudaGetLastError(), "lrn_forward: launching on " + dev->id());
}

// lrn_backward: [dx, x, y, scale, dy] | [N,C,H,W,size] | [alpha, beta, k]
void lrn_backward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const LrnShape s = lrn_shape(c);
  const int64_t HW = static_cast<int64_t>(s.H) * s.W;
  const int64_t positions = static_cast<int64_t>(s.N) * HW;
  if (positions <= 0 || s.C <= 0) return;
  const int lo = s.size / 2, hi = (s.size - 1) / 2;
  const float coef = static_cast<float>(2.0 * s.alpha * s.beta / s.size);
  const bool sliding = (s.size < s.C ? s.size : s.C) > kDirectWindow;
  dev->activate();
  lrn_backward_kernel<<<blocks_for(positions), kThreads, 0, dev->stream()>>>(
      positions, HW, s.C, lo, hi, sliding, coef, s.beta, arg(c, 1), arg(c, 2), arg(c, 3),
      arg(c, 4), arg(c, 0));
  CN_CUDA_CHECK(cudaGetLastError(), "lrn_backward: launching on " + dev->id());
}

}  // namespace cn
