// The Winograd conv2d path on the CPU (conv2d_cpu_winograd.cc) for stride-1 convolutions:
// F(2x2, 3x3) forward and backward data and F(3x3, 2x2) for the filter gradient of 3x3 layers,
// used by conv2d_*_cpu when conv2d_winograd_applies() says so. That is conv3-conv5 of AlexNet
// (13x13) and of AlexNet-mini, where it does 2.25x fewer multiplications than im2col (1.9x once
// the 13x13 output is rounded up to whole 2x2 tiles); and, on request, F(2x2, 5x5) forward and
// backward data for 5x5 layers (AlexNet's conv2: 2.78x fewer). Any instruction set: the
// multiplications are sgemm's micro-kernels. Same contract as conv2d.h.
#pragma once
#include "ops/conv2d.h"

namespace cn {

// True when the Winograd path handles this shape and pass (decided by the shape alone, never by
// the thread count): 3x3 filters, stride 1, padding at most 2, at least 64 channels and 64
// filters per group, and at least 256 output tiles (2x2 blocks over the batch) for the forward
// pass and data gradient, 64 for the filter gradient (which, on a shape the batch-in-lanes path
// also takes, needs 128 channels and 128 filters per group): where it measured faster.
// 5x5 filters only with CN_CONV_WINOGRAD_5X5=1 (and not for the filter gradient): faster on
// AlexNet's conv2, but it rounds about eight times more than im2col (see the .cc).
// CN_CONV_WINOGRAD=0 in the environment turns the path off; CN_CONV_WINOGRAD=1 takes it for
// every shape and pass it can compute (for tests).
bool conv2d_winograd_applies(const Conv2dShape& s, bool filter_grad = false);

void conv2d_forward_winograd(ThreadPool* pool, const Conv2dShape& s, const float* x,
                             const float* w, const float* b, float* y);
void conv2d_backward_data_winograd(ThreadPool* pool, const Conv2dShape& s, const float* dy,
                                   const float* w, float* dx);
// 3x3 only. F(3x3, 2x2): the same tiles, their sum over the batch as 16 GEMMs.
void conv2d_backward_filter_winograd(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                     const float* dy, float* dw, float* db);

}  // namespace cn
