// Knobs and counters of the CUDA emulation (native/emu/emu.cc), for the harness only.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cn_emu {

// The order in which the scheduler resumes a block's runnable threads: by thread index,
// reversed, or shuffled (seeded; reshuffled at every pass).
enum class Schedule { Forward, Reverse, Shuffle };
void set_schedule(Schedule s, uint64_t seed = 0);
const char* schedule_name(Schedule s);
Schedule current_schedule();
// A draw from the schedule's seeded generator (the emulated mma.sync uses it to delay warps).
uint64_t schedule_draw();

// Tunables (launcher constants prep.py made run-time values): names, set, reset.
std::vector<std::string> tunable_names();
bool set_tunable(const std::string& name, int64_t value);  // false: no such tunable
void reset_tunables();                                      // back to the source's values

struct Stats {
  uint64_t launches = 0, blocks = 0, threads = 0, barriers = 0, warp_ops = 0;
  uint64_t bytes_allocated = 0;  // cudaMalloc'd and not yet freed
  uint64_t host_bytes = 0;       // cudaHostAlloc'd and not yet freed
  uint64_t events_recorded = 0, event_waits = 0;
  uint64_t peer_copies = 0;           // cudaMemcpyPeerAsync between two devices
  uint64_t peer_copies_disabled = 0;  // ... of which without peer access enabled
  uint64_t host_allocs = 0;           // cudaHostAlloc calls
};
Stats stats();

// Runs everything queued (what cudaStreamSynchronize does).
void drain();

// Which runnable stream goes next when several have work: the one whose next item was queued
// last (the default: shows missing event waits) or first (plain submission order).
enum class StreamOrder { NewestFirst, OldestFirst };
void set_stream_order(StreamOrder o);

// Devices: how many cudaGetDeviceCount reports (default 1), and whether `device` may access
// `peer` (cudaDeviceCanAccessPeer; default no). Call before the devices are used.
void set_device_count(int n);
void set_peer_capable(int device, int peer, bool can);

// Makes the next cudaMemcpyAsync or cudaMemcpyPeerAsync (on any thread) fail with `err`,
// returned and left for cudaGetLastError, without copying.
void fail_next_copy(int err);

}  // namespace cn_emu
