// conv2d on CUDA, version 1 (see conv2d.h for the contract; conv2d_cuda.h for the versions and
// how a call picks one: these op entry points hand version-2 calls to conv2d_v2_cuda.cu):
// explicit im2col / col2im into a workspace from the device's caching allocator, around
// sgemm_cuda. Any stride, padding, groups, kernel size.
//
// With Cg = C/G, Fg = F/G, P = OH*OW, Kc = Cg*KH*KW, CKK = C*KH*KW (all groups), ld = P rounded
// up to a multiple of 4 (so the GEMM reads col with float4 loads):
//   forward          per chunk of nb images: col [nb][CKK][ld] = im2col(x); then per group one
//                    batched GEMM over the images: y_g [Fg, P] = W_g [Fg, Kc] * col_g [Kc, P],
//                    written straight into y (batch stride F*P); bias added at the end.
//   backward data    per chunk: col_g [Kc, P] = W_g^T * dy_g [Fg, P] batched over the images,
//                    then a gather col2im (each dx cell sums its own taps) overwrites dx.
//   backward filter  images are grouped into slices of q (q*P >= 256 columns when P is small),
//                    each slice's columns side by side: colS [CKK][q*P], dyS [F][q*P];
//                    partial_s = dy_g colS_g^T per slice in one batched GEMM, then the slices'
//                    partial sums are added in slice order (and chunk after chunk with beta =
//                    1), so dw is the same on every run; db sums dy over n, oh, ow per filter.
// 1x1 stride-1 unpadded convolutions skip im2col/col2im: the GEMM reads x (or writes dx) in place.
// Chunks keep the workspace within kWorkspaceFloats (256 MiB) unless a single image (or slice)
// needs more. No float atomics anywhere: every result is deterministic.
// All work is ordered on the device's one stream, so the workspace can go back to the caching
// allocator when the launcher returns, while the kernels that use it are still queued.
#include <algorithm>
#include <string>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/conv2d.h"
#include "ops/conv2d_cuda.h"
#include "ops/gemm_cuda.h"
#include "ops/op_args.h"
#include "ops/registry.h"

