#include "core/allocator.h"

#include <cstdint>
#include <sstream>

#include "core/errors.h"

namespace cn {

CachingAllocator::CachingAllocator(std::string device, std::function<void*(size_t)> raw_alloc,
                                   std::function<void(void*)> raw_free,
                                   std::function<size_t()> free_bytes)
    : device_(std::move(device)),
      raw_alloc_(std::move(raw_alloc)),
      raw_free_(std::move(raw_free)),
      free_bytes_(std::move(free_bytes)) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

size_t CachingAllocator::round_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kLimit = size_t(1) << 20;
  if (bytes == 0) bytes = 1;
  if (bytes < kLimit) return (bytes + kSmall - 1) / kSmall * kSmall;
  if (bytes > SIZE_MAX - kLarge) return bytes;  // unsatisfiable anyway; keep it from wrapping
  return (bytes + kLarge - 1) / kLarge * kLarge;
}

void* CachingAllocator::allocate(size_t bytes, size_t* rounded) {
  size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  if (limit_ != SIZE_MAX && (size > limit_ || stats_.in_use > limit_ - size)) {
    size_t avail = stats_.in_use < limit_ ? limit_ - stats_.in_use : 0;
    std::ostringstream msg;
    msg << "out of memory on " << device_ << ": asked for " << bytes << " bytes, " << avail
        << " bytes free under its limit of " << limit_ << " bytes";
    Error e(ErrorKind::OutOfMemory, msg.str());
    e.device = device_;
    e.bytes_asked = static_cast<double>(bytes);
    e.bytes_free = static_cast<double>(avail);
    stats_.in_use_at_failure = stats_.in_use;
    throw e;
  }
  // Reuse a cached block of exactly this rounded size; small sizes could take a larger block,
  // but exact reuse keeps accounting honest and a training loop asks for the same sizes.
  auto it = free_.find(size);
  void* p = nullptr;
  if (it != free_.end()) {
    p = it->second;
    free_.erase(it);
    stats_.cached -= size;
  } else {
    p = raw_alloc_(size);
    if (!p && !free_.empty()) {
      for (auto& kv : free_) raw_free_(kv.second);
      free_.clear();
      stats_.cached = 0;
      p = raw_alloc_(size);
    }
    if (!p) {
      size_t avail = free_bytes_();
      std::ostringstream msg;
      msg << "out of memory on " << device_ << ": asked for " << bytes << " bytes, " << avail
          << " bytes free";
      Error e(ErrorKind::OutOfMemory, msg.str());
      e.device = device_;
      e.bytes_asked = static_cast<double>(bytes);
      e.bytes_free = static_cast<double>(avail);
      stats_.in_use_at_failure = stats_.in_use;
      throw e;
    }
  }
  stats_.in_use += size;
  stats_.blocks += 1;
  if (stats_.in_use > stats_.peak) stats_.peak = stats_.in_use;
  *rounded = size;
  return p;
}

void CachingAllocator::release(void* ptr, size_t rounded) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.in_use -= rounded;
  stats_.blocks -= 1;
  stats_.cached += rounded;
  free_.emplace(rounded, ptr);
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& kv : free_) raw_free_(kv.second);
  free_.clear();
  stats_.cached = 0;
}

void CachingAllocator::set_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  limit_ = bytes;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak = stats_.in_use;
}

AllocatorStats CachingAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace cn
