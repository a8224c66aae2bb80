// The CUDA runtime as native/emu emulates it (events included), plus the one call the benchmark
// facilities make that it does not (a device attribute); test_bench_emu.cc defines that. Put this
// folder before native/emu on the include path.
#pragma once
#include "../../emu/cuda_runtime.h"

enum cudaDeviceAttr { cudaDevAttrL2CacheSize = 89 };
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
