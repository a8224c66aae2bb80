// The CUDA emulation's engine: the runtime API on host memory, the launch queue, and the block
// scheduler that runs each thread of a block as a fiber. See cuda_runtime.h for the model.
#include "cuda_runtime.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "emu_control.h"

#if defined(__SANITIZE_ADDRESS__)
#define CN_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CN_EMU_ASAN 1
#endif
#endif
#ifdef CN_EMU_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace cn_emu {

thread_local uint3 tl_thread, tl_block;
thread_local dim3 tl_block_dim, tl_grid_dim;

namespace {

constexpr size_t kStackBytes = size_t(256) << 10;  // per fiber, plus a guard page below
constexpr size_t kStaticSharedLimit = size_t(48) << 10;
constexpr size_t kDeviceBytes = size_t(8) << 30;  // what cudaMemGetInfo reports as total

struct Fiber {
  ucontext_t ctx;
  char* stack = nullptr;
  bool done = false;
  const uint64_t* wait_gen = nullptr;  // runnable again once *wait_gen != wait_seen
  uint64_t wait_seen = 0;
  const char* waiting_at = nullptr;
  uint3 tid{0, 0, 0};
  unsigned linear = 0;
};

struct Barrier {
  unsigned expected = 0, arrived = 0;
  uint64_t gen = 0;
};

struct Warp {
  unsigned live = 0;     // lanes that exist and have not exited
  unsigned arrived = 0;  // lanes waiting in the collective under way
  unsigned mask = 0;
  WarpOp op = WarpOp::Sync;
  int width = 32;
  uint64_t gen = 0;
  uint64_t in[32] = {};
  int arg[32] = {};
  uint64_t out[32] = {};  // per lane, the result of the last collective it took part in
};

struct SharedVar {
  const void* site;
  void* ptr;
  size_t bytes;
  const char* name;
};

struct Grid {
  const char* kernel;
  const char* where;
  dim3 grid, block;
  size_t smem;
  unsigned nthreads;
  const std::function<void()>* body;
  uint3 block_idx{0, 0, 0};
  Barrier bar;
  unsigned live = 0;
  std::vector<Warp> warps;
  std::vector<SharedVar> shared;
  size_t shared_bytes = 0;
  void* dyn_shared = nullptr;
};

std::vector<Fiber*> g_pool;
ucontext_t g_sched_ctx;
Fiber* g_cur = nullptr;
Grid* g_grid = nullptr;
#ifdef CN_EMU_ASAN
const void* g_sched_bottom = nullptr;
size_t g_sched_size = 0;
#endif

Schedule g_schedule = Schedule::Forward;
std::mt19937_64 g_rng(1);
Stats g_stats;

// Never destroyed: queue threads of a process that exits with work queued may still call in.
std::recursive_mutex& g_mu = *new std::recursive_mutex;  // streams, events, allocations, devices
thread_local cudaError_t g_last_error = cudaSuccess;
std::map<const void*, size_t>& g_allocs = *new std::map<const void*, size_t>;
std::map<const void*, size_t>& g_host_allocs = *new std::map<const void*, size_t>;

// Streams and events. A stream is a FIFO of items; an item is work, an event record, or a
// wait for an event record (the one most recent when cudaStreamWaitEvent was called).
struct EventState {
  int device = 0;
  uint64_t recorded = 0;   // records issued
  uint64_t completed = 0;  // the highest record a stream has reached
  double ms = 0;           // host time (steady clock, ms) when the last record was reached
};
struct Item {
  enum Kind { Work, Record, Wait } kind = Work;
  std::function<void()> work;
  std::shared_ptr<EventState> event;
  uint64_t gen = 0;
  uint64_t seq = 0;  // submission order over all streams
};
struct StreamState {
  int device = 0;
  std::deque<Item> items;
};
std::map<cudaStream_t, StreamState>& g_streams = *new std::map<cudaStream_t, StreamState>;  // nullptr: the default stream of every device
uint64_t g_seq = 0;
StreamOrder g_order = StreamOrder::NewestFirst;
thread_local int tl_device = 0;
int g_device_count = 1;
std::map<std::pair<int, int>, bool>& g_peer_capable = *new std::map<std::pair<int, int>, bool>;
std::map<std::pair<int, int>, bool>& g_peer_enabled = *new std::map<std::pair<int, int>, bool>;
int g_fail_next_copy = 0;

StreamState& stream_state(cudaStream_t s) {
  auto it = g_streams.find(s);
  if (it == g_streams.end()) it = g_streams.emplace(s, StreamState{tl_device, {}}).first;
  return it->second;
}

void push(cudaStream_t s, Item it) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  it.seq = ++g_seq;
  stream_state(s).items.push_back(std::move(it));
}

