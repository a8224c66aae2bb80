#include "core/cuda_device.h"

#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <utility>
#include <vector>

#include "core/cuda_check.h"

#ifndef CONVNET_CUDA_ARCHS
#define CONVNET_CUDA_ARCHS ""
#endif

namespace cn {

CudaEvent::CudaEvent() {
  CN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "creating a CUDA event");
}

CudaEvent::~CudaEvent() {
  // Destroying an event whose recorded work is still pending is allowed: CUDA frees it later.
  if (e) cudaEventDestroy(e);
}

CudaEventPtr CudaEvent::record(cudaStream_t stream, const std::string& where) {
  auto ev = std::make_shared<CudaEvent>();
  CN_CUDA_CHECK(cudaEventRecord(ev->e, stream), where);
  return ev;
}

namespace {

// Page-locked host blocks for staging uploads and copies. A block goes back with the event
// after which the GPU no longer touches it, and is handed out again only once that event is
// done (cudaEventQuery: never a wait). Blocks are cudaHostAllocPortable, so any device's
// stream may use them. Never destroyed (queue threads may still return blocks at exit).
class PinnedPool {
 public:
  struct Block {
    void* ptr = nullptr;
    size_t size = 0;
  };

  Block acquire(size_t bytes, const std::string& where) {
    size_t want = CachingAllocator::round_size(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t best = idle_.size();
      for (size_t k = 0; k < idle_.size(); ++k) {
        Entry& en = idle_[k];
        if (en.size < want || (best < idle_.size() && idle_[best].size <= en.size)) continue;
        if (!is_done(en.busy)) continue;
        best = k;
      }
      if (best < idle_.size()) {
        Block b{idle_[best].ptr, idle_[best].size};
        idle_bytes_ -= b.size;
        idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(best));
        return b;
      }
      trim_locked();
    }
    void* p = nullptr;
    cudaError_t err = cudaHostAlloc(&p, want, cudaHostAllocPortable);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      {
        std::lock_guard<std::mutex> lock(mu_);
        trim_locked(true);
      }
      err = cudaHostAlloc(&p, want, cudaHostAllocPortable);
    }
    if (err != cudaSuccess) throw_cuda(err, where + ": allocating " + std::to_string(want) +
                                                " bytes of page-locked host memory");
    return Block{p, want};
  }

  void release(Block b, CudaEventPtr busy) {
    if (!b.ptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(Entry{b.ptr, b.size, std::move(busy)});
    idle_bytes_ += b.size;
  }

 private:
  struct Entry {
    void* ptr;
    size_t size;
    CudaEventPtr busy;
  };
  static bool is_done(const CudaEventPtr& ev) {
    if (!ev) return true;
    cudaError_t q = cudaEventQuery(ev->e);
    if (q == cudaSuccess) return true;
    cudaGetLastError();  // cudaErrorNotReady is not an error to keep
    return false;
  }
  // Frees idle blocks that are done while more than kKeep bytes are idle (all of them when
  // `all`).
  void trim_locked(bool all = false) {
    constexpr size_t kKeep = size_t(512) << 20;
    for (size_t k = 0; k < idle_.size() && (all || idle_bytes_ > kKeep);) {
      if (!is_done(idle_[k].busy)) {
        ++k;
        continue;
      }
      cudaFreeHost(idle_[k].ptr);
      idle_bytes_ -= idle_[k].size;
      idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(k));
    }
  }

  std::mutex mu_;
  std::vector<Entry> idle_;
  size_t idle_bytes_ = 0;
};

PinnedPool& pinned_pool() {
  static PinnedPool* pool = new PinnedPool;
  return *pool;
}

}  // namespace

CudaDevice::CudaDevice(int logical, int physical)
    : Device("cuda:" + std::to_string(logical), DeviceKind::Cuda), physical_(physical) {
  activate();
  CN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                id() + ": creating its stream");
  CN_CUDA_CHECK(cudaStreamCreateWithFlags(&upload_stream_, cudaStreamNonBlocking),
                id() + ": creating its upload stream");
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
  stop_queue();  // the queue thread may still issue to the streams until it has stopped
  {
    std::lock_guard<std::mutex> lock(release_mu_);
    released_.clear();
  }
  if (upload_stream_) cudaStreamDestroy(upload_stream_);
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

