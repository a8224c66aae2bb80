// Devices, their work queues and the memory they own.
//
// A device is an ordered work queue served by one host thread. On `cpu:N` the thread computes
// the op itself (with a ThreadPool to split it); on `cuda:N` it issues the op to the device's
// CUDA stream. The JS thread only validates, allocates and enqueues, so it never waits for work
// unless it asks to (synchronize / download).
//
// Storage is reference counted: a queued task holds a reference to every buffer it touches, so
// disposing a tensor in JS while work on it is still queued is safe; the block goes back to the
// device's caching allocator when the last reference drops.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/allocator.h"
#include "core/parallel.h"

namespace cn {

enum class DeviceKind { Cpu, Cuda };

class Device;

struct Storage {
  Device* device;
  void* ptr;
  size_t bytes;    // what was asked for
  size_t rounded;  // what the allocator handed out
  Storage(Device* d, void* p, size_t b, size_t r) : device(d), ptr(p), bytes(b), rounded(r) {}
  ~Storage();
  template <typename T> T* as() const { return static_cast<T*>(ptr); }
};
using StoragePtr = std::shared_ptr<Storage>;

struct DeviceInfo {
  std::string id, kind, name, compute_capability;
  double memory_bytes = 0;
};

class Device {
 public:
  virtual ~Device();
  const std::string& id() const { return id_; }
  DeviceKind kind() const { return kind_; }
  virtual DeviceInfo info() const = 0;

  StoragePtr allocate(size_t bytes);
  CachingAllocator& allocator() { return *allocator_; }

  // Appends a task to the queue. A task that throws does not stop the queue: its error is kept
  // and raised by the next synchronize() (like CUDA's deferred errors). `label` (a string that
  // lives as long as the process, e.g. an op name) names the task in traces.
  void enqueue(std::function<void()> task, const char* label = nullptr);
  // Blocks the calling thread until every task queued so far (and its GPU work) is done, then
  // rethrows the first deferred error, if any.
  void synchronize();

  // Host <-> device copies, both in queue order. upload takes the caller's bytes before it
  // returns (the buffer may be reused at once); download blocks until the data is in.
  virtual void upload(const StoragePtr& dst, const void* src, size_t bytes) = 0;
  virtual void download(const StoragePtr& src, void* dst, size_t bytes) = 0;
  // Copies within this device, in queue order.
  virtual void copy_within(const StoragePtr& dst, const StoragePtr& src, size_t bytes) = 0;
  // Waits on the queue thread until this device's issued GPU work is done (no-op on the CPU).
  virtual void drain_on_queue() {}
  // Runs on this device's queue thread: copies src (on another device, whose queue is held
  // still and drained meanwhile) into dst, and returns when the bytes are in.
  virtual void copy_in_now(const StoragePtr& dst, const StoragePtr& src, size_t bytes) = 0;

  // The pool a CPU op may split work over (null on CUDA devices).
  virtual ThreadPool* pool() { return nullptr; }

 protected:
  Device(std::string id, DeviceKind kind) : id_(std::move(id)), kind_(kind) {}
  void start_queue();
  void record_error(std::exception_ptr e);
  std::unique_ptr<CachingAllocator> allocator_;

 private:
  void queue_loop();

  std::string id_;
  DeviceKind kind_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct Task {
    std::function<void()> fn;
    const char* label;
  };
  std::deque<Task> tasks_;
  bool stop_ = false;
  std::exception_ptr error_;
};

// Resolves 'cpu', 'cpu:N' and 'cuda:N'. Throws DeviceError for an unknown id, a CUDA device on
// a build without CUDA, a machine without a driver, or an index past the last device.
Device* get_device(const std::string& id);
std::vector<DeviceInfo> list_devices();
int cpu_device_count();

// Copies src into dst (same size) across or within devices, in the order of both queues: the
// copy runs on src's queue after the work queued there so far; dst's queue waits for it.
void copy_storage(const StoragePtr& dst, const StoragePtr& src, size_t bytes);

// Tracing: while on, every labelled task records when its queue thread ran it (host time; for
// CUDA devices that is when the work was issued, not when the GPU ran it).
struct TraceEvent {
  std::string device;
  const char* label;
  double start_us, end_us;  // microseconds since the process started tracing for the first time
};
void trace_start();
std::vector<TraceEvent> trace_stop();

// What the addon reports as build facts.
struct BuildFacts {
  bool cuda = false;
  std::string cuda_version;
  std::vector<std::string> archs;
};
BuildFacts build_facts();

// Implemented in cuda_device.cc when CUDA is built in, else stubs that report why not.
int cuda_device_count(std::string* why_none);
Device* make_cuda_device(int logical, int physical);
// A blocking cudaMemcpy with the direction inferred from the pointers (unified addressing).
void cuda_memcpy_blocking(void* dst, const void* src, size_t bytes);
void cuda_build_facts(BuildFacts* facts);

}  // namespace cn