void push_work(cudaStream_t s, std::function<void()> f) {
  Item it;
  it.work = std::move(f);
  push(s, std::move(it));
}

struct TunableEntry {
  int64_t def = 0;
  std::vector<std::function<void(int64_t)>> setters;
};
std::map<std::string, TunableEntry>& tunables() {
  static std::map<std::string, TunableEntry> t;
  return t;
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::All: return "__all_sync";
  }
  return "?";
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// ---- Fibers -------------------------------------------------------------------------------

Fiber* new_fiber() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  if (m == MAP_FAILED) {
    std::fprintf(stderr, "cuda-emu: cannot map a fiber stack\n");
    std::abort();
  }
  mprotect(m, page, PROT_NONE);  // guard: a stack overflow faults instead of corrupting
  Fiber* f = new Fiber;
  f->stack = static_cast<char*>(m) + page;
  return f;
}

void fiber_exit_bookkeeping();

void fiber_entry() {
#ifdef CN_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_sched_bottom, &g_sched_size);
#endif
  (*g_grid->body)();
  fiber_exit_bookkeeping();
  g_cur->done = true;
#ifdef CN_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, g_sched_bottom, g_sched_size);
#endif
  setcontext(&g_sched_ctx);
  std::abort();  // unreachable
}

void resume(Fiber* f) {
  g_cur = f;
  tl_thread = f->tid;
#ifdef CN_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f->stack, kStackBytes);
#endif
  swapcontext(&g_sched_ctx, &f->ctx);
#ifdef CN_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  g_cur = nullptr;
}

// On a fiber: park until *gen moves past its current value.
void wait_on(const uint64_t* gen, const char* what) {
  Fiber* f = g_cur;
  f->wait_gen = gen;
  f->wait_seen = *gen;
  f->waiting_at = what;
#ifdef CN_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, g_sched_bottom, g_sched_size);
#endif
  swapcontext(&f->ctx, &g_sched_ctx);
#ifdef CN_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, &g_sched_bottom, &g_sched_size);
#endif
}

Fiber* current(const char* what) {
  if (!g_cur || !g_grid) fault(std::string(what) + " called outside a kernel");
  return g_cur;
}

void async_thread_exit(unsigned linear);

void fiber_exit_bookkeeping() {
  Grid& g = *g_grid;
  Fiber* f = g_cur;
  async_thread_exit(f->linear);
  --g.live;
  --g.bar.expected;
  if (g.bar.arrived > 0 && g.bar.arrived == g.bar.expected) {
    g.bar.arrived = 0;
    ++g.bar.gen;
    ++g_stats.barriers;
  }
  Warp& w = g.warps[f->linear / 32];
  const unsigned bit = 1u << (f->linear % 32);
  w.live &= ~bit;
  if (w.arrived != 0 && (w.mask & bit))
    fault(fmt("thread exited while lanes 0x%08x of its warp wait for it in %s (mask 0x%08x)",
              w.arrived, op_name(w.op), w.mask));
}

void free_block_shared(Grid& g) {
  for (SharedVar& s : g.shared) std::free(s.ptr);
  g.shared.clear();
  g.shared_bytes = 0;
  std::free(g.dyn_shared);
  g.dyn_shared = nullptr;
}

