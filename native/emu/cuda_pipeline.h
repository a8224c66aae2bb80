// The emulation's <cuda_pipeline.h>: the __pipeline_* primitives (asynchronous copies into
// shared memory) are declared with the rest of the emulated CUDA in cuda_runtime.h.
#pragma once
#include "cuda_runtime.h"