namespace cn {
namespace {

constexpr int64_t kWorkspaceFloats = int64_t(64) << 20;  // 256 MiB
constexpr int64_t kFilterSliceCols = 256;                // GEMM depth aimed at per slice



// Sizes derived from the shape, 64-bit where products can pass 2^31.
struct Geo {
  int Cg, Fg, Kc;
  int64_t P, HW, CKK;
  int64_t xstride, ystride, wsize;  // one image of x, one image of y, all of w
  bool direct;                      // 1x1, stride 1, no padding: col is x itself
};

Geo geo_of(const Conv2dShape& s) {
  Geo g;
  g.Cg = s.C / s.G;
  g.Fg = s.F / s.G;
  g.Kc = g.Cg * s.KH * s.KW;
  g.P = int64_t(s.OH) * s.OW;
  g.HW = int64_t(s.H) * s.W;
  g.CKK = int64_t(s.C) * s.KH * s.KW;
  g.xstride = int64_t(s.C) * g.HW;
  g.ystride = int64_t(s.F) * g.P;
  g.wsize = int64_t(s.F) * g.Kc;
  g.direct = s.KH == 1 && s.KW == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0;
  return g;
}

int64_t round4(int64_t v) { return (v + 3) / 4 * 4; }


std::string where(const char* op, const CudaDevice* dev) {
  return std::string(op) + ": launching on " + dev->id();
}

// A workspace of at least `floats` floats (never a zero-byte request).
StoragePtr workspace(CudaDevice* dev, int64_t floats) {
  return dev->allocate(static_cast<size_t>(std::max<int64_t>(floats, 1)) * sizeof(float));
}

// im2col for `cnt` images, all C channels.
// Thread mapping: a grid-stride loop over (j, c, oh, ow), j < cnt, ow fastest, one per thread
// per step (256 threads a block, 64-bit indices); the thread writes its KH*KW taps.
// Shapes/layout: x [cnt, C, H, W] (the chunk's first image at x); image j's columns start at
// col + (j / q) * slice_stride + (j % q) * P (q images side by side per slice); row
// r = (c*KH + kh)*KW + kw at offset r * ld; column oh*OW + ow. Taps outside the image are 0.
__global__ void im2col_kernel(const float* __restrict__ x, float* __restrict__ col, int64_t cnt,
                              int C, int H, int W, int KH, int KW, int sh, int sw, int ph, int pw,
                              int OW, int64_t P, int q, int64_t slice_stride, int64_t ld) {
  const int64_t total = cnt * C * P;
  const int64_t HW = int64_t(H) * W;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const int64_t p = e % P;
    const int64_t jc = e / P;  // j * C + c
    const int c = static_cast<int>(jc % C);
    const int64_t j = jc / C;
    const int oh = static_cast<int>(p / OW), ow = static_cast<int>(p % OW);
    const float* xc = x + jc * HW;
    float* out = col + (j / q) * slice_stride + (j % q) * P + int64_t(c) * KH * KW * ld + p;
    const int h0 = oh * sh - ph, w0 = ow * sw - pw;
    for (int kh = 0; kh < KH; ++kh) {
      const int h = h0 + kh;
      const bool hin = h >= 0 && h < H;
      for (int kw = 0; kw < KW; ++kw) {
        const int w = w0 + kw;
        *out = hin && w >= 0 && w < W ? xc[int64_t(h) * W + w] : 0.0f;
        out += ld;
      }
    }
  }
}

// col2im by gathering, for `cnt` images: dx[j, c, h, w] = the sum of the col entries whose tap
// lands on (h, w), taken in (kh, kw) order, overwriting dx. No atomics.
// Thread mapping: a grid-stride loop over the cnt*C*H*W cells of dx, w fastest, one per thread
// per step (256 threads a block, 64-bit indices); each visits only the taps with
// (h + ph - kh) % sh == 0 and (w + pw - kw) % sw == 0.
// Shapes/layout: col [cnt][CKK][ld] (rows (c*KH + kh)*KW + kw, columns oh*OW + ow),
// dx [cnt, C, H, W] (the chunk's first image at dx).
__global__ void col2im_kernel(const float* __restrict__ col, float* __restrict__ dx, int64_t cnt,
                              int C, int H, int W, int KH, int KW, int sh, int sw, int ph, int pw,
                              int OH, int OW, int64_t ld) {
  const int64_t total = cnt * C * H * int64_t(W);
  const int64_t img_stride = int64_t(C) * KH * KW * ld;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const int w = static_cast<int>(e % W);
    const int64_t r = e / W;
    const int h = static_cast<int>(r % H);
    const int64_t jc = r / H;  // j * C + c
    const int c = static_cast<int>(jc % C);
    const int64_t j = jc / C;
    const float* base = col + j * img_stride + int64_t(c) * KH * KW * ld;
    const int hp = h + ph, wp = w + pw;
    float sum = 0.0f;
    for (int kh = hp % sh; kh < KH && kh <= hp; kh += sh) {
      const int oh = (hp - kh) / sh;
      if (oh >= OH) continue;
      for (int kw = wp % sw; kw < KW && kw <= wp; kw += sw) {
        const int ow = (wp - kw) / sw;
        if (ow >= OW) continue;
        sum += base[(int64_t(kh) * KW + kw) * ld + int64_t(oh) * OW + ow];
      }
    }
    dx[e] = sum;
  }
}

// Puts q images of dy side by side: dyS[j / q][f][(j % q) * P + p] = dy[j, f, p], j < cnt.
// Thread mapping: a grid-stride loop over the cnt*F*P elements of dy in memory order, one per
// thread per step (256 threads a block, 64-bit indices).
// Layout: dy [cnt, F, P] (the chunk's first image at dy); dyS slices of F rows, row stride ld,
// slice stride slice_stride.
__global__ void gather_slices_kernel(const float* __restrict__ dy, float* __restrict__ dys,
                                     int64_t cnt, int F, int64_t P, int q, int64_t slice_stride,
                                     int64_t ld) {
  const int64_t total = cnt * F * P;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    const int64_t p = e % P;
    const int64_t jf = e / P;
    const int64_t f = jf % F, j = jf / F;
    dys[(j / q) * slice_stride + f * ld + (j % q) * P + p] = dy[e];
  }
}