void run_block(Grid& g, uint3 bidx) {
  const unsigned n = g.nthreads;
  g.block_idx = bidx;
  tl_block = bidx;
  tl_block_dim = g.block;
  tl_grid_dim = g.grid;
  while (g_pool.size() < n) g_pool.push_back(new_fiber());
  for (unsigned i = 0; i < n; ++i) {
    Fiber* f = g_pool[i];
    f->done = false;
    f->wait_gen = nullptr;
    f->waiting_at = nullptr;
    f->linear = i;
    f->tid = {i % g.block.x, (i / g.block.x) % g.block.y, i / (g.block.x * g.block.y)};
    getcontext(&f->ctx);
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = kStackBytes;
    f->ctx.uc_link = nullptr;
    makecontext(&f->ctx, fiber_entry, 0);
  }
  g.bar = Barrier{n, 0, 0};
  g.live = n;
  g.warps.assign((n + 31) / 32, Warp{});
  for (unsigned w = 0; w < g.warps.size(); ++w) {
    const unsigned lanes = std::min(32u, n - w * 32);
    g.warps[w].live = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
  }
  std::vector<unsigned> order(n);
  for (unsigned i = 0; i < n; ++i) order[i] = g_schedule == Schedule::Reverse ? n - 1 - i : i;
  g_stats.threads += n;

  while (g.live > 0) {
    if (g_schedule == Schedule::Shuffle) std::shuffle(order.begin(), order.end(), g_rng);
    bool ran = false;
    for (unsigned i : order) {
      Fiber* f = g_pool[i];
      if (f->done) continue;
      if (f->wait_gen && *f->wait_gen == f->wait_seen) continue;
      f->wait_gen = nullptr;
      f->waiting_at = nullptr;
      resume(f);
      ran = true;
    }
    if (!ran) {
      // Every live thread waits and none can be released: the GPU would hang.
      std::map<std::string, unsigned> at;
      for (unsigned i = 0; i < n; ++i)
        if (!g_pool[i]->done) ++at[g_pool[i]->waiting_at ? g_pool[i]->waiting_at : "?"];
      std::string what = "deadlock: every live thread waits:";
      for (auto& kv : at) what += fmt(" %u at %s;", kv.second, kv.first.c_str());
      fault(what);
    }
  }
  free_block_shared(g);
  ++g_stats.blocks;
}

void run_grid(const LaunchConfig& cfg, const char* kernel, const char* where,
              const std::function<void()>& body) {
  Grid g;
  g.kernel = kernel;
  g.where = where;
  g.grid = cfg.grid;
  g.block = cfg.block;
  g.smem = cfg.smem;
  g.nthreads = cfg.block.x * cfg.block.y * cfg.block.z;
  g.body = &body;
  g_grid = &g;
  for (unsigned bz = 0; bz < cfg.grid.z; ++bz)
    for (unsigned by = 0; by < cfg.grid.y; ++by)
      for (unsigned bx = 0; bx < cfg.grid.x; ++bx) run_block(g, {bx, by, bz});
  g_grid = nullptr;
}

void set_error(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
}

}  // namespace

// ---- Kernel-side entry points ---------------------------------------------------------------

[[noreturn]] void fault(const std::string& what) {
  if (g_grid && g_cur) {
    std::fprintf(stderr,
                 "cuda-emu: KERNEL FAULT in %s (launched at %s), block (%u,%u,%u) thread "
                 "(%u,%u,%u): %s\n",
                 g_grid->kernel, g_grid->where, g_grid->block_idx.x, g_grid->block_idx.y,
                 g_grid->block_idx.z, g_cur->tid.x, g_cur->tid.y, g_cur->tid.z, what.c_str());
  } else if (g_grid) {
    std::fprintf(stderr, "cuda-emu: KERNEL FAULT in %s (launched at %s), block (%u,%u,%u): %s\n",
                 g_grid->kernel, g_grid->where, g_grid->block_idx.x, g_grid->block_idx.y,
                 g_grid->block_idx.z, what.c_str());
  } else {
    std::fprintf(stderr, "cuda-emu: FAULT: %s\n", what.c_str());
  }
  std::fflush(stderr);
  std::abort();
}

