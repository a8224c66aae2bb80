// The Winograd conv2d path on the CPU (conv2d_cpu_winograd.cc) for 3x3 stride-1 convolutions:
// F(2x2, 3x3) forward and backward data, F(3x3, 2x2) for the filter gradient, used by
// conv2d_*_cpu when conv2d_winograd_applies() says so. That is conv3-conv5 of
// AlexNet (13x13) and of AlexNet-mini, where it does 2.25x fewer multiplications than im2col
// (1.9x once the 13x13 output is rounded up to whole 2x2 tiles). Any instruction set: the
// multiplications are sgemm's micro-kernels. Same contract as conv2d.h.
#pragma once
#include "ops/conv2d.h"

namespace cn {

// True when the Winograd path handles this shape (decided by the shape alone, never by the
// thread count): 3x3 filters, stride 1, padding at most 2, at least 64 channels and 64 filters
// per group and 200 MFLOP of direct work, where it measured faster than the other paths. CN_CONV_WINOGRAD=0 in the environment turns it off;
// CN_CONV_WINOGRAD=1 takes it for every shape it can compute (for tests).
bool conv2d_winograd_applies(const Conv2dShape& s, bool filter_grad = false);

void conv2d_forward_winograd(ThreadPool* pool, const Conv2dShape& s, const float* x,
                             const float* w, const float* b, float* y);
void conv2d_backward_data_winograd(ThreadPool* pool, const Conv2dShape& s, const float* dy,
                                   const float* w, float* dx);
// F(3x3, 2x2): the same tiles, their sum over the batch as 16 GEMMs.
void conv2d_backward_filter_winograd(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                     const float* dy, float* dw, float* db);

}  // namespace cn
