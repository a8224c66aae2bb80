// conv2d: cross-correlation with stride, zero padding and groups (NCHW, row-major, float32).
//
//   x  [N, C, H, W]       w  [F, C/G, KH, KW]     b  [F] (optional)
//   y  [N, F, OH, OW]     OH = (H + 2*ph - KH) / sh + 1,  OW = (W + 2*pw - KW) / sw + 1
//   y[n,f,oh,ow] = b[f] + sum_{c,kh,kw} x[n, g*C/G + c, oh*sh - ph + kh, ow*sw - pw + kw] * w[f,c,kh,kw]
//   with g = f / (F/G) and out-of-range input cells reading as zero.
//
// Gradient convention: every output buffer is overwritten (dx, dw, db), never accumulated.
// Shapes are validated in TypeScript before any of these run.
#pragma once
#include <cstdint>

#include "core/parallel.h"

namespace cn {

struct Conv2dShape {
  int N, C, H, W;     // input
  int F, KH, KW;      // filters
  int sh, sw, ph, pw; // stride and padding
  int G;              // groups: C % G == 0 and F % G == 0
  int OH, OW;         // output, computed by the caller with the formula above
};

void conv2d_forward_cpu(ThreadPool* pool, const Conv2dShape& s, const float* x, const float* w,
                        const float* b, float* y);
// dx [N,C,H,W] from dy [N,F,OH,OW] and w.
void conv2d_backward_data_cpu(ThreadPool* pool, const Conv2dShape& s, const float* dy,
                              const float* w, float* dx);
// dw [F,C/G,KH,KW] and db [F] (db may be null) from x and dy.
void conv2d_backward_filter_cpu(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                const float* dy, float* dw, float* db);

}  // namespace cn