// ---- Asynchronous copies (see cuda_runtime.h) -------------------------------------------------

namespace {

struct AsyncCopy {
  void* dst;
  const void* src;
  size_t bytes, zfill;
  bool done;  // landed at issue (see async_copy)
};
struct AsyncThread {
  std::vector<AsyncCopy> open;                  // issued, not yet committed
  std::deque<std::vector<AsyncCopy>> groups;    // committed, oldest first, not yet complete
};
std::vector<AsyncThread> g_async;  // by the thread's linear index in the running block

AsyncThread& async_state(const char* what) {
  Fiber* f = current(what);
  if (g_async.size() <= f->linear) g_async.resize(f->linear + 1);
  return g_async[f->linear];
}

bool in_block_shared(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  for (const SharedVar& v : g_grid->shared) {
    const char* b = static_cast<const char*>(v.ptr);
    if (c >= b && c + n <= b + v.bytes) return true;
  }
  const char* d = static_cast<const char*>(g_grid->dyn_shared);
  return d && c >= d && c + n <= d + g_grid->smem;
}

void perform(const AsyncCopy& a) {
  if (a.done) return;
  const size_t read = a.bytes - a.zfill;
  if (read > 0) std::memcpy(a.dst, a.src, read);
  if (a.zfill > 0) std::memset(static_cast<char*>(a.dst) + read, 0, a.zfill);
}

void async_thread_exit(unsigned linear) {
  if (linear >= g_async.size()) return;
  AsyncThread& t = g_async[linear];
  size_t pending = t.open.size();
  for (const auto& grp : t.groups) pending += grp.size();
  t.open.clear();
  t.groups.clear();
  if (pending > 0)
    fault(fmt("thread exited with %zu asynchronous copies (__pipeline_memcpy_async) never waited "
              "for", pending));
}

}  // namespace

void async_copy(void* dst, const void* src, size_t bytes, size_t zfill) {
  AsyncThread& t = async_state("__pipeline_memcpy_async");
  if (bytes != 4 && bytes != 8 && bytes != 16)
    fault(fmt("__pipeline_memcpy_async of %zu bytes (4, 8 or 16 allowed)", bytes));
  if (zfill > bytes) fault(fmt("__pipeline_memcpy_async zero-fills %zu of %zu bytes", zfill, bytes));
  if (reinterpret_cast<uintptr_t>(dst) % bytes || (zfill < bytes && reinterpret_cast<uintptr_t>(src) % bytes))
    fault(fmt("__pipeline_memcpy_async of %zu bytes with a misaligned address (dst %p, src %p)",
              bytes, dst, src));
  if (!in_block_shared(dst, bytes))
    fault(fmt("__pipeline_memcpy_async destination %p is not in the block's shared memory", dst));
  // When the copy lands: the schedule picks between the latest legal moment (forward: at the
  // wait that completes its group, so a read before the wait sees old data), the earliest
  // (reverse: at issue, so a refill of a buffer other threads still read shows) and a coin
  // flip per copy (shuffle).
  const bool now = g_schedule == Schedule::Reverse ||
                   (g_schedule == Schedule::Shuffle && (g_rng() & 1));
  AsyncCopy a{dst, src, bytes, zfill, false};
  if (now) {
    perform(a);
    a.done = true;
  }
  t.open.push_back(a);
}

void async_commit() {
  AsyncThread& t = async_state("__pipeline_commit");
  t.groups.push_back(std::move(t.open));
  t.open.clear();
}

void async_wait_prior(size_t pending) {
  AsyncThread& t = async_state("__pipeline_wait_prior");
  while (t.groups.size() > pending) {
    for (const AsyncCopy& a : t.groups.front()) perform(a);
    t.groups.pop_front();
  }
}