// Uploads go through a page-locked staging block (the caller's bytes are copied into it before
// upload returns) on the upload stream, so the copy overlaps kernels on the compute stream:
//  - the upload stream first waits for the block's earlier uses: for a fresh tensor (see
//    Device::untouched: no work of this tensor can exist) that is only the event recorded when
//    its memory was last released, if ever; otherwise, everything issued to the compute stream
//    so far;
//  - the compute stream waits for the copy's event before the next op, and the staging block
//    goes back to the pool with that event.
// The queue thread only issues; it never waits for the GPU.
void CudaDevice::upload(const StoragePtr& dst, const void* src, size_t bytes) {
  const bool fresh = untouched(dst);
  PinnedPool::Block staging = pinned_pool().acquire(bytes, id() + ": upload");
  std::memcpy(staging.ptr, src, bytes);
  enqueue(
      [this, dst, staging, bytes, fresh] {
        CudaEventPtr done;
        try {
          activate();
          CudaEventPtr before =
              fresh ? release_event(dst->ptr) : CudaEvent::record(stream_, id() + ": upload");
          if (before) {
            CN_CUDA_CHECK(cudaStreamWaitEvent(upload_stream_, before->e, 0), id() + ": upload");
          }
          CN_CUDA_CHECK(cudaMemcpyAsync(dst->ptr, staging.ptr, bytes, cudaMemcpyHostToDevice,
                                        upload_stream_),
                        id() + ": copying to the device");
          done = CudaEvent::record(upload_stream_, id() + ": upload");
          CN_CUDA_CHECK(cudaStreamWaitEvent(stream_, done->e, 0), id() + ": upload");
        } catch (...) {
          // Hand the block back only once whatever was issued has finished.
          if (!done) {
            cudaStreamSynchronize(upload_stream_);
            cudaGetLastError();
          }
          pinned_pool().release(staging, done);
          throw;
        }
        pinned_pool().release(staging, done);
      },
      "upload");
}

// The copy into page-locked memory is issued on the queue thread; the calling thread (a worker,
// never the JS thread for `await t.data()`) waits for its event and copies out, so the queue
// thread goes on issuing meanwhile.
void CudaDevice::download(const StoragePtr& src, void* dst, size_t bytes) {
  struct Issued {
    PinnedPool::Block staging;
    CudaEventPtr done;
  };
  auto issued = std::make_shared<std::promise<Issued>>();
  auto f = issued->get_future();
  enqueue(
      [this, src, bytes, issued] {
        Issued out;
        try {
          activate();
          out.staging = pinned_pool().acquire(bytes, id() + ": download");
          CN_CUDA_CHECK(cudaMemcpyAsync(out.staging.ptr, src->ptr, bytes, cudaMemcpyDeviceToHost,
                                        stream_),
                        id() + ": copying to the host");
          out.done = CudaEvent::record(stream_, id() + ": copying to the host");
        } catch (...) {
          if (out.staging.ptr) {
            cudaStreamSynchronize(stream_);
            cudaGetLastError();
            pinned_pool().release(out.staging, nullptr);
          }
          issued->set_exception(std::current_exception());
          return;
        }
        issued->set_value(out);
      },
      "download");
  Issued got = f.get();
  cudaError_t err = cudaEventSynchronize(got.done->e);
  if (err == cudaSuccess) std::memcpy(dst, got.staging.ptr, bytes);
  pinned_pool().release(got.staging, err == cudaSuccess ? nullptr : got.done);
  if (err != cudaSuccess) throw_cuda(err, id() + ": copying to the host");
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
  CN_CUDA_CHECK(cudaStreamSynchronize(upload_stream_), id() + ": waiting for its upload stream");
}

