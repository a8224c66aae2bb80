// The CUDA runtime as native/emu emulates it, plus the few calls the benchmark facilities make
// that it does not (events, one device attribute); test_bench_emu.cc defines those. Put this
// folder before native/emu on the include path.
#pragma once
#include "../../emu/cuda_runtime.h"

typedef struct CUevent_st* cudaEvent_t;
enum cudaDeviceAttr { cudaDevAttrL2CacheSize = 89 };
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