void syncthreads() {
  current("__syncthreads");
  Barrier& b = g_grid->bar;
  if (++b.arrived == b.expected) {
    b.arrived = 0;
    ++b.gen;
    ++g_stats.barriers;
    return;
  }
  wait_on(&b.gen, "__syncthreads");
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t bits, int arg, int width) {
  Fiber* f = current(op_name(op));
  Warp& w = g_grid->warps[f->linear / 32];
  const unsigned lane = f->linear % 32, bit = 1u << lane;
  if (!(mask & bit))
    fault(fmt("lane %u calls %s with mask 0x%08x, which does not name it", lane, op_name(op), mask));
  if (mask & ~w.live)
    fault(fmt("%s with mask 0x%08x names lanes that do not exist or have exited (live lanes "
              "0x%08x)", op_name(op), mask, w.live));
  if (width < 1 || width > 32 || (width & (width - 1)))
    fault(fmt("%s with width %d (must be a power of 2 up to 32)", op_name(op), width));
  if (w.arrived == 0) {
    w.mask = mask;
    w.op = op;
    w.width = width;
  } else if (w.mask != mask || w.op != op || w.width != width) {
    fault(fmt("lane %u calls %s (mask 0x%08x) while lanes 0x%08x of its warp wait in %s (mask "
              "0x%08x)", lane, op_name(op), mask, w.arrived, op_name(w.op), w.mask));
  }
  w.in[lane] = bits;
  w.arg[lane] = arg;
  w.arrived |= bit;
  if (w.arrived == w.mask) {
    unsigned ballot = 0;
    for (unsigned l = 0; l < 32; ++l)
      if ((w.mask >> l & 1) && w.in[l]) ballot |= 1u << l;
    for (unsigned l = 0; l < 32; ++l) {
      if (!(w.mask >> l & 1)) continue;
      const unsigned base = l & ~unsigned(w.width - 1), maxlane = base + w.width - 1;
      long src = l;
      switch (w.op) {
        case WarpOp::Sync: w.out[l] = 0; continue;
        case WarpOp::Ballot: w.out[l] = ballot; continue;
        case WarpOp::Any: w.out[l] = ballot != 0; continue;
        case WarpOp::All: w.out[l] = ballot == w.mask; continue;
        case WarpOp::ShflIdx: src = base + (static_cast<unsigned>(w.arg[l]) & (w.width - 1)); break;
        case WarpOp::ShflUp: src = (long(l) - long(base) >= w.arg[l]) ? long(l) - w.arg[l] : l; break;
        case WarpOp::ShflDown: src = (long(l) - long(base) + w.arg[l] < w.width) ? long(l) + w.arg[l] : l; break;
        case WarpOp::ShflXor: src = long(l ^ static_cast<unsigned>(w.arg[l])); if (src > long(maxlane)) src = l; break;
      }
      if (src < 0 || src > 31 || !(w.mask >> src & 1))
        fault(fmt("%s: lane %u reads lane %ld, which is not in the mask 0x%08x", op_name(w.op), l,
                  src, w.mask));
      w.out[l] = w.in[src];
    }
    w.arrived = 0;
    ++w.gen;
    ++g_stats.warp_ops;
    return w.out[lane];
  }
  wait_on(&w.gen, op_name(op));
  return w.out[lane];
}

void launch_bounds_check(int max_threads, const char* kernel) {
  current("__launch_bounds__");
  const unsigned n = g_grid->nthreads;
  if (n > static_cast<unsigned>(max_threads))
    fault(fmt("%s is declared __launch_bounds__(%d) but launched with %u threads a block", kernel,
              max_threads, n));
}

void* shared_alloc(const void* site, size_t bytes, size_t align, const char* name) {
  current("__shared__");
  Grid& g = *g_grid;
  for (SharedVar& s : g.shared)
    if (s.site == site) return s.ptr;
  void* p = nullptr;
  if (posix_memalign(&p, std::max(align, sizeof(void*)), bytes ? bytes : 1) != 0)
    fault("out of host memory for __shared__");
  std::memset(p, 0xff, bytes);  // uninitialised shared memory reads as NaN / -1
  g.shared.push_back({site, p, bytes, name});
  g.shared_bytes += bytes;
  if (g.shared_bytes > kStaticSharedLimit)
    fault(fmt("static __shared__ memory of the block (%zu bytes, last '%s') exceeds %zu bytes",
              g.shared_bytes, name, kStaticSharedLimit));
  return p;
}

