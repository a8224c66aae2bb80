// The CUDA device: one stream per logical device, fed by the device's queue thread, with a
// caching allocator over cudaMalloc. With CONVNET_VIRTUAL_GPUS=N several logical devices share
// one physical GPU, each with its own stream and pool, and copies between them are real
// device-to-device copies.
#pragma once
#include <cuda_runtime.h>

#include "core/device.h"

namespace cn {

class CudaDevice : public Device {
 public:
  CudaDevice(int logical, int physical);
  ~CudaDevice() override;

  DeviceInfo info() const override;
  void upload(const StoragePtr& dst, const void* src, size_t bytes) override;
  void download(const StoragePtr& src, void* dst, size_t bytes) override;
  void copy_within(const StoragePtr& dst, const StoragePtr& src, size_t bytes) override;
  void drain_on_queue() override;
  void copy_in_now(const StoragePtr& dst, const StoragePtr& src, size_t bytes) override;

  // For kernels: call on the queue thread only.
  cudaStream_t stream() const { return stream_; }
  int physical() const { return physical_; }
  void activate() const;  // cudaSetDevice(physical) on the calling thread

 private:
  int physical_;
  cudaStream_t stream_ = nullptr;
};

}  // namespace cn