void CudaDevice::before_release(void* ptr) {
  // Runs in Storage's destructor (any thread): never throws. Every use of the block has been
  // issued to the compute stream by now (a task holds its storage until it has issued), so an
  // event recorded now marks the end of them all.
  if (cudaSetDevice(physical_) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  std::lock_guard<std::mutex> lock(release_mu_);
  CudaEventPtr& ev = released_[ptr];
  try {
    if (!ev) ev = std::make_shared<CudaEvent>();
  } catch (...) {
    released_.erase(ptr);
    return;
  }
  if (cudaEventRecord(ev->e, stream_) != cudaSuccess) {
    cudaGetLastError();
    released_.erase(ptr);
    // Without the event an upload into this block would not know what to wait for: wait now.
    cudaStreamSynchronize(stream_);
    cudaGetLastError();
  }
}

CudaEventPtr CudaDevice::release_event(void* ptr) {
  std::lock_guard<std::mutex> lock(release_mu_);
  auto it = released_.find(ptr);
  return it == released_.end() ? nullptr : it->second;
}

// ---------------------------------------------------------------------------------------------
// Copies with a CUDA device on at least one side (the CPU-only case is in device.cc).

namespace {

// How bytes move between two CUDA devices.
enum class Link {
  Same,  // two logical devices on one GPU: a device-to-device copy
  Peer,  // peer-to-peer between two GPUs (cudaMemcpyPeerAsync with peer access enabled)
  Host,  // through page-locked host memory: a device-to-host copy, then a host-to-device one
};

// Decided once per pair of GPUs: peer access both ways, enabled then, or else staging. The
// environment variable CONVNET_P2P=0 forces staging (to test that path on a machine with P2P).
Link link_between(int a, int b) {
  if (a == b) return Link::Same;
  static std::mutex& mu = *new std::mutex;
  static std::map<std::pair<int, int>, Link>& links = *new std::map<std::pair<int, int>, Link>;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(std::min(a, b), std::max(a, b));
  auto it = links.find(key);
  if (it != links.end()) return it->second;
  Link link = Link::Host;
  const char* env = std::getenv("CONVNET_P2P");
  int ab = 0, ba = 0;
  if (!(env && std::strcmp(env, "0") == 0) && cudaDeviceCanAccessPeer(&ab, a, b) == cudaSuccess &&
      cudaDeviceCanAccessPeer(&ba, b, a) == cudaSuccess && ab && ba) {
    auto enable = [](int from, int to) {
      if (cudaSetDevice(from) != cudaSuccess) return false;
      cudaError_t err = cudaDeviceEnablePeerAccess(to, 0);
      if (err == cudaErrorPeerAccessAlreadyEnabled) err = cudaSuccess;
      return err == cudaSuccess;
    };
    if (enable(a, b) && enable(b, a)) link = Link::Peer;
  }
  cudaGetLastError();
  links[key] = link;
  return link;
}

void copy_between_gpus(void* dst, int dst_phys, const void* src, int src_phys, size_t bytes,
                       cudaStream_t stream, const std::string& where) {
  if (dst_phys == src_phys) {
    CN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), where);
  } else {
    CN_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_phys, src, src_phys, bytes, stream), where);
  }
}

// What the two halves of one copy share (see CopyMeet in device.h).
struct CudaCopy {
  CopyMeet meet;
  Link link = Link::Host;
  CudaEventPtr dst_ready;   // destination stream, where the copy half arrived
  CudaEventPtr src_ready;   // source stream, after the snapshot
  CudaEventPtr done;        // source stream, after a direct copy
  StoragePtr dev_staging;   // snapshot on the source GPU (Same / Peer links)
  PinnedPool::Block host_staging;  // snapshot in page-locked memory (Host link, or a CPU side)
  ~CudaCopy() {
    // Still here only when a half failed: free the block once the snapshot into it is done.
    if (host_staging.ptr) pinned_pool().release(host_staging, src_ready);
  }
};

}  // namespace

