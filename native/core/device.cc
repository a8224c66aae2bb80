#include "core/device.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <sstream>
#include <vector>

#include <unistd.h>

#include "core/errors.h"

namespace cn {

Storage::~Storage() {
  if (!ptr) return;
  device->before_release(ptr);
  device->allocator().release(ptr, rounded);
}

Device::~Device() { stop_queue(); }

void Device::stop_queue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Device::start_queue() { thread_ = std::thread([this] { queue_loop(); }); }

StoragePtr Device::allocate(size_t bytes) {
  size_t rounded = 0;
  void* p = allocator_->allocate(bytes, &rounded);
  auto s = std::make_shared<Storage>(this, p, bytes, rounded);
  s->enqueue_mark = enqueued();
  return s;
}

void Device::enqueue(std::function<void()> task, const char* label) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(Task{std::move(task), label});
    enqueued_.fetch_add(1);
  }
  cv_.notify_one();
}

namespace {
// Never destroyed: queue threads outlive static destruction at process exit and may still
// record a finished task then.
std::atomic<bool> g_tracing{false};
std::mutex& g_trace_mu = *new std::mutex;
std::vector<TraceEvent>& g_trace = *new std::vector<TraceEvent>;
const auto g_epoch = std::chrono::steady_clock::now();

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - g_epoch).count();
}
}  // namespace

void trace_start() {
  std::lock_guard<std::mutex> lock(g_trace_mu);
  g_trace.clear();
  g_tracing = true;
}

std::vector<TraceEvent> trace_stop() {
  std::lock_guard<std::mutex> lock(g_trace_mu);
  g_tracing = false;
  std::vector<TraceEvent> out;
  out.swap(g_trace);
  return out;
}

void Device::record_error(std::exception_ptr e) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!error_) error_ = e;
}

void Device::queue_loop() {
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (tasks_.empty() && !stop_) {
        queue_active(false);
        cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        queue_active(true);
      }
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    bool traced = task.label && g_tracing.load(std::memory_order_relaxed);
    double start = traced ? now_us() : 0;
    try {
      task.fn();
    } catch (...) {
      record_error(std::current_exception());
    }
    if (traced) {
      double end = now_us();
      std::lock_guard<std::mutex> lock(g_trace_mu);
      if (g_tracing) g_trace.push_back(TraceEvent{id_, task.label, start, end});
    }
  }
}

void Device::synchronize() {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> f = done->get_future();
  enqueue([this, done] {
    try {
      drain_on_queue();
    } catch (...) {
      record_error(std::current_exception());
    }
    done->set_value();
  });
  f.wait();
  std::exception_ptr e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::swap(e, error_);
  }
  if (e) std::rethrow_exception(e);
}

// ---------------------------------------------------------------------------------------------
// CPU devices

namespace {

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < lo || n > hi) return fallback;
  return static_cast<int>(n);
}

size_t host_free_bytes() {
  long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(size) : 0;
}

class CpuDevice : public Device {
 public:
  explicit CpuDevice(int index)
      : Device("cpu:" + std::to_string(index), DeviceKind::Cpu),
        pool_(env_int("CONVNET_CPU_THREADS", static_cast<int>(std::thread::hardware_concurrency()),
                      1, 256)) {
    allocator_ = std::make_unique<CachingAllocator>(
        id(),
        [](size_t n) -> void* {
          // 64-byte alignment for full cache lines and aligned vector loads.
          void* p = nullptr;
          return posix_memalign(&p, 64, n) == 0 ? p : nullptr;
        },
        [](void* p) { std::free(p); }, host_free_bytes);
    start_queue();
  }
  ~CpuDevice() override { stop_queue(); }  // before pool_ goes

  DeviceInfo info() const override {
    DeviceInfo d;
    d.id = id();
    d.kind = "cpu";
    std::ostringstream name;
    name << "CPU queue " << id().substr(4) << " (" << pool_.size() << " threads)";
    d.name = name.str();
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    d.memory_bytes = static_cast<double>(pages) * static_cast<double>(size);
    return d;
  }

