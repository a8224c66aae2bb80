// cuDNN as a benchmark driver: one convolution pass at one shape, on one of our CUDA devices,
// on that device's stream, reading and writing our device buffers, with its workspace from our
// caching allocator. Built only with CUDA; the CPU-only build has stubs that say so.
//
// Buffers, outputs first like our native ops:
//   forward          [y, x, w]
//   backward-data    [dx, dy, w]
//   backward-filter  [dw, x, dy]
// Shapes come as the 14 ints of our conv2d ops: N,C,H,W,F,KH,KW,sh,sw,ph,pw,G,OH,OW.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"

namespace cn::cudnn {

enum class Pass { Forward, BackwardData, BackwardFilter };

struct ConvPlan;

struct PlanInfo {
  bool found = false;    // the algorithm search has run
  int algo = -1;         // cuDNN's algorithm enum value
  float find_ms = 0;     // the time cuDNN measured for it during the search
  double workspace = 0;  // bytes
  int math = -1;         // the math type cuDNN reported for it
  int candidates = 0;    // algorithms the search returned
};

// Validates and creates the descriptors (math: "fp32" -> FMA only, "tf32" -> tensor ops).
std::shared_ptr<ConvPlan> make_plan(Device* device, Pass pass, const std::vector<int64_t>& ints,
                                    const std::string& math);
// Queue the algorithm search (cudnnFind*AlgorithmEx on the given buffers) / one run.
void enqueue_find(const std::shared_ptr<ConvPlan>& plan, std::vector<StoragePtr> buffers);
void enqueue_run(const std::shared_ptr<ConvPlan>& plan, std::vector<StoragePtr> buffers);
PlanInfo plan_info(const ConvPlan& plan);

}  // namespace cn::cudnn