void* dynamic_shared() {
  current("extern __shared__");
  Grid& g = *g_grid;
  if (!g.dyn_shared) {
    if (posix_memalign(&g.dyn_shared, 16, g.smem ? g.smem : 1) != 0) fault("out of host memory");
    std::memset(g.dyn_shared, 0xff, g.smem);
  }
  return g.dyn_shared;
}

// ---- Launches and the queue ----------------------------------------------------------------

void submit(const LaunchConfig& cfg, const char* kernel, const char* where,
            std::function<void()> body) {
  const dim3 b = cfg.block, gr = cfg.grid;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  const bool ok = b.x >= 1 && b.y >= 1 && b.z >= 1 && b.x <= 1024 && b.y <= 1024 && b.z <= 64 &&
                  threads <= 1024 && gr.x >= 1 && gr.y >= 1 && gr.z >= 1 &&
                  gr.x <= 0x7fffffffu && gr.y <= 65535 && gr.z <= 65535 &&
                  cfg.smem <= kStaticSharedLimit;
  if (!ok) {
    if (std::getenv("CN_EMU_VERBOSE"))
      std::fprintf(stderr, "cuda-emu: %s at %s: invalid configuration grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n",
                   kernel, where, gr.x, gr.y, gr.z, b.x, b.y, b.z, cfg.smem);
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  ++g_stats.launches;
  push_work(cfg.stream, [cfg, kernel, where, body = std::move(body)] { run_grid(cfg, kernel, where, body); });
}

void drain() {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  for (;;) {
    StreamState* next = nullptr;
    bool pending = false;
    for (auto& kv : g_streams) {
      if (kv.second.items.empty()) continue;
      pending = true;
      const Item& head = kv.second.items.front();
      if (head.kind == Item::Wait && head.event->completed < head.gen) continue;
      if (!next || (g_order == StreamOrder::NewestFirst ? head.seq > next->items.front().seq
                                                        : head.seq < next->items.front().seq))
        next = &kv.second;
    }
    if (!next) {
      if (pending) fault("stream deadlock: every stream with work waits for an event record that no stream will reach");
      return;
    }
    Item it = std::move(next->items.front());
    next->items.pop_front();
    if (it.kind == Item::Work) it.work();
    else if (it.kind == Item::Record) {
      it.event->completed = std::max(it.event->completed, it.gen);
      it.event->ms = std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now().time_since_epoch())
                         .count();
    }
  }
}

void set_stream_order(StreamOrder o) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  g_order = o;
}
void set_device_count(int n) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  g_device_count = n;
}
void set_peer_capable(int device, int peer, bool can) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  g_peer_capable[{device, peer}] = can;
}
void fail_next_copy(int err) {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  g_fail_next_copy = err;
}

// A copy call's injected failure (set for cudaGetLastError too), or cudaSuccess.
cudaError_t take_copy_failure() {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  cudaError_t e = static_cast<cudaError_t>(g_fail_next_copy);
  g_fail_next_copy = 0;
  set_error(e);
  return e;
}

// ---- Control ------------------------------------------------------------------------------

void set_schedule(Schedule s, uint64_t seed) {
  g_schedule = s;
  g_rng.seed(seed);
}
Schedule current_schedule() { return g_schedule; }
uint64_t schedule_draw() { return g_rng(); }
const char* schedule_name(Schedule s) {
  return s == Schedule::Forward ? "forward" : s == Schedule::Reverse ? "reverse" : "shuffle";
}

void register_tunable(const char* name, int64_t default_value, std::function<void(int64_t)> set) {
  TunableEntry& e = tunables()[name];
  e.def = default_value;
  e.setters.push_back(std::move(set));
}
std::vector<std::string> tunable_names() {
  std::vector<std::string> out;
  for (auto& kv : tunables()) out.push_back(kv.first);
  return out;
}
bool set_tunable(const std::string& name, int64_t value) {
  auto it = tunables().find(name);
  if (it == tunables().end()) return false;
  for (auto& s : it->second.setters) s(value);
  return true;
}
void reset_tunables() {
  for (auto& kv : tunables())
    for (auto& s : kv.second.setters) s(kv.second.def);
}

