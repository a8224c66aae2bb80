#include "core/parallel.h"

namespace cn {

ThreadPool::ThreadPool(int threads) : size_(threads < 1 ? 1 : threads) {
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
  int workers = static_cast<int>(n < size_ ? n : size_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    job_workers_ = workers;
    pending_ = workers - 1;
    error_ = nullptr;
    ++generation_;
  }
  start_cv_.notify_all();
  std::exception_ptr mine;
  try {
    int64_t b, e;
    range_of(n, workers, 0, &b, &e);
    fn(b, e, 0);
  } catch (...) {
    mine = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return pending_ == 0; });
  job_ = nullptr;
  std::exception_ptr err = mine ? mine : error_;
  lock.unlock();
  if (err) std::rethrow_exception(err);
}

void ThreadPool::worker_loop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lock(mu_);
    start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
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
    lock.lock();
    if (--pending_ == 0) done_cv_.notify_all();
  }
}

}  // namespace cn
