#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>

namespace cn {

namespace {

// The cores that the pools of all CPU queues share. A parallel_for takes one token for its
// calling thread and as many more as it has helpers to wake and tokens are left; it gives them
// back when it returns. Two queues that split ops at the same time (two towers on cpu:0 and
// cpu:1) therefore share the cores instead of each waking a full pool.
std::mutex g_budget_mu;
int g_budget_total = 0;          // max(cores, the largest pool asked for)
std::atomic<int> g_tokens{0};    // cores not in use by a parallel_for

void grow_budget(int size) {
  std::lock_guard<std::mutex> lock(g_budget_mu);
  if (g_budget_total == 0) {
    g_budget_total = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    g_tokens.fetch_add(g_budget_total);
  }
  if (size > g_budget_total) {
    g_tokens.fetch_add(size - g_budget_total);
    g_budget_total = size;
  }
}

// Takes up to `want` tokens, none if none are left; returns how many.
int take_tokens(int want) {
  int got = 0;
  int cur = g_tokens.load();
  while (got < want && cur > 0) {
    if (g_tokens.compare_exchange_weak(cur, cur - 1)) {
      ++got;
      cur = g_tokens.load();
    }
  }
  return got;
}

}  // namespace

// How long a helper (or the caller) polls before it sleeps; CONVNET_SPIN_US, 0 turns polling off.
static int64_t spin_ns() {
  static const int64_t ns = [] {
    const char* e = std::getenv("CONVNET_SPIN_US");
    if (e && *e) {
      char* end = nullptr;
      long v = std::strtol(e, &end, 10);
      if (*end == '\0' && v >= 0 && v <= 100000) return int64_t(v) * 1000;
    }
    return int64_t(50) * 1000;
  }();
  return ns;
}

static inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

template <class Pred>
bool ThreadPool::spin_until(const Pred& pred) const {
  const int64_t limit = spin_ns();
  if (limit == 0) return pred();
  // A few hundred pauses first (about a microsecond): most waits inside an op end here. Then
  // yield between polls, so a thread that wants this core (the JS thread, another queue) gets it.
  for (int i = 0; i < 256; ++i) {
    if (pred()) return true;
    cpu_relax();
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    if (pred()) return true;
    if (!active_.load(std::memory_order_relaxed) || stop_.load(std::memory_order_relaxed))
      return pred();
    if (std::chrono::steady_clock::now() - t0 > std::chrono::nanoseconds(limit)) return pred();
    std::this_thread::yield();
  }
}

ThreadPool::ThreadPool(int threads) : size_(threads < 1 ? 1 : threads) {
  grow_budget(size_);
  for (int w = 1; w < size_; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

static void range_of(int64_t n, int parts, int part, int64_t* begin, int64_t* end) {
  int64_t base = n / parts, rem = n % parts;
  *begin = part * base + (part < rem ? part : rem);
  *end = *begin + base + (part < rem ? 1 : 0);
}

void ThreadPool::parallel_for(int64_t n, const RangeFn& fn) {
  const int want = static_cast<int>(n < size_ ? n : size_);
  // This thread runs anyway: its token may take the count below zero. Helpers only from what
  // is left.
  g_tokens.fetch_sub(1);
  const int workers = 1 + take_tokens(want - 1);
  struct Give {
    int n;
    ~Give() { g_tokens.fetch_add(n); }
  } give{workers};
  if (workers == 1) {
    fn(0, n, 0);
    return;
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    job_workers_ = workers;
    pending_.store(workers - 1);
    error_ = nullptr;
    generation_.fetch_add(1);
    wake = sleepers_ > 0;
  }
  // Polling helpers see the new generation themselves; only sleeping ones need the syscall.
  if (wake) start_cv_.notify_all();
  std::exception_ptr mine;
  try {
    int64_t b, e;
    range_of(n, workers, 0, &b, &e);
    fn(b, e, 0);
  } catch (...) {
    mine = std::current_exception();
  }
  if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_sleeping_ = true;
    done_cv_.wait(lock, [this] { return pending_.load() == 0; });
    caller_sleeping_ = false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  job_ = nullptr;
  std::exception_ptr err = mine ? mine : error_;
  if (err) std::rethrow_exception(err);
}

void ThreadPool::worker_loop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
    std::unique_lock<std::mutex> lock(mu_);
    if (!stop_ && generation_.load() == seen) {
      ++sleepers_;
      start_cv_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      --sleepers_;
    }
    if (stop_) return;
    seen = generation_.load();
    if (worker >= job_workers_) continue;
    const RangeFn* fn = job_;
    int64_t n = job_n_;
    int workers = job_workers_;
    lock.unlock();
    try {
      int64_t b, e;
      range_of(n, workers, worker, &b, &e);
      (*fn)(b, e, worker);
    } catch (...) {
      std::lock_guard<std::mutex> g(mu_);
      if (!error_) error_ = std::current_exception();
    }
    // The last helper out wakes the caller if it went to sleep. The lock orders this against the
    // caller's check of pending_, so the wake-up cannot be lost.
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> g(mu_);
      if (caller_sleeping_) done_cv_.notify_all();
    }
  }
}

}  // namespace cn
