// The batch-in-lanes conv2d path on the CPU (conv2d_cpu_blocked.cc), used by conv2d_*_cpu when
// conv2d_blocked_applies() says so: AVX-512 or AVX2 + FMA (the SGEMM's choice), the batch a
// multiple of 32 images and at least 64, at least 8 filters per group and (except for the filter
// gradient, `filter_grad`) at least 8 channels per group. Same contract as conv2d.h.
#pragma once
#include "ops/conv2d.h"

namespace cn {

// True when the blocked path handles this shape on this CPU (never depends on the thread count).
// CN_CONV_BLOCKED=0 in the environment turns the path off (im2col everywhere).
bool conv2d_blocked_applies(const Conv2dShape& s, bool filter_grad = false);

// The instruction set of the path's micro-kernels: "avx512" or "avx2", the one sgemm_kernel_name()
// reports (CN_SGEMM_ISA caps both), or "" where the path is off (other CPUs, the SSE or portable
// SGEMM kernel, CN_CONV_BLOCKED=0).
const char* conv2d_blocked_isa();

void conv2d_forward_blocked(ThreadPool* pool, const Conv2dShape& s, const float* x,
                            const float* w, const float* b, float* y);
void conv2d_backward_data_blocked(ThreadPool* pool, const Conv2dShape& s, const float* dy,
                                  const float* w, float* dx);
void conv2d_backward_filter_blocked(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                    const float* dy, float* dw, float* db);

}  // namespace cn
