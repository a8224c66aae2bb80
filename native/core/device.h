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
#include <atomic>
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
  // Device::enqueued() when the storage was made: while it is unchanged (and only the caller
  // holds the storage) no task can have used the storage.
  uint64_t enqueue_mark = 0;
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
  // How many tasks were ever enqueued here.
  uint64_t enqueued() const { return enqueued_.load(); }
  // True when `s` is new to this queue: nothing but the caller holds it and no task was queued
  // since it was allocated, so no work (queued, or issued to a GPU and still running) uses it.
  bool untouched(const StoragePtr& s) const {
    return s.use_count() == 1 && enqueued() == s->enqueue_mark;
  }
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
  // Called when a block of this device goes back to the allocator (from any thread). A CUDA
  // device records on its stream when the work issued so far (the block's last uses) is done,
  // so a copy on another stream can wait for exactly that before it writes the block again.
  virtual void before_release(void* ptr) { (void)ptr; }

  // The pool a CPU op may split work over (null on CUDA devices).
  virtual ThreadPool* pool() { return nullptr; }
  // Called by the queue thread as it starts working through queued tasks (true) and as it finds
  // the queue empty and goes to sleep (false).
  virtual void queue_active(bool) {}

 protected:
  Device(std::string id, DeviceKind kind) : id_(std::move(id)), kind_(kind) {}
  void start_queue();
  // Runs what is queued, then ends the queue thread (idempotent). A derived destructor calls it
  // before tearing down what its tasks use.
  void stop_queue();
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
  std::atomic<uint64_t> enqueued_{0};
  bool stop_ = false;
  std::exception_ptr error_;
};

// Resolves 'cpu', 'cpu:N' and 'cuda:N'. Throws DeviceError for an unknown id, a CUDA device on
// a build without CUDA, a machine without a driver, or an index past the last device.
Device* get_device(const std::string& id);
std::vector<DeviceInfo> list_devices();
int cpu_device_count();

// Copies src into dst (same size) across or within devices, in the order of both queues: the
// copy reads src after the work queued on src's device so far, writes dst after the work
// queued on dst's device so far, and work queued later on dst's device sees the bytes. Neither
// queue holds the other: see "Copies between devices" in docs/native.md.
void copy_storage(const StoragePtr& dst, const StoragePtr& src, size_t bytes);

// The meeting point of the two halves of one cross-device copy: `copy_out`, a task on the
// source queue, and `copy_in`, a task on the destination queue. The source half never waits:
// when it runs first it takes a snapshot of src (a staging copy) and goes on; when the
// destination half is already waiting, it copies straight into dst. The destination half
// waits (on its own queue thread) for the source half, then finishes the copy from the
// snapshot, or takes the direct copy as done. Only destination halves wait, each for a source
// half enqueued at the same moment, so queues cannot wait on each other in a cycle.
class CopyMeet {
 public:
  enum class Path { Direct, Staged };
  // Source half: true when the destination half already waits, so the caller copies directly
  // and then calls done(); false when the caller must stage, then call staged().
  bool source_arrives();
  void staged();
  void done();
  // Either half: the copy failed; the other half raises `e` instead of waiting forever.
  void fail(std::exception_ptr e);
  // Destination half: waits until the source half staged its snapshot or finished a direct
  // copy. Rethrows the source half's failure.
  Path destination_arrives();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool dst_waiting_ = false, staged_ = false, done_ = false;
  std::exception_ptr error_;
};

// The destination half's wait on `meet`; a failure of the source half comes out as an Error of
// the same kind whose message starts with `where` ("copy from cpu:0 to cuda:1").
CopyMeet::Path destination_arrives(CopyMeet& meet, const std::string& where);

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
// A copy where at least one side is a CUDA device (see copy_storage; called with the lock that
// orders the halves of all copies held, so it only enqueues).
void cuda_copy_storage(const StoragePtr& dst, const StoragePtr& src, size_t bytes);
void cuda_build_facts(BuildFacts* facts);

}  // namespace cn
