// Timing and cache flushing for the benchmarks, the same for every driver that runs on our
// devices (ours, cuDNN).
//
// A marker is queued on a device like an op. On a CUDA device it records a CUDA event on the
// device's stream, so the time between two markers is GPU time (cudaEventElapsedTime). On a CPU
// device the queue thread runs the ops itself, so the marker takes a host timestamp when every
// op queued before it has finished: the time between two markers is the wall time of the work
// between them. Read elapsed times only after synchronizing the device.
//
// l2_flush queues a write over a buffer larger than the last-level cache (twice the GPU's L2 on
// CUDA; twice the CPU's L3 within [32, 128] MiB on a CPU queue), so a timed run after it starts cold.
#pragma once
#include <atomic>
#include <memory>

#include "core/device.h"

namespace cn::bench {

struct Marker {
  Device* device = nullptr;
  std::atomic<bool> reached{false};
  double host_ms = 0;      // CPU: steady-clock milliseconds when the queue reached the marker
  void* event = nullptr;   // CUDA: the cudaEvent_t recorded on the stream
  ~Marker();
};

std::shared_ptr<Marker> mark(Device* device);
// Milliseconds from a to b (same device, both reached: synchronize first).
double elapsed_ms(const Marker& a, const Marker& b);
// Queues the flush; returns the bytes it writes.
double l2_flush(Device* device);

}  // namespace cn::bench
