// Self-test of the CPU thread pool (parallel.h): every index runs exactly once, an exception in
// any worker reaches the caller, the pool survives back-to-back jobs with and without polling
// (CONVNET_SPIN_US, set_active), two pools at once share the cores, and a pool can be destroyed
// while its helpers poll. Run it under ThreadSanitizer too (scripts/native-selftest.sh does).
//
//   g++ -O2 -std=c++17 -pthread -Inative native/core/parallel.cc native/core/test_parallel.cc
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/parallel.h"

namespace {

int g_failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++g_failures;
  }
}

// Each index of [0, n) is visited once, for many jobs of varying size back to back.
void visits_every_index_once(cn::ThreadPool& pool, const char* name) {
  for (int job = 0; job < 2000; ++job) {
    const int64_t n = 1 + (job * 37) % 97;
    std::vector<std::atomic<int>> hits(n);
    for (auto& h : hits) h = 0;
    cn::parallel_for(&pool, n, [&](int64_t b, int64_t e, int worker) {
      if (worker < 0 || worker >= pool.size()) throw std::runtime_error("worker out of range");
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i)
      if (hits[i] != 1) {
        check(false, std::string(name) + ": job " + std::to_string(job) + " index " +
                         std::to_string(i) + " ran " + std::to_string(hits[i].load()) + " times");
        return;
      }
  }
}

// An exception thrown by the caller's range or by a helper's range reaches the caller, and the
// pool runs the next job normally.
void exceptions_reach_the_caller(cn::ThreadPool& pool) {
  for (int thrower = 0; thrower < pool.size(); ++thrower) {
    bool caught = false;
    std::atomic<bool> thrown{false};
    try {
      cn::parallel_for(&pool, pool.size(), [&](int64_t, int64_t, int worker) {
        if (worker == thrower) {
          thrown = true;
          throw std::runtime_error("boom " + std::to_string(worker));
        }
      });
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "boom " + std::to_string(thrower);
    }
    // With another pool holding cores, fewer workers may run and worker `thrower` may not exist;
    // when it did run and throw, the caller must have caught exactly that.
    check(caught == thrown.load(),
          "worker " + std::to_string(thrower) + "'s exception reaches the caller");
    std::atomic<int64_t> sum{0};
    cn::parallel_for(&pool, 100, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
    check(sum == 4950, "the job after an exception sums to 4950");
  }
  bool caught = false;
  try {
    cn::parallel_for(&pool, 4, [&](int64_t, int64_t, int worker) {
      if (worker == 0) throw std::runtime_error("caller");
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "caller";
  }
  check(caught, "an exception in the caller's own range is rethrown");
}

// Jobs separated by idle gaps longer than the polling time: the helpers have gone to sleep and
// must be woken.
void wakes_sleeping_helpers(cn::ThreadPool& pool) {
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(i % 2 ? 200 : 5));
    std::atomic<int> ran{0};
    cn::parallel_for(&pool, pool.size(), [&](int64_t b, int64_t e, int) { ran += int(e - b); });
    check(ran == pool.size(), "every index of a job after an idle gap ran");
  }
}

}  // namespace

int main() {
  {
    cn::ThreadPool pool(4);
    visits_every_index_once(pool, "active pool");
    exceptions_reach_the_caller(pool);
    wakes_sleeping_helpers(pool);
    pool.set_active(false);  // an idle owner: helpers sleep at once
    visits_every_index_once(pool, "idle pool");
    wakes_sleeping_helpers(pool);
    pool.set_active(true);
  }
  {
    // Two pools, as two CPU queues, each driven by its own thread at once, toggling activity.
    cn::ThreadPool a(3), b(3);
    std::thread ta([&] {
      visits_every_index_once(a, "pool a beside pool b");
      a.set_active(false);
      visits_every_index_once(a, "pool a, idle");
    });
    std::thread tb([&] {
      visits_every_index_once(b, "pool b beside pool a");
      exceptions_reach_the_caller(b);
    });
    ta.join();
    tb.join();
  }
  {
    // Destroyed right after a job, while the helpers are still polling.
    for (int i = 0; i < 50; ++i) {
      auto pool = std::make_unique<cn::ThreadPool>(3);
      std::atomic<int> ran{0};
      cn::parallel_for(pool.get(), 3, [&](int64_t b, int64_t e, int) { ran += int(e - b); });
      pool.reset();
      check(ran == 3, "a pool destroyed while its helpers poll ran its last job");
    }
  }
  const char* spin = std::getenv("CONVNET_SPIN_US");
  if (g_failures) {
    std::fprintf(stderr, "test_parallel: %d failures (CONVNET_SPIN_US=%s)\n", g_failures,
                 spin ? spin : "default");
    return 1;
  }
  std::printf("test_parallel: all passed (CONVNET_SPIN_US=%s)\n", spin ? spin : "default");
  return 0;
}
