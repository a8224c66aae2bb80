// The CUDA device: one compute stream per logical device, fed by the device's queue thread,
// an upload stream for host-to-device copies, and a caching allocator over cudaMalloc. With
// CONVNET_VIRTUAL_GPUS=N several logical devices share one physical GPU, each with its own
// streams and pool, and copies between them are real device-to-device copies.
//
// Ordering across streams and devices uses CUDA events (see docs/native.md, "Copies between
// devices" and "Uploads"): no queue thread waits for the GPU except in synchronize().
#pragma once
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/device.h"

namespace cn {

// A CUDA event (timing off), alive while a task or a staging block still needs it. CUDA ties an
// event to the device current when it is created: make it after activate() on the device whose
// stream records it.
struct CudaEvent {
  cudaEvent_t e = nullptr;
  CudaEvent();
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  // A new event recorded on `stream` now.
  static std::shared_ptr<CudaEvent> record(cudaStream_t stream, const std::string& where);
};
using CudaEventPtr = std::shared_ptr<CudaEvent>;

class CudaDevice : public Device {
 public:
  CudaDevice(int logical, int physical);
  ~CudaDevice() override;

  DeviceInfo info() const override;
  void upload(const StoragePtr& dst, const void* src, size_t bytes) override;
  void download(const StoragePtr& src, void* dst, size_t bytes) override;
  void copy_within(const StoragePtr& dst, const StoragePtr& src, size_t bytes) override;
  void drain_on_queue() override;
  void before_release(void* ptr) override;

  // For kernels: call on the queue thread only.
  cudaStream_t stream() const { return stream_; }
  int physical() const { return physical_; }
  void activate() const;  // cudaSetDevice(physical) on the calling thread

 private:
  // The event recorded on the compute stream when ptr's block was last released (null when the
  // block was never released: fresh from cudaMalloc).
  CudaEventPtr release_event(void* ptr);

  int physical_;
  cudaStream_t stream_ = nullptr;
  cudaStream_t upload_stream_ = nullptr;
  std::mutex release_mu_;
  std::map<void*, CudaEventPtr> released_;
};

}  // namespace cn