  void upload(const StoragePtr& dst, const void* src, size_t bytes) override {
    if (dst.use_count() == 1) {
      // Only the caller's handle holds the storage (a fresh tensor): no queued task can touch
      // it, and none can start to, so copy now on the caller's thread.
      std::memcpy(dst->ptr, src, bytes);
      return;
    }
    // Queued work may still read or write it (loading into a live parameter): stage the bytes
    // now and copy in queue order.
    auto staging = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + bytes);
    enqueue([dst, staging, bytes] { std::memcpy(dst->ptr, staging->data(), bytes); });
  }
  void download(const StoragePtr& src, void* dst, size_t bytes) override {
    auto done = std::make_shared<std::promise<void>>();
    auto f = done->get_future();
    enqueue([src, dst, bytes, done] {
      std::memcpy(dst, src->ptr, bytes);
      done->set_value();
    });
    f.wait();
  }
  void copy_within(const StoragePtr& dst, const StoragePtr& src, size_t bytes) override {
    enqueue([dst, src, bytes] { std::memcpy(dst->ptr, src->ptr, bytes); });
  }
  ThreadPool* pool() override { return &pool_; }
  void queue_active(bool active) override { pool_.set_active(active); }

 private:
  ThreadPool pool_;
};

std::mutex g_devices_mu;
int g_cuda_real = 0;
std::vector<Device*> g_cpu;   // never freed: queue threads live as long as the process
std::vector<Device*> g_cuda;
bool g_cuda_probed = false;
int g_cuda_count = 0;
std::string g_cuda_why;

void probe_cuda_locked() {
  if (g_cuda_probed) return;
  g_cuda_probed = true;
  int real = cuda_device_count(&g_cuda_why);
  if (real <= 0) {
    g_cuda_count = 0;
    return;
  }
  g_cuda_count = env_int("CONVNET_VIRTUAL_GPUS", real, 1, 64);
  g_cuda.assign(g_cuda_count, nullptr);
  g_cuda_real = real;
}

}  // namespace

int cpu_device_count() { return env_int("CONVNET_CPU_DEVICES", 2, 1, 64); }

static bool parse_index(const std::string& s, int* out) {
  if (s.empty() || s.size() > 6) return false;
  for (char c : s) if (c < '0' || c > '9') return false;
  if (s.size() > 1 && s[0] == '0') return false;
  *out = std::stoi(s);
  return true;
}

Device* get_device(const std::string& raw) {
  std::string id = raw == "cpu" ? "cpu:0" : raw == "cuda" ? "cuda:0" : raw;
  std::lock_guard<std::mutex> lock(g_devices_mu);
  int index = -1;
  if (id.rfind("cpu:", 0) == 0 && parse_index(id.substr(4), &index)) {
    int count = cpu_device_count();
    if (index >= count) {
      fail(ErrorKind::Device, "device: no such device '" + raw + "': there are " +
                                  std::to_string(count) + " CPU devices (cpu:0 to cpu:" +
                                  std::to_string(count - 1) + "; CONVNET_CPU_DEVICES sets more)");
    }
    if (g_cpu.size() < static_cast<size_t>(count)) g_cpu.resize(count, nullptr);
    if (!g_cpu[index]) g_cpu[index] = new CpuDevice(index);
    return g_cpu[index];
  }
  if (id.rfind("cuda:", 0) == 0 && parse_index(id.substr(5), &index)) {
    probe_cuda_locked();
    if (g_cuda_count == 0) {
      fail(ErrorKind::Device, "device: cannot use '" + raw + "': " + g_cuda_why);
    }
    if (index >= g_cuda_count) {
      fail(ErrorKind::Device, "device: no such device '" + raw + "': there are " +
                                  std::to_string(g_cuda_count) + " CUDA devices");
    }
    if (!g_cuda[index]) g_cuda[index] = make_cuda_device(index, index % g_cuda_real);
    return g_cuda[index];
  }
  fail(ErrorKind::Device, "device: unknown device id '" + raw +
                              "': expected 'cpu', 'cpu:N', 'cuda' or 'cuda:N'");
}

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  int cpus = cpu_device_count();
  for (int i = 0; i < cpus; ++i) out.push_back(get_device("cpu:" + std::to_string(i))->info());
  int cudas;
  {
    std::lock_guard<std::mutex> lock(g_devices_mu);
    probe_cuda_locked();
    cudas = g_cuda_count;
  }
  for (int i = 0; i < cudas; ++i) out.push_back(get_device("cuda:" + std::to_string(i))->info());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Copies between devices

