// ConfigChannel (include/moat/dataplane/reload.h): the generation swap a
// reload goes through, with real engines and no EAL.

#include "moat/dataplane/reload.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "moat/proxy/engine.h"

namespace moat::dataplane {
namespace {

constexpr uint64_t kNow = 100'000ull * 1'000'000'000ull;

proxy::EngineConfig Config(const char* protect, uint32_t rate = 0) {
  proxy::EngineConfig c;
  c.services = *proxy::ParseProtect(protect);
  c.flow_capacity = 64;
  c.held_slots = 8;
  c.synack_rate_buckets = 64;
  c.synack_rate = rate;
  return c;
}

std::unique_ptr<proxy::Engine> MakeEngine(const proxy::EngineConfig& c) {
  auto e = proxy::Engine::Create(c, kNow);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

TEST(ConfigChannel, WorkersSwitchAtPickUpAndOldGenerationsAreFreed) {
  const proxy::EngineConfig initial = Config("198.18.0.2:80");
  ConfigChannel ch(2, initial);
  auto e0 = MakeEngine(initial), e1 = MakeEngine(initial);
  EXPECT_EQ(ch.generation(), 1u);
  EXPECT_EQ(ch.applied(), 1u);
  ch.PickUp(0, e0.get());  // nothing new: no reconfigure
  EXPECT_EQ(e0->stats().Load(proxy::Counter::k_config_reloads), 0u);

  EXPECT_EQ(ch.Publish(Config("198.18.0.2:81", 5)), 2u);
  EXPECT_EQ(ch.generation(), 2u);
  EXPECT_EQ(ch.applied(), 1u);  // nobody switched yet
  EXPECT_EQ(e0->config().services.ToString(), "198.18.0.2:80");
  ch.PickUp(0, e0.get());
  EXPECT_EQ(e0->config().services.ToString(), "198.18.0.2:81");
  EXPECT_EQ(e0->config().synack_rate, 5u);
  EXPECT_EQ(ch.applied(), 1u);  // worker 1 still runs generation 1
  ch.PickUp(0, e0.get());       // once is enough
  EXPECT_EQ(e0->stats().Load(proxy::Counter::k_config_reloads), 1u);

  EXPECT_EQ(ch.Publish(Config("198.18.0.2:82")), 3u);
  // Generations 1, 2 and 3 may all still be read by worker 1.
  EXPECT_EQ(ch.retained(), 3u);
  ch.PickUp(1, e1.get());
  EXPECT_EQ(e1->config().services.ToString(), "198.18.0.2:82");
  ch.PickUp(0, e0.get());
  EXPECT_EQ(ch.applied(), 3u);
  ch.Reclaim();
  EXPECT_EQ(ch.retained(), 1u);                                       // only the current one
  EXPECT_EQ(e1->stats().Load(proxy::Counter::k_config_reloads), 1u);  // skipped 2
}

TEST(ConfigChannel, ReloadCounters) {
  ConfigChannel ch(1, Config("198.18.0.2:80"));
  ch.CountReload(true);
  ch.CountReload(false);
  ch.CountReload(false);
  EXPECT_EQ(ch.reload_ok(), 1u);
  EXPECT_EQ(ch.reload_failed(), 2u);
}

// A worker thread polls as the dataplane does while the control thread
// publishes and reclaims; under AddressSanitizer (build-san) a worker that
// read a freed generation fails the test.
TEST(ConfigChannel, PublishingWhileAWorkerPollsIsSafe) {
  const proxy::EngineConfig a = Config("198.18.0.2:80"), b = Config("198.18.0.2:81", 7);
  ConfigChannel ch(1, a);
  auto e = MakeEngine(a);
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    while (!stop.load(std::memory_order_relaxed)) ch.PickUp(0, e.get());
    ch.PickUp(0, e.get());
  });
  constexpr int kReloads = 2000;
  for (int i = 0; i < kReloads; ++i) ch.Publish(i % 2 ? a : b);
  // The worker catches up without the control thread ever blocking it.
  while (ch.applied() != ch.generation()) std::this_thread::yield();
  stop = true;
  worker.join();
  ch.Reclaim();
  EXPECT_EQ(ch.generation(), 1u + kReloads);
  EXPECT_EQ(ch.retained(), 1u);
  EXPECT_EQ(e->config().services.ToString(), "198.18.0.2:80");  // the last one published
}

}  // namespace
}  // namespace moat::dataplane
