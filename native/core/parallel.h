// A fixed pool of worker threads that one device queue uses to split a single op.
//
// The device's queue thread calls parallel_for; it takes part as worker 0, so a pool of size T
// owns T-1 extra threads. Work is split statically into `size()` contiguous ranges, so a kernel
// can keep per-worker scratch indexed by `worker` without locks. Calls do not nest: a kernel that
// is already inside parallel_for passes `nullptr` (serial) to the kernels it calls.
//
// The pools of all CPU queues share the machine's cores: a call wakes only as many helpers as
// there are cores that no other parallel_for is using, so two queues busy at once (two towers on
// cpu:0 and cpu:1) split the cores between them instead of oversubscribing them. How many
// workers ran therefore depends on timing, and every kernel's result must not depend on it:
// each output element is computed by one worker in a fixed order, and reductions across a
// split use a fixed number of parts (see conv2d's filter gradient).
//
// Waking a sleeping thread costs microseconds, and tens of them when its core has gone idle, which
// is as long as a whole small op. So a helper that finishes its range does not sleep at once: while
// its queue is active (set_active, which the CPU device calls as its queue thread starts and stops
// working) it keeps polling for the next job for up to CONVNET_SPIN_US microseconds (default 50),
// yielding its core to any other runnable thread as it polls; then it sleeps. The caller waits for
// the helpers the same way. An idle queue's helpers sleep at once.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cn {

class ThreadPool {
 public:
  using RangeFn = std::function<void(int64_t begin, int64_t end, int worker)>;

  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Whether the owner expects more jobs soon (its queue has work): helpers poll for the next job
  // for a short while before sleeping only while this is true. True until the owner says otherwise.
  void set_active(bool active) { active_.store(active, std::memory_order_relaxed); }

  // Runs fn over [0, n) split into at most size() contiguous ranges, one per worker (fewer when
  // other pools hold cores); returns when every range is done. Exceptions thrown by fn are
  // rethrown here (the first one wins).
  void parallel_for(int64_t n, const RangeFn& fn);

 private:
  void worker_loop(int worker);
  // Polls until pred() holds, or the spin time is up, or the owner goes idle; returns pred().
  template <class Pred>
  bool spin_until(const Pred& pred) const;

  int size_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const RangeFn* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_workers_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  int sleepers_ = 0;           // helpers waiting on start_cv_ (guarded by mu_)
  bool caller_sleeping_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<bool> active_{true};
  std::exception_ptr error_;
};

// Splits [0, n) among pool workers, or runs it inline when pool is null (serial).
inline void parallel_for(ThreadPool* pool, int64_t n, const ThreadPool::RangeFn& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->size() == 1 || n == 1) {
    fn(0, n, 0);
  } else {
    pool->parallel_for(n, fn);
  }
}

inline int pool_size(const ThreadPool* pool) { return pool ? pool->size() : 1; }

}  // namespace cn
