// A caching allocator, one per device. Freed blocks go to a free list keyed by their rounded
// size and are handed out again before the device is asked for more; when the device says no,
// the cache is released and the request tried once more. Thread-safe: the JS thread allocates,
// queue threads may release.
//
// Rounding: requests below 1 MiB round up to 512 bytes, larger ones to 2 MiB, so the lists stay
// short and blocks are reused across nearby sizes.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace cn {

struct AllocatorStats {
  size_t in_use = 0;    // bytes of blocks handed out and not yet released
  size_t cached = 0;    // bytes held in the free lists
  size_t peak = 0;      // highest in_use seen
  size_t blocks = 0;    // blocks handed out
  size_t in_use_at_failure = 0;  // in_use when an allocation was last refused (out of memory)
};

class CachingAllocator {
 public:
  // raw_alloc returns nullptr when the device has no room; raw_free returns a block.
  CachingAllocator(std::string device, std::function<void*(size_t)> raw_alloc,
                   std::function<void(void*)> raw_free, std::function<size_t()> free_bytes);
  ~CachingAllocator();

  // Throws Error(OutOfMemory) naming the device, the bytes asked and the bytes free.
  void* allocate(size_t bytes, size_t* rounded);
  void release(void* ptr, size_t rounded);
  void empty_cache();
  AllocatorStats stats();
  // Starts the peak over from the bytes in use now.
  void reset_peak();
  // Refuses (OutOfMemory) any allocation that would take the bytes in use past `bytes`, as a
  // device of that size would; SIZE_MAX (the default) means no limit but the device's own.
  void set_limit(size_t bytes);

  static size_t round_size(size_t bytes);

 private:
  std::string device_;
  std::function<void*(size_t)> raw_alloc_;
  std::function<void(void*)> raw_free_;
  std::function<size_t()> free_bytes_;
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  AllocatorStats stats_;
  size_t limit_ = SIZE_MAX;
};

}  // namespace cn