// dw[i] = (accumulate ? dw[i] : 0) + partial[0][i] + partial[1][i] + ... + partial[S-1][i],
// added in slice order (deterministic).
// Thread mapping: a grid-stride loop over the wsize elements of dw, one per thread per step
// (256 threads a block, 64-bit indices). Layout: partial [S][wsize], dw [wsize].
__global__ void sum_slices_kernel(const float* __restrict__ partial, float* __restrict__ dw,
                                  int64_t wsize, int64_t S, bool accumulate) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < wsize;
       i += stride) {
    float acc = accumulate ? dw[i] : 0.0f;
    for (int64_t s = 0; s < S; ++s) acc += partial[s * wsize + i];
    dw[i] = acc;
  }
}

// y[n, f, p] += b[f].
// Thread mapping: a grid-stride loop over the N*F*P elements of y, one per thread per step
// (256 threads a block, 64-bit indices). Layout: y [N, F, P], b [F].
__global__ void conv_bias_add_kernel(float* __restrict__ y, const float* __restrict__ b,
                                     int64_t total, int F, int64_t P) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    y[e] += b[(e / P) % F];
  }
}

constexpr int kBiasGradThreads = 256;

// db[f] = sum over n < N, p < P of dy[n, f, p], deterministic (no atomics).
// Thread mapping: one block of 256 threads per filter f (blockIdx.x); thread t sums the
// elements i = t, t+256, ... of the flattened (n, p) range in order, then a shared-memory tree
// (halving, __syncthreads between levels) adds the 256 partial sums in a fixed pattern.
// Layout: dy [N, F, P], db [F].
__global__ void __launch_bounds__(kBiasGradThreads)
    conv_bias_grad_kernel(const float* __restrict__ dy, float* __restrict__ db, int64_t N, int F,
                          int64_t P) {
  __shared__ float part[kBiasGradThreads];
  const int f = blockIdx.x;
  const int t = threadIdx.x;
  const int64_t count = N * P;
  float s = 0.0f;
  // (n, p) of i = t, t+256, ... carried along: a 64-bit division only when p passes P (with
  // one per element ptxas spilled on sm_90).
  int64_t n = t / P, p = t - (t / P) * P;
  for (int64_t i = t; i < count; i += kBiasGradThreads) {
    s += dy[(n * F + f) * P + p];
    p += kBiasGradThreads;
    if (p >= P) {
      const int64_t q = p / P;
      n += q;
      p -= q * P;
    }
  }
  part[t] = s;
  __syncthreads();
  for (int half = kBiasGradThreads / 2; half > 0; half /= 2) {
    if (t < half) part[t] += part[t + half];
    __syncthreads();
  }
  if (t == 0) db[f] = part[0];
}

void launch_im2col(CudaDevice* dev, const Conv2dShape& s, const Geo& g, const float* x, float* col,
                   int64_t cnt, int q, int64_t slice_stride, int64_t ld, const std::string& at) {
  const int64_t total = cnt * s.C * g.P;
  if (total <= 0) return;
  im2col_kernel<<<blocks_for(total), kThreads, 0, dev->stream()>>>(
      x, col, cnt, s.C, s.H, s.W, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.OW, g.P, q, slice_stride,
      ld);
  CN_CUDA_CHECK(cudaGetLastError(), at);
}

// Images per chunk so that chunk * per_image floats stay within the budget (at least 1).
int64_t images_per_chunk(int64_t per_image, int64_t N) {
  const int64_t fit = kWorkspaceFloats / std::max<int64_t>(1, per_image);
  return std::max<int64_t>(1, std::min<int64_t>(N, fit));
}

}  // namespace

void launch_conv2d_bias_grad(CudaDevice* dev, const Conv2dShape& s, const float* dy, float* db,
                             const std::string& at) {
  if (!db || s.F <= 0) return;
  conv_bias_grad_kernel<<<static_cast<unsigned>(s.F), kBiasGradThreads, 0, dev->stream()>>>(
      dy, db, s.N, s.F, int64_t(s.OH) * s.OW);
  CN_CUDA_CHECK(cudaGetLastError(), at);
}

