// After Create(), nothing in lib/flow allocates: the test binary links the
// shared allocation counter (tests/testing/alloc_counter.h), which counts
// calls of the global operator new only inside an AllocationScope, opened
// here around flow table and timer wheel calls. (Create itself allocates
// with aligned_alloc and nothrow new, before counting.)

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "moat/flow/flow_table.h"
#include "moat/flow/timer_wheel.h"
#include "testing/alloc_counter.h"

namespace moat::flow {
namespace {

struct Value {
  uint64_t words[16];
};

using moat::testing::AllocationScope;

TEST(FlowAllocTest, CounterSeesAllocations) {
  // The counter is linked into this binary and works: a vector allocates
  // inside the window (without it, NoAllocationAfterCreate would pass
  // whatever lib/flow did).
  size_t n;
  {
    AllocationScope scope;
    std::vector<int> v(10);
    n = scope.count();
  }
  EXPECT_GE(n, 1u);
}

TEST(FlowAllocTest, NoAllocationAfterCreate) {
  constexpr uint32_t kCap = 20000;
  auto table_or = FlowTable<Value>::Create(kCap, 99);
  ASSERT_TRUE(table_or.ok());
  auto wheel_or = TimerWheel::Create(kCap, 1000, 0, 256);
  ASSERT_TRUE(wheel_or.ok());
  FlowTable<Value>& table = **table_or;
  TimerWheel& wheel = **wheel_or;

  // Keys and random numbers prepared outside the window.
  std::mt19937_64 rng(5);
  std::vector<FlowKey> keys(kCap * 2);
  for (uint32_t i = 0; i < keys.size(); ++i) {
    uint8_t c[16] = {0x20, 0x01, 0, 2};
    uint8_t s[4] = {198, 19, 0, 1};
    c[14] = static_cast<uint8_t>(i >> 8);
    c[15] = static_cast<uint8_t>(i);
    keys[i] = i % 2 ? FlowKey::Make(16, c, static_cast<uint16_t>(i), c, 443)
                    : FlowKey::Make(4, s, static_cast<uint16_t>(i), s, 80);
    keys[i].client_addr[0] ^= static_cast<uint8_t>(i >> 16);
  }
  std::vector<uint64_t> random(1 << 16);
  for (auto& r : random) r = rng();

  size_t fired = 0, refused = 0;
  uint64_t now = 0;
  size_t allocations;
  {
    AllocationScope scope;
    for (uint32_t op = 0; op < 300'000; ++op) {
      const uint64_t r = random[op & 0xffff] ^ op;
      const FlowKey& k = keys[r % keys.size()];
      const uint32_t h = table.Hash(k);
      table.Prefetch(h);
      Value* v = table.Find(k, h);
      if (v != nullptr) {
        wheel.Cancel(table.IndexOf(v));
        table.Erase(v);
      } else if ((v = table.Insert(k, h)) != nullptr) {
        wheel.Schedule(table.IndexOf(v), now + (r >> 20) % 5'000'000);
      } else {
        ++refused;
      }
      now += (op % 10000 == 0) ? 3'600'000'000'000ull : 100;  // and a few clock jumps
      fired += wheel.Advance(now, [&](uint32_t id) { table.Erase(table.At(id)); }, 64);
    }
    allocations = scope.count();
  }
  EXPECT_EQ(allocations, 0u);
  EXPECT_GT(fired, 0u);
  EXPECT_GT(table.size(), 0u);
  (void)refused;
}

}  // namespace
}  // namespace moat::flow