bool CopyMeet::source_arrives() {
  std::lock_guard<std::mutex> lock(mu_);
  return dst_waiting_;
}

void CopyMeet::staged() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    staged_ = true;
  }
  cv_.notify_all();
}

void CopyMeet::done() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
}

void CopyMeet::fail(std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = e;
  }
  cv_.notify_all();
}

CopyMeet::Path CopyMeet::destination_arrives() {
  std::unique_lock<std::mutex> lock(mu_);
  dst_waiting_ = true;
  cv_.wait(lock, [this] { return staged_ || done_ || error_; });
  if (error_) std::rethrow_exception(error_);
  return done_ ? Path::Direct : Path::Staged;
}

CopyMeet::Path destination_arrives(CopyMeet& meet, const std::string& where) {
  try {
    return meet.destination_arrives();
  } catch (const Error& e) {
    Error wrapped(e.kind, where + ": the source side failed: " + e.what());
    wrapped.cuda_name = e.cuda_name;
    wrapped.device = e.device;
    wrapped.bytes_asked = e.bytes_asked;
    wrapped.bytes_free = e.bytes_free;
    throw wrapped;
  } catch (const std::exception& e) {
    fail(ErrorKind::Device, where + ": the source side failed: " + e.what());
  }
}

namespace {

// Enqueues both halves under one lock, so every queue meets the halves of all copies in one
// global order (see CopyMeet: that is what rules out a cycle of waiting queues).
std::mutex& g_copy_mu = *new std::mutex;

// A CPU-to-CPU copy. The source half copies straight into dst when the destination queue is
// already waiting at its half (dst is free: that queue ran everything queued before the copy),
// and otherwise snapshots src into host memory, which the destination half copies from.
void cpu_copy_storage(const StoragePtr& dst, const StoragePtr& src, size_t bytes) {
  auto meet = std::make_shared<CopyMeet>();
  auto snapshot = std::make_shared<std::vector<unsigned char>>();
  Device* from = src->device;
  Device* to = dst->device;
  from->enqueue(
      [meet, snapshot, dst, src, bytes] {
        try {
          if (meet->source_arrives()) {
            std::memcpy(dst->ptr, src->ptr, bytes);
            meet->done();
          } else {
            const auto* p = static_cast<const unsigned char*>(src->ptr);
            try {
              snapshot->assign(p, p + bytes);
            } catch (const std::bad_alloc&) {
              Error e(ErrorKind::OutOfMemory, "copy from " + src->device->id() + " to " +
                                                  dst->device->id() + ": no host memory for a " +
                                                  std::to_string(bytes) + "-byte snapshot of the source");
              e.device = src->device->id();
              e.bytes_asked = static_cast<double>(bytes);
              throw e;
            }
            meet->staged();
          }
        } catch (...) {
          meet->fail(std::current_exception());
          throw;
        }
      },
      "copy_out");
  to->enqueue(
      [meet, snapshot, dst, bytes, from, to] {
        CopyMeet::Path path =
            destination_arrives(*meet, "copy from " + from->id() + " to " + to->id());
        if (path == CopyMeet::Path::Staged) {
          std::memcpy(dst->ptr, snapshot->data(), bytes);
          snapshot->clear();
          snapshot->shrink_to_fit();
        }
      },
      "copy_in");
}

}  // namespace

void copy_storage(const StoragePtr& dst, const StoragePtr& src, size_t bytes) {
  Device* from = src->device;
  Device* to = dst->device;
  if (from == to) {
    from->copy_within(dst, src, bytes);
    return;
  }
  std::lock_guard<std::mutex> lock(g_copy_mu);
  if (from->kind() == DeviceKind::Cpu && to->kind() == DeviceKind::Cpu) {
    cpu_copy_storage(dst, src, bytes);
  } else {
    cuda_copy_storage(dst, src, bytes);
  }
}

}  // namespace cn

namespace cn {
BuildFacts build_facts() {
  BuildFacts f;
  cuda_build_facts(&f);
  return f;
}
}  // namespace cn
