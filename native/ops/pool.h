// maxPool2d, floor mode, NCHW.
//
//   x [N, C, H, W] -> y [N, C, OH, OW], OH = (H + 2*ph - KH) / sh + 1 (likewise OW)
//   y[n,c,oh,ow] = max over the window's cells that lie inside the input (padded cells never win;
//   the TypeScript layer rejects padding > kernel/2, so every window has at least one real cell).
//   idx[n,c,oh,ow] = ih*W + iw of the first maximum in row-major window order (ties: first wins).
//
// Backward: dx overwritten; dx = 0 except dx[idx] += dy (overlapping windows add up).
#pragma once
#include <cstdint>

#include "core/parallel.h"

namespace cn {

struct Pool2dShape {
  int N, C, H, W;
  int KH, KW, sh, sw, ph, pw;
  int OH, OW;
};

void maxpool2d_forward_cpu(ThreadPool* pool, const Pool2dShape& s, const float* x, float* y,
                           int32_t* idx);
void maxpool2d_backward_cpu(ThreadPool* pool, const Pool2dShape& s, const float* dy,
                            const int32_t* idx, float* dx);

}  // namespace cn
