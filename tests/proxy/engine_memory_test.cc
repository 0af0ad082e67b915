// The engine's memory (flow/memory.h, EngineConfig::memory): every table
// Create() makes comes from the allocator hook, labelled by use, and the
// bytes the hook sees are exactly the plan Engine::PlanMemory() reports
// (what moat prints at start-up and the README's sizing quotes); nothing
// goes through the hook after Create(), and everything goes back to it.

#include <cstdlib>
#include <cstring>
#include <map>

#include "engine_harness.h"
#include "gtest/gtest.h"
#include "testing/alloc_counter.h"

namespace moat::proxy::testing {
namespace {

using flow::MemoryUse;

// A hook that counts what passes through it.
struct Counting {
  flow::MemoryPlan allocated;
  uint64_t calls = 0;
  uint64_t releases = 0;
  std::map<void*, uint64_t> live;  // block -> bytes
  bool aligned = true;
  bool sizes_rounded = true;

  flow::MemoryHook Hook() {
    flow::MemoryHook h;
    h.ctx = this;
    h.allocate = [](void* ctx, size_t bytes, MemoryUse use) -> void* {
      auto* self = static_cast<Counting*>(ctx);
      void* p = std::aligned_alloc(64, bytes);
      // Garbage, so a structure that relied on zeroed memory from the
      // allocator (instead of the hook's own memset) would be caught.
      std::memset(p, 0xA5, bytes);
      self->allocated[use] += bytes;
      ++self->calls;
      self->live[p] = bytes;
      self->aligned = self->aligned && (reinterpret_cast<uintptr_t>(p) % 64 == 0);
      self->sizes_rounded = self->sizes_rounded && (bytes % 64 == 0);
      return p;
    };
    h.release = [](void* ctx, void* p) {
      auto* self = static_cast<Counting*>(ctx);
      ++self->releases;
      self->live.erase(p);
      std::free(p);
    };
    return h;
  }
};

EngineConfig Configs(int i) {
  EngineConfig c = DefaultConfig();
  switch (i) {
    case 0:
      break;  // no SYN cache
    case 1:
      c = CacheConfig(4096);
      break;
    case 2:
      c = CacheConfig(1000);  // rounded up to buckets of 8
      c.flow_capacity = 65536;
      c.held_slots = 4096;
      break;
    case 3:
      c.flow_capacity = 1;
      c.held_slots = 1;
      c.synack_rate_buckets = 1024;
      break;
  }
  return c;
}

TEST(EngineMemoryTest, EveryTableComesFromTheHookAndMatchesThePlan) {
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    Counting counting;
    EngineConfig config = Configs(i);
    config.memory = counting.Hook();
    const flow::MemoryPlan plan = Engine::PlanMemory(config);
    {
      auto e = Engine::Create(config, kT0);
      ASSERT_TRUE(e.ok()) << e.status();
      for (size_t u = 0; u < flow::kNumMemoryUses; ++u) {
        EXPECT_EQ(counting.allocated.bytes[u], plan.bytes[u])
            << flow::MemoryUseName(static_cast<MemoryUse>(u));
      }
      EXPECT_EQ(counting.allocated.total(), Engine::MemoryBytes(config));
      EXPECT_TRUE(counting.aligned);
      EXPECT_TRUE(counting.sizes_rounded);
      EXPECT_GT(plan[MemoryUse::kFlowTable], uint64_t{config.flow_capacity} * sizeof(Flow));
      EXPECT_GE(plan[MemoryUse::kHeldPool], uint64_t{config.held_slots} * FrameRoom(config.mtu));
      EXPECT_EQ(plan[MemoryUse::kSynCache] != 0, config.syn_cache_entries != 0);
      EXPECT_EQ(plan[MemoryUse::kSynCacheTimers] != 0, config.syn_cache_entries != 0);
      EXPECT_EQ(Engine::SynCacheBytes(config),
                plan[MemoryUse::kSynCache] + plan[MemoryUse::kSynCacheTimers]);
    }
    // Everything went back to the hook.
    EXPECT_TRUE(counting.live.empty());
    EXPECT_EQ(counting.releases, counting.calls);
  }
}

// Memory from the hook need not be zero: the engine works the same on
// garbage-filled blocks (the hook zeroes them), and after Create() the hot
// path and the timers never call it.
TEST(EngineMemoryTest, NothingGoesThroughTheHookAfterCreate) {
  Counting counting;
  EngineConfig config = CacheConfig();
  config.memory = counting.Hook();
  Harness h(config);
  const uint64_t calls = counting.calls;
  Conn c;
  DriveToEstablished(h, &c);
  EXPECT_EQ(h.Send(Side::kServer, c.S()
                                      .Seq(c.backend_isn + 1)
                                      .Ack(c.client_isn + 1)
                                      .PayloadFill(100, 'x')
                                      .Timestamps(c.backend_tsval + 1, c.client_tsval)),
            Verdict::kForward);
  h.Advance(400 * kSec);  // idle expiry
  EXPECT_EQ(h.Count(Counter::k_flows_expired), 1u);
  EXPECT_EQ(counting.calls, calls);
}

// The tables' size does not reach the global operator new: Create() makes
// the same few small objects whatever the capacities.
TEST(EngineMemoryTest, OperatorNewSeesOnlyTheSmallObjects) {
  size_t counts[2];
  for (int i = 0; i < 2; ++i) {
    Counting counting;
    EngineConfig config = CacheConfig(i == 0 ? 64 : 65536);
    config.flow_capacity = i == 0 ? 16 : 262144;
    config.memory = counting.Hook();
    moat::testing::AllocationScope scope;
    auto e = Engine::Create(config, kT0);
    ASSERT_TRUE(e.ok());
    counts[i] = scope.count();
  }
  EXPECT_EQ(counts[0], counts[1]);
  EXPECT_LE(counts[0], 32u);  // the engine, its structures, copies of the policy lists
}

}  // namespace
}  // namespace moat::proxy::testing
