// The direct conv2d path on the CPU for layers with few input channels (conv2d_cpu_direct.cc),
// used by conv2d_forward_cpu and conv2d_backward_filter_cpu when conv2d_direct_applies() says
// so: AVX-512 or AVX2 + FMA, at most 4 input channels and a multiple of 16 filters per group
// (one group for the filter gradient), any batch size.
// That is conv1 of AlexNet (3 channels, 11x11, stride 4) and of AlexNet-mini (1 channel, 5x5),
// where an im2col GEMM has a reduction of only 25 to 363 and spends its time moving columns.
// Same contract as conv2d.h.
#pragma once
#include "ops/conv2d.h"

namespace cn {

// True when the direct path handles this shape on this CPU (decided by the shape alone).
// CN_CONV_DIRECT=0 in the environment turns the path off.
bool conv2d_direct_applies(const Conv2dShape& s, bool filter_grad = false);

// The instruction set of the path's register tiles: "avx512" or "avx2", the one
// sgemm_kernel_name() reports (CN_SGEMM_ISA caps both), or "" where the path is off.
const char* conv2d_direct_isa();

void conv2d_forward_direct(ThreadPool* pool, const Conv2dShape& s, const float* x,
                           const float* w, const float* b, float* y);
void conv2d_backward_filter_direct(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                   const float* dy, float* dw, float* db);

}  // namespace cn
