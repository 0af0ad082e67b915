#pragma once
// Where a worker's tables come from. The flow table, its timer wheel, the
// held-segment pool, the SYN cache and the rate limiter are allocated once
// at start-up through a MemoryHook, so that lib/dataplane can put them in
// hugepages on the worker's NUMA socket (rte_malloc_socket) while lib/flow
// and lib/proxy never include DPDK. Plain function pointers, not a virtual
// interface: a hook is copied into every structure it allocated (to give
// the memory back) and costs nothing after start-up.
//
// Every block is zeroed (every byte written) by MemoryHook::Allocate, so
// all pages are faulted in at start-up and the hot path takes no page
// faults, whichever allocator is behind the hook.

#include <cstddef>
#include <cstdint>

namespace moat::flow {

// The memory plan's lines: what each block is for.
enum class MemoryUse : uint8_t {
  kFlowTable,       // buckets, keys, flow state, hashes, free list
  kFlowTimers,      // the flow table's timer wheel
  kHeldPool,        // client segments held during backend handshakes
  kSynCache,        // SYN-cache entries and signature rows
  kSynCacheTimers,  // the SYN cache's timer wheel
  kRateLimiter,     // SYN-ACK rate-limit buckets
};
inline constexpr size_t kNumMemoryUses = 6;
const char* MemoryUseName(MemoryUse use);

// Blocks are 64-byte aligned and their sizes rounded up to 64 bytes; plans
// (MemoryBytes functions) round the same way, so a plan is exact.
inline constexpr uint64_t RoundToLine(uint64_t bytes) { return (bytes + 63) & ~uint64_t{63}; }

struct MemoryHook {
  // `bytes` (a multiple of 64), 64-byte aligned, or nullptr. nullptr
  // functions: std::aligned_alloc and std::free.
  void* (*allocate)(void* ctx, size_t bytes, MemoryUse use) = nullptr;
  void (*release)(void* ctx, void* p) = nullptr;
  void* ctx = nullptr;

  // RoundToLine(bytes) bytes through the hook, zeroed; nullptr on failure
  // (or for 0 bytes).
  void* Allocate(uint64_t bytes, MemoryUse use) const;
  void Release(void* p) const;
  template <typename T>
  T* AllocateArray(uint64_t n, MemoryUse use) const {
    return static_cast<T*>(Allocate(n * sizeof(T), use));
  }
};

// Bytes per use, as a structure's MemoryBytes() plans them or as a hook
// saw them go by.
struct MemoryPlan {
  uint64_t bytes[kNumMemoryUses] = {};
  uint64_t& operator[](MemoryUse use) { return bytes[static_cast<size_t>(use)]; }
  uint64_t operator[](MemoryUse use) const { return bytes[static_cast<size_t>(use)]; }
  uint64_t total() const {
    uint64_t t = 0;
    for (uint64_t b : bytes) t += b;
    return t;
  }
};

}  // namespace moat::flow