namespace {
// The version a call asked for (its last integer argument, validated by registry.cc: version +
// kConvPrecisionStep * precision), 0 meaning the default.
int version_of(const OpCall& c) {
  const int v = c.i.size() > 14 ? static_cast<int>(c.i[14] % kConvPrecisionStep) : 0;
  return v == 0 ? kConvVersionDefault : v;
}
int precision_of(const OpCall& c) {
  return c.i.size() > 14 ? static_cast<int>(c.i[14] / kConvPrecisionStep) : kConvPrecisionFp32;
}
// True when the call runs version 2: asked for it, or asked for version 3 (whose backward passes
// are version 2's), and the shape fits it.
bool use_v2(const OpCall& c, const Conv2dShape& s) {
  const int v = version_of(c);
  return (v == 2 || v == 3) && conv2d_v2_fits(s);
}
}  // namespace

// conv2d_forward: [y, x, w, b?] | [N,C,H,W,F,KH,KW,sh,sw,ph,pw,G,OH,OW,version] | []
void conv2d_forward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Conv2dShape s = conv_shape(c);
  if (version_of(c) == 3 && precision_of(c) != kConvPrecisionFp32 && conv2d_v3_usable(dev, s))
    return conv2d_forward_cuda_v3(c, precision_of(c));
  if (use_v2(c, s)) return conv2d_forward_cuda_v2(c);
  const Geo g = geo_of(s);
  float* y = arg(c, 0);
  const float *x = arg(c, 1), *w = arg(c, 2), *b = arg(c, 3);
  if (s.N <= 0 || s.F <= 0 || g.P <= 0) return;
  dev->activate();
  const std::string at = where("conv2d_forward", dev);
  cudaStream_t st = dev->stream();
  const int P32 = static_cast<int>(g.P);

  if (g.direct) {
    // y_g [Fg, P] = W_g [Fg, Cg] * x_g [Cg, HW], every image in one batched launch.
    for (int grp = 0; grp < s.G; ++grp) {
      sgemm_strided_batched_cuda(st, false, false, g.Fg, P32, g.Kc, 1.0f,
                                 w + int64_t(grp) * g.Fg * g.Kc, g.Kc, 0,
                                 x + int64_t(grp) * g.Cg * g.HW, P32, g.xstride, 0.0f,
                                 y + int64_t(grp) * g.Fg * g.P, P32, g.ystride, s.N, at);
    }
  } else {
    const int64_t ld = round4(g.P);
    const int64_t img = g.CKK * ld;  // col floats per image
    const int64_t nb = images_per_chunk(img, s.N);
    StoragePtr ws = workspace(dev, nb * img);
    float* col = ws->as<float>();
    for (int64_t n0 = 0; n0 < s.N; n0 += nb) {
      const int64_t cnt = std::min<int64_t>(nb, s.N - n0);
      launch_im2col(dev, s, g, x + n0 * g.xstride, col, cnt, 1, img, ld, at);
      for (int grp = 0; grp < s.G; ++grp) {
        sgemm_strided_batched_cuda(st, false, false, g.Fg, P32, g.Kc, 1.0f,
                                   w + int64_t(grp) * g.Fg * g.Kc, g.Kc, 0,
                                   col + int64_t(grp) * g.Kc * ld, static_cast<int>(ld), img,
                                   0.0f, y + n0 * g.ystride + int64_t(grp) * g.Fg * g.P, P32,
                                   g.ystride, cnt, at);
      }
    }
  }
  if (b) {
    const int64_t total = int64_t(s.N) * g.ystride;
    conv_bias_add_kernel<<<blocks_for(total), kThreads, 0, st>>>(y, b, total, s.F, g.P);
    CN_CUDA_CHECK(cudaGetLastError(), at);
  }
}

