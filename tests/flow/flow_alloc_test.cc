// After Create(), nothing in lib/flow allocates: the global operator new
// is replaced for this test binary and counts calls while g_counting is
// set, which is only around flow table and timer wheel calls. (Create
// itself allocates with aligned_alloc and nothrow new, before counting.)

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "moat/flow/flow_table.h"
#include "moat/flow/timer_wheel.h"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<size_t> g_news{0};

void* Counted(size_t n, size_t align) {
  if (g_counting.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  return align <= alignof(std::max_align_t) ? std::malloc(n)
                                            : std::aligned_alloc(align, (n + align - 1) / align * align);
}

void* CountedOrThrow(size_t n, size_t align) {
  void* p = Counted(n, align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(size_t n) { return CountedOrThrow(n, 0); }
void* operator new[](size_t n) { return CountedOrThrow(n, 0); }
void* operator new(size_t n, std::align_val_t a) { return CountedOrThrow(n, static_cast<size_t>(a)); }
void* operator new[](size_t n, std::align_val_t a) {
  return CountedOrThrow(n, static_cast<size_t>(a));
}
void* operator new(size_t n, const std::nothrow_t&) noexcept { return Counted(n, 0); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return Counted(n, 0); }
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return Counted(n, static_cast<size_t>(a));
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return Counted(n, static_cast<size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace moat::flow {
namespace {

struct Value {
  uint64_t words[16];
};

class CountScope {
 public:
  CountScope() {
    g_news = 0;
    g_counting = true;
  }
  ~CountScope() { g_counting = false; }
};

TEST(FlowAllocTest, CounterSeesAllocations) {
  // The harness itself works: a vector allocates inside the window.
  size_t n;
  {
    CountScope scope;
    std::vector<int> v(10);
    n = g_news.load();
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
  {
    CountScope scope;
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
  }
  EXPECT_EQ(g_news.load(), 0u);
  EXPECT_GT(fired, 0u);
  EXPECT_GT(table.size(), 0u);
  (void)refused;
}

}  // namespace
}  // namespace moat::flow
