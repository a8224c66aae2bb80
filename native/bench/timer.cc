#include "bench/timer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "core/errors.h"
#include "core/parallel.h"

#ifdef CONVNET_WITH_CUDA
#include "core/cuda_check.h"
#include "core/cuda_device.h"
#endif

namespace cn::bench {
namespace {

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

std::mutex flush_mu;
std::map<Device*, StoragePtr> flush_buffers;  // one buffer per device, kept for the process

size_t cpu_flush_bytes() {
  long l3 = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
  l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
  size_t bytes = l3 > 0 ? 2 * static_cast<size_t>(l3) : 0;
  // The L3 of a server part is shared by many cores, and a queue thread sees only its share:
  // 128 MiB is past that on every machine we run on, and writing it takes tens of milliseconds.
  return std::min<size_t>(std::max<size_t>(bytes, size_t(32) << 20), size_t(128) << 20);
}

}  // namespace

Marker::~Marker() {
#ifdef CONVNET_WITH_CUDA
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
#endif
}

std::shared_ptr<Marker> mark(Device* device) {
  auto m = std::make_shared<Marker>();
  m->device = device;
  if (device->kind() == DeviceKind::Cpu) {
    device->enqueue([m] {
      m->host_ms = now_ms();
      m->reached = true;
    }, "bench_marker");
    return m;
  }
#ifdef CONVNET_WITH_CUDA
  auto* dev = static_cast<CudaDevice*>(device);
  dev->enqueue([m, dev] {
    dev->activate();
    cudaEvent_t ev = nullptr;
    CN_CUDA_CHECK(cudaEventCreate(&ev), dev->id() + ": creating a timing event");
    m->event = ev;
    CN_CUDA_CHECK(cudaEventRecord(ev, dev->stream()), dev->id() + ": recording a timing event");
    m->reached = true;
  }, "bench_marker");
  return m;
#else
  fail(ErrorKind::Device, "timerMark: this build has no CUDA support");
#endif
}

double elapsed_ms(const Marker& a, const Marker& b) {
  if (a.device != b.device)
    fail(ErrorKind::Device, "timerElapsed: the markers are on two devices, " + a.device->id() +
                                " and " + b.device->id());
  if (!a.reached || !b.reached)
    fail(ErrorKind::Device, "timerElapsed: a marker on " + a.device->id() +
                                " was not reached yet; synchronize the device first");
  if (a.device->kind() == DeviceKind::Cpu) return b.host_ms - a.host_ms;
#ifdef CONVNET_WITH_CUDA
  float ms = 0;
  CN_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(a.event),
                                     static_cast<cudaEvent_t>(b.event)),
                a.device->id() + ": reading the time between two events");
  return ms;
#else
  return 0;
#endif
}

double l2_flush(Device* device) {
  StoragePtr buf;
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(flush_mu);
    auto it = flush_buffers.find(device);
    if (it != flush_buffers.end()) {
      buf = it->second;
    } else {
      if (device->kind() == DeviceKind::Cpu) {
        bytes = cpu_flush_bytes();
      } else {
#ifdef CONVNET_WITH_CUDA
        auto* dev = static_cast<CudaDevice*>(device);
        dev->activate();
        int l2 = 0;
        CN_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev->physical()),
                      dev->id() + ": reading its L2 cache size");
        bytes = std::max<size_t>(2 * static_cast<size_t>(l2), size_t(8) << 20);
#endif
      }
      buf = device->allocate(bytes);
      flush_buffers[device] = buf;
    }
  }
  bytes = buf->bytes;
  if (device->kind() == DeviceKind::Cpu) {
    // A new byte value each time, so every line is really written.
    // Split over the queue's pool, as PyTorch's fill_ is over its threads: both sides then start
    // the timed op with their helper threads just back from work, not asleep.
    device->enqueue([buf, device] {
      static std::atomic<int> v{0};
      const int value = ++v & 0xff;
      constexpr int64_t kChunk = int64_t(1) << 20;
      const int64_t chunks = static_cast<int64_t>((buf->bytes + kChunk - 1) / kChunk);
      parallel_for(device->pool(), chunks, [&](int64_t c0, int64_t c1, int) {
        const size_t b0 = static_cast<size_t>(c0 * kChunk);
        const size_t b1 = std::min(buf->bytes, static_cast<size_t>(c1 * kChunk));
        std::memset(static_cast<char*>(buf->ptr) + b0, value, b1 - b0);
      });
    }, "bench_l2_flush");
    return static_cast<double>(bytes);
  }
#ifdef CONVNET_WITH_CUDA
  auto* dev = static_cast<CudaDevice*>(device);
  dev->enqueue([buf, dev] {
    dev->activate();
    static std::atomic<int> v{0};
    CN_CUDA_CHECK(cudaMemsetAsync(buf->ptr, ++v & 0xff, buf->bytes, dev->stream()),
                  dev->id() + ": flushing the L2 cache");
  }, "bench_l2_flush");
#endif
  return static_cast<double>(bytes);
}

}  // namespace cn::bench
