// conv2d's CUDA versions, side by side (see conv2d.h for the contract every version keeps):
//   1  conv2d_cuda.cu     explicit im2col / col2im into a workspace around the tiled SGEMM
//                         (gemm_cuda.cu); the default, and the baseline the others are timed
//                         against.
//   2  conv2d_v2_cuda.cu  implicit GEMM: operand tiles gathered straight from x / dy / w into
//                         double-buffered shared memory (cp.async on sm_80+), no im2col buffer.
// The op table's conv2d ops carry the version as their last integer argument (registry.cc):
// 0 means the default (version 1), 1 and 2 pick one. TypeScript resolves the per-op `version`
// option and the CONVNET_CONV_VERSION environment variable into that argument (src/ops/conv2d.ts).
// A version-2 call whose GEMM sizes do not fit in int32 (conv2d_v2_fits) runs version 1.
#pragma once
#include <string>

#include "core/cuda_device.h"
#include "ops/conv2d.h"
#include "ops/registry.h"

namespace cn {

constexpr int kConvVersionDefault = 1;
constexpr int kConvVersionMax = 2;

bool conv2d_v2_fits(const Conv2dShape& s);
void conv2d_forward_cuda_v2(const OpCall& c);
void conv2d_backward_data_cuda_v2(const OpCall& c);
void conv2d_backward_filter_cuda_v2(const OpCall& c);

// db[f] = the sum of dy[n, f, :, :] over n (nothing when db is null); shared by the versions.
void launch_conv2d_bias_grad(CudaDevice* dev, const Conv2dShape& s, const float* dy, float* db,
                             const std::string& at);

}  // namespace cn
