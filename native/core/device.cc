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
  if (ptr) device->allocator().release(ptr, rounded);
}

Device::~Device() {
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
  return std::make_shared<Storage>(this, p, bytes, rounded);
}

void Device::enqueue(std::function<void()> task, const char* label) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(Task{std::move(task), label});
  }
  cv_.notify_one();
}

namespace {
std::atomic<bool> g_tracing{false};
std::mutex g_trace_mu;
std::vector<TraceEvent> g_trace;
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
      cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
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
  ~CpuDevice() override = default;

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
  void copy_in_now(const StoragePtr& dst, const StoragePtr& src, size_t bytes) override {
    if (src->device->kind() == DeviceKind::Cpu) {
      std::memcpy(dst->ptr, src->ptr, bytes);
    } else {
      cuda_memcpy_blocking(dst->ptr, src->ptr, bytes);
    }
  }
  ThreadPool* pool() override { return &pool_; }

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

namespace {
std::mutex g_copy_mu;  // keeps the two halves of each cross-device copy in one global order
}

void copy_storage(const StoragePtr& dst, const StoragePtr& src, size_t bytes) {
  Device* from = src->device;
  Device* to = dst->device;
  if (from == to) {
    from->copy_within(dst, src, bytes);
    return;
  }
  // The source queue reaches the copy, drains its GPU work and holds still; the destination
  // queue then copies and lets it go. Holding the source still keeps later in-place work there
  // (an SGD step, say) from overwriting src mid-copy; the destination writes dst in its own
  // order, so a reused block is never written while older work there still reads it. The two
  // halves of every copy are enqueued under one lock, so all queues meet the pairs in the same
  // order and cannot wait on each other in a cycle.
  auto ready = std::make_shared<std::promise<void>>();
  auto done = std::make_shared<std::promise<void>>();
  std::shared_future<void> ready_f = ready->get_future().share();
  std::shared_future<void> done_f = done->get_future().share();
  std::lock_guard<std::mutex> lock(g_copy_mu);
  from->enqueue([from, ready, done_f] {
    try {
      from->drain_on_queue();
    } catch (...) {
      ready->set_exception(std::current_exception());
      throw;
    }
    ready->set_value();
    done_f.wait();
  });
  to->enqueue([to, dst, src, bytes, ready_f, done] {
    try {
      ready_f.get();
      to->copy_in_now(dst, src, bytes);
    } catch (...) {
      done->set_value();
      throw;
    }
    done->set_value();
  });
}

}  // namespace cn

namespace cn {
BuildFacts build_facts() {
  BuildFacts f;
  cuda_build_facts(&f);
  return f;
}
}  // namespace cn