// conv2d_backward_data: [dx, dy, w] | conv ints | []
void conv2d_backward_data_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Conv2dShape s = conv_shape(c);
  if (use_v2(c, s)) return conv2d_backward_data_cuda_v2(c);
  const Geo g = geo_of(s);
  float* dx = arg(c, 0);
  const float *dy = arg(c, 1), *w = arg(c, 2);
  if (s.N <= 0 || g.xstride <= 0) return;
  dev->activate();
  const std::string at = where("conv2d_backward_data", dev);
  cudaStream_t st = dev->stream();
  const int P32 = static_cast<int>(g.P);

  if (g.direct) {
    // dx_g [Cg, HW] = W_g^T [Cg, Fg] * dy_g [Fg, P], every image in one batched launch.
    for (int grp = 0; grp < s.G; ++grp) {
      sgemm_strided_batched_cuda(st, true, false, g.Kc, P32, g.Fg, 1.0f,
                                 w + int64_t(grp) * g.Fg * g.Kc, g.Kc, 0,
                                 dy + int64_t(grp) * g.Fg * g.P, P32, g.ystride, 0.0f,
                                 dx + int64_t(grp) * g.Cg * g.HW, P32, g.xstride, s.N, at);
    }
    return;
  }
  const int64_t ld = round4(g.P);
  const int64_t img = g.CKK * ld;
  const int64_t nb = images_per_chunk(img, s.N);
  StoragePtr ws = workspace(dev, nb * img);
  float* col = ws->as<float>();
  for (int64_t n0 = 0; n0 < s.N; n0 += nb) {
    const int64_t cnt = std::min<int64_t>(nb, s.N - n0);
    for (int grp = 0; grp < s.G; ++grp) {
      // col_g [Kc, P] = W_g^T [Kc, Fg] * dy_g [Fg, P] per image (Fg == 0 writes zeros).
      sgemm_strided_batched_cuda(st, true, false, g.Kc, P32, g.Fg, 1.0f,
                                 w + int64_t(grp) * g.Fg * g.Kc, g.Kc, 0,
                                 dy + n0 * g.ystride + int64_t(grp) * g.Fg * g.P, P32, g.ystride,
                                 0.0f, col + int64_t(grp) * g.Kc * ld, static_cast<int>(ld), img,
                                 cnt, at);
    }
    const int64_t total = cnt * g.xstride;
    col2im_kernel<<<blocks_for(total), kThreads, 0, st>>>(col, dx + n0 * g.xstride, cnt, s.C, s.H, s.W,
                                                   s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.OH,
                                                   s.OW, ld);
    CN_CUDA_CHECK(cudaGetLastError(), at);
  }
}

