// Local response normalisation across channels (PyTorch's local_response_norm), NCHW.
//
//   scale[n,c,h,w] = k + (alpha/size) * sum_{j in win(c)} x[n,j,h,w]^2
//   y = x * scale^-beta
//   win(c) = [c - size/2, c + (size-1)/2] (integer division) clipped to [0, C)
//
// Backward (dx overwritten), with u = dy * y / scale:
//   dx[c] = dy[c] * scale[c]^-beta - (2*alpha*beta/size) * x[c] * sum_{j : c in win(j)} u[j]
//   where c in win(j)  <=>  j in [c - (size-1)/2, c + size/2].
#pragma once
#include "core/parallel.h"

namespace cn {

struct LrnShape {
  int N, C, H, W;
  int size;
  float alpha, beta, k;
};

// scale is saved for the backward pass.
void lrn_forward_cpu(ThreadPool* pool, const LrnShape& s, const float* x, float* y, float* scale);
void lrn_backward_cpu(ThreadPool* pool, const LrnShape& s, const float* x, const float* y,
                      const float* scale, const float* dy, float* dx);

}  // namespace cn
