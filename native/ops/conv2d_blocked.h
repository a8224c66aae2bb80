// The batch-in-lanes conv2d path on the CPU (conv2d_cpu_blocked.cc), used by conv2d_*_cpu when
// conv2d_blocked_applies() says so: AVX-512, the batch a multiple of 32 images and at least 64,
// at least 8 channels and filters per group. Same contract as conv2d.h.
#pragma once
#include "ops/conv2d.h"

namespace cn {

// True when the blocked path handles this shape on this CPU (never depends on the thread count).
// CN_CONV_BLOCKED=0 in the environment turns the path off (im2col everywhere).
bool conv2d_blocked_applies(const Conv2dShape& s);

void conv2d_forward_blocked(ThreadPool* pool, const Conv2dShape& s, const float* x,
                            const float* w, const float* b, float* y);
void conv2d_backward_data_blocked(ThreadPool* pool, const Conv2dShape& s, const float* dy,
                                  const float* w, float* dx);
void conv2d_backward_filter_blocked(ThreadPool* pool, const Conv2dShape& s, const float* x,
                                    const float* dy, float* dw, float* db);

}  // namespace cn