// conv2d_backward_filter: [dw, db?, x, dy] | conv ints | []
void conv2d_backward_filter_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Conv2dShape s = conv_shape(c);
  if (use_v2(c, s)) return conv2d_backward_filter_cuda_v2(c);
  const Geo g = geo_of(s);
  float *dw = arg(c, 0), *db = arg(c, 1);
  const float *x = arg(c, 2), *dy = arg(c, 3);
  if (g.wsize <= 0 && (!db || s.F <= 0)) return;
  dev->activate();
  const std::string at = where("conv2d_backward_filter", dev);
  cudaStream_t st = dev->stream();

  if (g.wsize > 0 && (s.N <= 0 || g.P <= 0)) {
    CN_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(g.wsize) * sizeof(float), st), at);
  } else if (g.wsize > 0) {
    // q images per slice: enough columns for a deep GEMM, while a slice fits the budget.
    const int64_t want_q = std::min<int64_t>(s.N, (kFilterSliceCols + g.P - 1) / g.P);
    const int64_t per_image = (g.CKK + s.F) * g.P + 4;  // col + dyS floats per image, roughly
    const int q = static_cast<int>(std::max<int64_t>(
        1, std::min<int64_t>(want_q, (kWorkspaceFloats - g.wsize) / per_image)));
    const bool in_place = g.direct && q == 1;  // col is x itself
    const int64_t ld = in_place ? g.P : round4(q * g.P);
    const int64_t dys_ld = q == 1 ? g.P : ld;                // dy itself when q == 1
    const int64_t col_ss = in_place ? g.xstride : g.CKK * ld;  // per slice
    const int64_t dys_ss = q == 1 ? g.ystride : int64_t(s.F) * ld;
    const int64_t ws_per_slice = (in_place ? 0 : col_ss) + (q == 1 ? 0 : dys_ss) + g.wsize;
    const int64_t slices_total = (s.N + q - 1) / q;
    const int64_t spc = std::max<int64_t>(
        1, std::min<int64_t>(slices_total, kWorkspaceFloats / ws_per_slice));  // per chunk
    const int64_t nb = std::min<int64_t>(s.N, spc * q);                          // images per chunk
    // Carve col, dyS and the per-slice partial sums out of one workspace (16-byte aligned).
    const int64_t col_f = in_place ? 0 : round4(spc * col_ss);
    const int64_t dys_f = q == 1 ? 0 : round4(spc * dys_ss);
    const int64_t part_f = spc > 1 ? spc * g.wsize : 0;
    StoragePtr ws = workspace(dev, col_f + dys_f + part_f);
    float* col_ws = ws->as<float>();
    float* dys_ws = col_ws + col_f;
    float* partial = dys_ws + dys_f;

    for (int64_t n0 = 0; n0 < s.N; n0 += nb) {
      const int64_t cnt = std::min<int64_t>(nb, s.N - n0);
      const int64_t S = (cnt + q - 1) / q;     // slices in this chunk
      const int64_t full = cnt / q;            // slices of exactly q images
      const int64_t rem = cnt - full * q;      // images in a last, shorter slice
      const bool first = n0 == 0;

      const float* colp;
      if (in_place) {
        colp = x + n0 * g.xstride;
      } else {
        launch_im2col(dev, s, g, x + n0 * g.xstride, col_ws, cnt, q, col_ss, ld, at);
        colp = col_ws;
      }
      const float* dysp;
      if (q == 1) {
        dysp = dy + n0 * g.ystride;
      } else {
        const int64_t total = cnt * g.ystride;
        gather_slices_kernel<<<blocks_for(total), kThreads, 0, st>>>(dy + n0 * g.ystride, dys_ws, cnt,
                                                              s.F, g.P, q, dys_ss, ld);
        CN_CUDA_CHECK(cudaGetLastError(), at);
        dysp = dys_ws;
      }
      // One slice: accumulate straight into dw. Several: partial sums, added below in order.
      float* out = S == 1 ? dw : partial;
      const int64_t out_ss = S == 1 ? 0 : g.wsize;
      const float beta = S == 1 && !first ? 1.0f : 0.0f;
      const int ld32 = static_cast<int>(ld), dys_ld32 = static_cast<int>(dys_ld);
      for (int grp = 0; grp < s.G; ++grp) {
        const float* A = dysp + int64_t(grp) * g.Fg * dys_ld;  // dy_g [Fg, q*P]
        const float* B = colp + int64_t(grp) * g.Kc * ld;      // col_g [Kc, q*P]
        float* C = out + int64_t(grp) * g.Fg * g.Kc;            // dw_g [Fg, Kc]
        if (full > 0) {
          sgemm_strided_batched_cuda(st, false, true, g.Fg, g.Kc, static_cast<int>(q * g.P),
                                     1.0f, A, dys_ld32, dys_ss, B, ld32, col_ss, beta, C, g.Kc,
                                     out_ss, full, at);
        }
        if (rem > 0) {
          sgemm_strided_batched_cuda(st, false, true, g.Fg, g.Kc, static_cast<int>(rem * g.P),
                                     1.0f, A + full * dys_ss, dys_ld32, 0, B + full * col_ss,
                                     ld32, 0, beta, C + full * out_ss, g.Kc, 0, 1, at);
        }
      }
      if (S > 1) {
        sum_slices_kernel<<<blocks_for(g.wsize), kThreads, 0, st>>>(partial, dw, g.wsize, S, !first);
        CN_CUDA_CHECK(cudaGetLastError(), at);
      }
    }
  }
  launch_conv2d_bias_grad(dev, s, dy, db, at);
}

}  // namespace cn
