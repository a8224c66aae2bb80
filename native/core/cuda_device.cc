#include "core/cuda_device.h"

#include <future>
#include <memory>
#include <vector>

#include "core/cuda_check.h"

#ifndef CONVNET_CUDA_ARCHS
#define CONVNET_CUDA_ARCHS ""
#endif

namespace cn {

CudaDevice::CudaDevice(int logical, int physical)
    : Device("cuda:" + std::to_string(logical), DeviceKind::Cuda), physical_(physical) {
  activate();
  CN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                id() + ": creating its stream");
  int phys = physical_;
  allocator_ = std::make_unique<CachingAllocator>(
      id(),
      [phys](size_t n) -> void* {
        cudaSetDevice(phys);
        void* p = nullptr;
        cudaError_t err = cudaMalloc(&p, n);
        if (err == cudaErrorMemoryAllocation) {
          cudaGetLastError();
          return nullptr;
        }
        if (err != cudaSuccess) throw_cuda(err, "cudaMalloc");
        return p;
      },
      [phys](void* p) {
        cudaSetDevice(phys);
        cudaFree(p);
      },
      [phys]() -> size_t {
        cudaSetDevice(phys);
        size_t free_b = 0, total = 0;
        if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) {
          cudaGetLastError();
          return 0;
        }
        return free_b;
      });
  start_queue();
}

CudaDevice::~CudaDevice() {
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaDevice::activate() const {
  CN_CUDA_CHECK(cudaSetDevice(physical_), id() + ": cudaSetDevice");
}

DeviceInfo CudaDevice::info() const {
  cudaDeviceProp prop{};
  CN_CUDA_CHECK(cudaGetDeviceProperties(&prop, physical_), id() + ": reading its properties");
  DeviceInfo d;
  d.id = id();
  d.kind = "cuda";
  d.name = prop.name;
  d.compute_capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
  d.memory_bytes = static_cast<double>(prop.totalGlobalMem);
  return d;
}

void CudaDevice::upload(const StoragePtr& dst, const void* src, size_t bytes) {
  // Stage the caller's bytes now so they may change as soon as we return.
  auto staging = std::make_shared<std::vector<unsigned char>>(
      static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + bytes);
  enqueue([this, dst, staging, bytes] {
    activate();
    CN_CUDA_CHECK(cudaMemcpyAsync(dst->ptr, staging->data(), bytes, cudaMemcpyHostToDevice,
                                  stream_),
                  id() + ": copying to the device");
    CN_CUDA_CHECK(cudaStreamSynchronize(stream_), id() + ": copying to the device");
  });
}

void CudaDevice::download(const StoragePtr& src, void* dst, size_t bytes) {
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  enqueue([this, src, dst, bytes, done] {
    try {
      activate();
      CN_CUDA_CHECK(cudaMemcpyAsync(dst, src->ptr, bytes, cudaMemcpyDeviceToHost, stream_),
                    id() + ": copying to the host");
      CN_CUDA_CHECK(cudaStreamSynchronize(stream_), id() + ": copying to the host");
    } catch (...) {
      done->set_exception(std::current_exception());
      return;
    }
    done->set_value();
  });
  f.get();
}

void CudaDevice::copy_within(const StoragePtr& dst, const StoragePtr& src, size_t bytes) {
  enqueue([this, dst, src, bytes] {
    activate();
    CN_CUDA_CHECK(cudaMemcpyAsync(dst->ptr, src->ptr, bytes, cudaMemcpyDeviceToDevice, stream_),
                  id() + ": device-to-device copy");
  });
}

void CudaDevice::drain_on_queue() {
  activate();
  CN_CUDA_CHECK(cudaStreamSynchronize(stream_), id() + ": waiting for its stream");
}

void CudaDevice::copy_in_now(const StoragePtr& dst, const StoragePtr& src, size_t bytes) {
  activate();
  // cudaMemcpyDefault lets unified addressing pick host-to-device or peer/device-to-device.
  CN_CUDA_CHECK(cudaMemcpyAsync(dst->ptr, src->ptr, bytes, cudaMemcpyDefault, stream_),
                "copy from " + src->device->id() + " to " + id());
  CN_CUDA_CHECK(cudaStreamSynchronize(stream_), "copy from " + src->device->id() + " to " + id());
}

int cuda_device_count(std::string* why_none) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (err == cudaErrorNoDevice) {
      *why_none = "no CUDA device on this machine (cudaErrorNoDevice)";
    } else if (err == cudaErrorInsufficientDriver) {
      *why_none = "no CUDA driver, or one older than CUDA " + std::to_string(CUDART_VERSION / 1000) +
                  " needs (cudaErrorInsufficientDriver)";
    } else {
      *why_none = std::string("the CUDA driver is not usable: ") + cudaGetErrorName(err) + " (" +
                  cudaGetErrorString(err) + ")";
    }
    return 0;
  }
  if (n == 0) *why_none = "no CUDA device on this machine";
  return n;
}

Device* make_cuda_device(int logical, int physical) { return new CudaDevice(logical, physical); }

void cuda_memcpy_blocking(void* dst, const void* src, size_t bytes) {
  CN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "copy between devices");
}

void cuda_build_facts(BuildFacts* f) {
  f->cuda = true;
  f->cuda_version = std::to_string(CUDART_VERSION / 1000) + "." +
                    std::to_string((CUDART_VERSION % 1000) / 10);
  std::string archs = CONVNET_CUDA_ARCHS;
  size_t start = 0;
  while (start < archs.size()) {
    size_t end = archs.find_first_of(";, ", start);
    if (end == std::string::npos) end = archs.size();
    if (end > start) f->archs.push_back("sm_" + archs.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace cn
