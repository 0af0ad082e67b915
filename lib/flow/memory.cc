#include "moat/flow/memory.h"

#include <cstdlib>
#include <cstring>

namespace moat::flow {

const char* MemoryUseName(MemoryUse use) {
  switch (use) {
    case MemoryUse::kFlowTable:
      return "flow table";
    case MemoryUse::kFlowTimers:
      return "flow timers";
    case MemoryUse::kHeldPool:
      return "held pool";
    case MemoryUse::kSynCache:
      return "SYN cache";
    case MemoryUse::kSynCacheTimers:
      return "SYN-cache timers";
    case MemoryUse::kRateLimiter:
      return "rate limiter";
  }
  return "?";
}

void* MemoryHook::Allocate(uint64_t bytes, MemoryUse use) const {
  if (bytes == 0) return nullptr;
  const uint64_t n = RoundToLine(bytes);
  void* p = allocate != nullptr ? allocate(ctx, n, use) : std::aligned_alloc(64, n);
  // Writing every byte faults every page in now, not on the hot path
  // (rte_malloc memory may be zero already; it is written anyway, once).
  if (p != nullptr) std::memset(p, 0, n);
  return p;
}

void MemoryHook::Release(void* p) const {
  if (p == nullptr) return;
  if (release != nullptr) {
    release(ctx, p);
  } else {
    std::free(p);
  }
}

}  // namespace moat::flow