void cuda_copy_storage(const StoragePtr& dst, const StoragePtr& src, size_t bytes) {
  Device* from = src->device;
  Device* to = dst->device;
  auto* gfrom = from->kind() == DeviceKind::Cuda ? static_cast<CudaDevice*>(from) : nullptr;
  auto* gto = to->kind() == DeviceKind::Cuda ? static_cast<CudaDevice*>(to) : nullptr;
  auto c = std::make_shared<CudaCopy>();
  c->link = gfrom && gto ? link_between(gfrom->physical(), gto->physical()) : Link::Host;
  const std::string where = "copy from " + from->id() + " to " + to->id();

  // Source half: never waits for the destination.
  from->enqueue(
      [c, src, dst, bytes, gfrom, gto, where] {
        try {
          if (!gfrom) {
            // A CPU source: snapshot into page-locked memory for the destination's upload.
            c->host_staging = pinned_pool().acquire(bytes, where);
            std::memcpy(c->host_staging.ptr, src->ptr, bytes);
            c->meet.staged();
            return;
          }
          gfrom->activate();
          if (gto && c->link != Link::Host && c->meet.source_arrives()) {
            // The destination stream has reached the copy (dst_ready): copy straight into dst
            // on the source stream, so later work there cannot overwrite src too early.
            CN_CUDA_CHECK(cudaStreamWaitEvent(gfrom->stream(), c->dst_ready->e, 0), where);
            copy_between_gpus(dst->ptr, gto->physical(), src->ptr, gfrom->physical(), bytes,
                              gfrom->stream(), where);
            c->done = CudaEvent::record(gfrom->stream(), where);
            c->meet.done();
            return;
          }
          if (c->link == Link::Host) {
            c->host_staging = pinned_pool().acquire(bytes, where);
            CN_CUDA_CHECK(cudaMemcpyAsync(c->host_staging.ptr, src->ptr, bytes,
                                          cudaMemcpyDeviceToHost, gfrom->stream()),
                          where);
          } else {
            c->dev_staging = gfrom->allocate(bytes);
            CN_CUDA_CHECK(cudaMemcpyAsync(c->dev_staging->ptr, src->ptr, bytes,
                                          cudaMemcpyDeviceToDevice, gfrom->stream()),
                          where);
          }
          c->src_ready = CudaEvent::record(gfrom->stream(), where);
          c->meet.staged();
        } catch (...) {
          c->meet.fail(std::current_exception());
          throw;
        }
      },
      "copy_out");

  // Destination half: waits (on its own queue thread) for the source half, then finishes.
  to->enqueue(
      [c, dst, bytes, from, gfrom, gto, where] {
        try {
          if (gto) {
            gto->activate();
            if (gfrom && c->link != Link::Host) c->dst_ready = CudaEvent::record(gto->stream(), where);
          }
          CopyMeet::Path path = destination_arrives(c->meet, where);
          if (path == CopyMeet::Path::Direct) {
            CN_CUDA_CHECK(cudaStreamWaitEvent(gto->stream(), c->done->e, 0), where);
            return;
          }
          if (!gto) {
            // A CPU destination: the bytes are in page-locked memory once src_ready is done.
            CN_CUDA_CHECK(cudaEventSynchronize(c->src_ready->e), where);
            std::memcpy(dst->ptr, c->host_staging.ptr, bytes);
            pinned_pool().release(std::exchange(c->host_staging, {}), nullptr);
            return;
          }
          if (c->src_ready) {
            CN_CUDA_CHECK(cudaStreamWaitEvent(gto->stream(), c->src_ready->e, 0), where);
          }
          if (c->host_staging.ptr) {
            CN_CUDA_CHECK(cudaMemcpyAsync(dst->ptr, c->host_staging.ptr, bytes,
                                          cudaMemcpyHostToDevice, gto->stream()),
                          where);
            CudaEventPtr read = CudaEvent::record(gto->stream(), where);
            pinned_pool().release(std::exchange(c->host_staging, {}), read);
            return;
          }
          copy_between_gpus(dst->ptr, gto->physical(), c->dev_staging->ptr, gfrom->physical(),
                            bytes, gto->stream(), where);
          CudaEventPtr read = CudaEvent::record(gto->stream(), where);
          // The snapshot's block goes back to the source device's allocator only after the
          // source stream has waited for this read, so no later work there reuses it early.
          from->enqueue([c, gfrom, read, where] {
            StoragePtr staging = std::move(c->dev_staging);
            gfrom->activate();
            CN_CUDA_CHECK(cudaStreamWaitEvent(gfrom->stream(), read->e, 0), where);
          });
        } catch (...) {
          c->meet.fail(std::current_exception());
          if (gto) {
            // Whatever this half issued may still read the staging block: let it finish.
            cudaStreamSynchronize(gto->stream());
            cudaGetLastError();
          }
          throw;
        }
      },
      "copy_in");
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
