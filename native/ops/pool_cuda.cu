// maxPool2d on CUDA (NCHW, floor mode); the contract is pool.h, the reference pool_cpu.cc.
// Both kernels give the CPU's results bit for bit: forward makes the same comparisons in the
// same order, and backward adds the same dy values in the same order starting from 0.
#include <cstdint>

#include "core/cuda_check.h"
#include "core/cuda_device.h"
#include "core/cuda_launch.h"
#include "ops/op_args.h"
#include "ops/pool.h"
#include "ops/registry.h"

namespace cn {

namespace {






// Forward. Thread mapping: a grid-stride loop over the N*C*OH*OW outputs, one output cell per
// thread per step (flat index o = ((n*C + c)*OH + oh)*OW + ow, so a warp reads neighbouring
// windows of one row). Shapes: x [N, C, H, W], y and idx [N, C, OH, OW], NCHW contiguous.
// The window [oh*sh-ph, +KH) x [ow*sw-pw, +KW) is clipped to the input (padded cells never
// win) and scanned row-major with the CPU's test: a value wins if it is greater, or if it is
// NaN and the best so far is not (the first NaN wins). idx = ih*W + iw within the plane; an
// empty clipped window (excluded by the TypeScript layer) gives -inf and idx -1, as on the CPU.
__global__ void maxpool2d_forward_kernel(Pool2dShape s, const float* __restrict__ x,
                                         float* __restrict__ y, int32_t* __restrict__ idx) {
  const int64_t total = static_cast<int64_t>(s.N) * s.C * s.OH * s.OW;
  const int64_t in_plane = static_cast<int64_t>(s.H) * s.W;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total;
       o += stride) {
    const int ow = static_cast<int>(o % s.OW);
    const int64_t t = o / s.OW;
    const int oh = static_cast<int>(t % s.OH);
    const int64_t plane = t / s.OH;
    const float* xp = x + plane * in_plane;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    const int hb = max(h0, 0), he = min(h0 + s.KH, s.H);
    const int wb = max(w0, 0), we = min(w0 + s.KW, s.W);
    if (hb >= he || wb >= we) {
      y[o] = -INFINITY;
      idx[o] = -1;
      continue;
    }
    int32_t best_i = hb * s.W + wb;
    float best = xp[best_i];
    for (int ih = hb; ih < he; ++ih) {
      const float* row = xp + static_cast<int64_t>(ih) * s.W;
      for (int iw = wb; iw < we; ++iw) {
        const float v = row[iw];
        const bool take = (v > best) | ((v != v) & (best == best));
        if (take) {
          best = v;
          best_i = ih * s.W + iw;
        }
      }
    }
    y[o] = best;
    idx[o] = best_i;
  }
}

// Backward, a deterministic gather (no atomics). Thread mapping: a grid-stride loop over the
// N*C*H*W inputs, one input cell per thread per step (flat index ((n*C + c)*H + ih)*W + iw).
// Shapes: dy and idx [N, C, OH, OW], dx [N, C, H, W], NCHW contiguous; dx is overwritten.
// The cell (ih, iw) lies in the windows oh in [ceil((ih+ph-KH+1)/sh), floor((ih+ph)/sh)] and
// likewise ow, clipped to [0, OH) x [0, OW); it sums dy over those whose idx names it. The
// windows are visited in increasing output order, the order in which the CPU's scatter adds
// them, so the sums agree bit for bit. Since forward's idx always lies inside its own window,
// this gather equals the scatter dx[idx[o]] += dy[o]; idx -1 (empty window) matches no cell.
__global__ void maxpool2d_backward_kernel(Pool2dShape s, const float* __restrict__ dy,
                                          const int32_t* __restrict__ idx,
                                          float* __restrict__ dx) {
  const int64_t total = static_cast<int64_t>(s.N) * s.C * s.H * s.W;
  const int64_t out_plane = static_cast<int64_t>(s.OH) * s.OW;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int iw = static_cast<int>(i % s.W);
    const int64_t t = i / s.W;
    const int ih = static_cast<int>(t % s.H);
    const int64_t plane = t / s.H;
    // First window that still reaches the cell: oh*sh - ph + KH - 1 >= ih.
    const int hr = ih + s.ph - s.KH + 1, wr = iw + s.pw - s.KW + 1;
    // Ceiling division in 64 bits: hr + sh - 1 can pass 2^31 for a large stride.
    const int oh0 = hr <= 0 ? 0 : static_cast<int>((int64_t(hr) + s.sh - 1) / s.sh);
    const int ow0 = wr <= 0 ? 0 : static_cast<int>((int64_t(wr) + s.sw - 1) / s.sw);
    // Last window that starts at or before the cell: oh*sh - ph <= ih.
    const int oh1 = min((ih + s.ph) / s.sh, s.OH - 1);
    const int ow1 = min((iw + s.pw) / s.sw, s.OW - 1);
    const int32_t self = ih * s.W + iw;
    const float* dyp = dy + plane * out_plane;
    const int32_t* ip = idx + plane * out_plane;
    float acc = 0.0f;
    for (int oh = oh0; oh <= oh1; ++oh) {
      const int64_t r = static_cast<int64_t>(oh) * s.OW;
      for (int ow = ow0; ow <= ow1; ++ow) {
        if (ip[r + ow] == self) acc += dyp[r + ow];
      }
    }
    dx[i] = acc;
  }
}

}  // namespace

// maxpool2d_forward: [y, idx(int32), x] | [N,C,H,W,KH,KW,sh,sw,ph,pw,OH,OW] | []
void maxpool2d_forward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Pool2dShape s = pool_shape(c);
  const int64_t total = static_cast<int64_t>(s.N) * s.C * s.OH * s.OW;
  if (total <= 0) return;
  dev->activate();
  maxpool2d_forward_kernel<<<blocks_for(total), kThreads, 0, dev->stream()>>>(
      s, arg(c, 2), arg(c, 0), arg<int32_t>(c, 1));
  CN_CUDA_CHECK(cudaGetLastError(), "maxpool2d_forward: launching on " + dev->id());
}

// maxpool2d_backward: [dx, dy, idx(int32)] | pool ints | []
void maxpool2d_backward_cuda_op(const OpCall& c) {
  auto* dev = static_cast<CudaDevice*>(c.device);
  const Pool2dShape s = pool_shape(c);
  const int64_t total = static_cast<int64_t>(s.N) * s.C * s.H * s.W;
  if (total <= 0) return;
  dev->activate();
  maxpool2d_backward_kernel<<<blocks_for(total), kThreads, 0, dev->stream()>>>(
      s, arg(c, 1), arg<int32_t>(c, 2), arg(c, 0));
  CN_CUDA_CHECK(cudaGetLastError(), "maxpool2d_backward: launching on " + dev->id());
}

}  // namespace cn