Stats stats() {
  std::lock_guard<std::recursive_mutex> lock(g_mu);
  Stats s = g_stats;
  s.bytes_allocated = 0;
  for (auto& kv : g_allocs) s.bytes_allocated += kv.second;
  for (auto& kv : g_host_allocs) s.host_bytes += kv.second;
  return s;
}

}  // namespace cn_emu

// ---- Runtime API ----------------------------------------------------------------------------

using cn_emu::drain;

cudaError_t cudaGetLastError() {
  cudaError_t e = cn_emu::g_last_error;
  cn_emu::g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return cn_emu::g_last_error; }

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorPeerAccessUnsupported: return "cudaErrorPeerAccessUnsupported";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorPeerAccessAlreadyEnabled: return "cudaErrorPeerAccessAlreadyEnabled";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    default: return "emulated CUDA error";
  }
}

cudaError_t cudaGetDeviceCount(int* count) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  *count = cn_emu::g_device_count;
  return cudaSuccess;
}
static bool valid_device(int device) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  return device >= 0 && device < cn_emu::g_device_count;
}
cudaError_t cudaSetDevice(int device) {
  if (!valid_device(device)) {
    cn_emu::set_error(cudaErrorInvalidDevice);
    return cudaErrorInvalidDevice;
  }
  cn_emu::tl_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = cn_emu::tl_device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (!valid_device(device)) return cudaErrorInvalidDevice;
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "CUDA emulator (host fibers)");
  p->totalGlobalMem = cn_emu::kDeviceBytes;
  p->sharedMemPerBlock = cn_emu::kStaticSharedLimit;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024; p->maxThreadsDim[1] = 1024; p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff; p->maxGridSize[1] = 65535; p->maxGridSize[2] = 65535;
  p->major = 8;
  p->minor = 0;
  p->multiProcessorCount = 1;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  drain();
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  size_t used = 0;
  for (auto& kv : cn_emu::g_allocs) used += kv.second;
  if (bytes > cn_emu::kDeviceBytes - used) {
    *ptr = nullptr;
    cn_emu::set_error(cudaErrorMemoryAllocation);
    return cudaErrorMemoryAllocation;
  }
  void* p = std::malloc(bytes ? bytes : 1);  // exact size: AddressSanitizer sees overruns
  if (!p) {
    cn_emu::set_error(cudaErrorMemoryAllocation);
    return cudaErrorMemoryAllocation;
  }
  std::memset(p, 0xff, bytes);  // fresh device memory reads as NaN
  cn_emu::g_allocs[p] = bytes;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
  drain();  // cudaFree synchronises the device
  if (!ptr) return cudaSuccess;
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  auto it = cn_emu::g_allocs.find(ptr);
  if (it == cn_emu::g_allocs.end()) {
    cn_emu::set_error(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  cn_emu::g_allocs.erase(it);
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  size_t used = 0;
  for (auto& kv : cn_emu::g_allocs) used += kv.second;
  *free_bytes = cn_emu::kDeviceBytes - used;
  *total_bytes = cn_emu::kDeviceBytes;
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  drain();
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t stream) {
  if (cudaError_t e = cn_emu::take_copy_failure()) return e;
  cn_emu::push_work(stream, [dst, src, bytes] { if (bytes) std::memmove(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream) {
  if (!valid_device(dst_device) || !valid_device(src_device)) {
    cn_emu::set_error(cudaErrorInvalidDevice);
    return cudaErrorInvalidDevice;
  }
  if (cudaError_t e = cn_emu::take_copy_failure()) return e;
  {
    std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
    if (dst_device != src_device) {
      ++cn_emu::g_stats.peer_copies;
      // A GPU copies without peer access too (through the host, slowly): count it.
      if (!cn_emu::g_peer_enabled[{src_device, dst_device}] && !cn_emu::g_peer_enabled[{dst_device, src_device}])
        ++cn_emu::g_stats.peer_copies_disabled;
    }
  }
  cn_emu::push_work(stream, [dst, src, bytes] { if (bytes) std::memmove(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer) {
  if (!valid_device(device) || !valid_device(peer)) return cudaErrorInvalidDevice;
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  *can = device != peer && cn_emu::g_peer_capable[{device, peer}] ? 1 : 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  const int self = cn_emu::tl_device;
  cudaError_t e = cudaSuccess;
  if (!valid_device(peer)) e = cudaErrorInvalidDevice;
  else if (self == peer || !cn_emu::g_peer_capable[{self, peer}]) e = cudaErrorPeerAccessUnsupported;
  else if (cn_emu::g_peer_enabled[{self, peer}]) e = cudaErrorPeerAccessAlreadyEnabled;
  else cn_emu::g_peer_enabled[{self, peer}] = true;
  cn_emu::set_error(e);
  return e;
}
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned) {
  void* p = std::malloc(bytes ? bytes : 1);
  if (!p) {
    *ptr = nullptr;
    cn_emu::set_error(cudaErrorMemoryAllocation);
    return cudaErrorMemoryAllocation;
  }
  std::memset(p, 0xff, bytes);
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  cn_emu::g_host_allocs[p] = bytes;
  ++cn_emu::g_stats.host_allocs;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* ptr) {
  cn_emu::drain();  // like cudaFree, it waits for the device
  if (!ptr) return cudaSuccess;
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  auto it = cn_emu::g_host_allocs.find(ptr);
  if (it == cn_emu::g_host_allocs.end()) {
    cn_emu::set_error(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  cn_emu::g_host_allocs.erase(it);
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  drain();
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  cn_emu::push_work(stream, [dst, value, bytes] { std::memset(dst, value, bytes); });
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = reinterpret_cast<cudaStream_t>(new char(0));  // a distinct non-null handle
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  cn_emu::stream_state(*stream);  // belongs to the current device
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  drain();
  {
    std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
    cn_emu::g_streams.erase(stream);
  }
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  drain();
  return cudaSuccess;
}

struct CUevent_st {
  std::shared_ptr<cn_emu::EventState> state;
};

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned) {
  auto* e = new CUevent_st{std::make_shared<cn_emu::EventState>()};
  e->state->device = cn_emu::tl_device;
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  // Records and waits still queued keep the state alive, as CUDA keeps a destroyed event's
  // pending work valid.
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  if (!event || (stream && cn_emu::stream_state(stream).device != event->state->device)) {
    cn_emu::set_error(cudaErrorInvalidResourceHandle);
    return cudaErrorInvalidResourceHandle;
  }
  cn_emu::Item it;
  it.kind = cn_emu::Item::Record;
  it.event = event->state;
  it.gen = ++event->state->recorded;
  ++cn_emu::g_stats.events_recorded;
  cn_emu::push(stream, std::move(it));
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  if (event->state->completed >= event->state->recorded) return cudaSuccess;
  cn_emu::set_error(cudaErrorNotReady);
  return cudaErrorNotReady;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  drain();
  return cudaSuccess;
}
// Host time between the two records' completion (the emulation runs work at synchronising
// calls, so this measures when the emulated streams reached them).
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  if (!start || !end || start->state->completed < start->state->recorded ||
      end->state->completed < end->state->recorded) {
    cn_emu::set_error(cudaErrorNotReady);
    return cudaErrorNotReady;
  }
  *ms = static_cast<float>(end->state->ms - start->state->ms);
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  std::lock_guard<std::recursive_mutex> lock(cn_emu::g_mu);
  if (!event) {
    cn_emu::set_error(cudaErrorInvalidResourceHandle);
    return cudaErrorInvalidResourceHandle;
  }
  ++cn_emu::g_stats.event_waits;
  if (event->state->recorded == 0) return cudaSuccess;  // never recorded: nothing to wait for
  cn_emu::Item it;
  it.kind = cn_emu::Item::Wait;
  it.event = event->state;
  it.gen = event->state->recorded;
  cn_emu::push(stream, std::move(it));
  return cudaSuccess;
}
