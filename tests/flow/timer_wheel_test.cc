#include "moat/flow/timer_wheel.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moat::flow {
namespace {

using testing::ElementsAre;
using testing::IsEmpty;
using testing::UnorderedElementsAre;

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kSec = 1000 * kMs;
constexpr uint64_t kHour = 3600 * kSec;
constexpr uint64_t kStart = 1'700'000'000 * kSec;  // a realistic CLOCK_REALTIME-ish origin

std::unique_ptr<TimerWheel> MakeWheel(uint32_t capacity, uint64_t tick_ns = kMs,
                                      uint64_t now_ns = kStart,
                                      uint32_t slots = TimerWheel::kDefaultSlots) {
  auto w = TimerWheel::Create(capacity, tick_ns, now_ns, slots);
  EXPECT_TRUE(w.ok()) << w.status();
  return std::move(*w);
}

// Advance, collecting fired ids.
std::vector<uint32_t> Fire(TimerWheel* w, uint64_t now_ns, size_t max = SIZE_MAX) {
  std::vector<uint32_t> ids;
  w->Advance(now_ns, [&](uint32_t id) { ids.push_back(id); }, max);
  return ids;
}

TEST(TimerWheelTest, CreateRejectsBadArguments) {
  EXPECT_EQ(TimerWheel::Create(0, kMs, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TimerWheel::Create(10, 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TimerWheel::Create(10, kMs, 0, 1000).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TimerWheel::Create(10, kMs, 0, 32).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(TimerWheel::Create(10, kMs, 0, 64).ok());
}

TEST(TimerWheelTest, FiresAtDeadlineNotBefore) {
  auto w = MakeWheel(10);
  w->Schedule(3, kStart + 5 * kMs);
  EXPECT_TRUE(w->Pending(3));
  EXPECT_EQ(w->Deadline(3), kStart + 5 * kMs);
  EXPECT_EQ(w->pending_count(), 1u);
  EXPECT_THAT(Fire(w.get(), kStart + 5 * kMs - 1), IsEmpty());
  EXPECT_THAT(Fire(w.get(), kStart + 5 * kMs), ElementsAre(3));
  EXPECT_FALSE(w->Pending(3));
  EXPECT_EQ(w->pending_count(), 0u);
  EXPECT_THAT(Fire(w.get(), kStart + 10 * kMs), IsEmpty());
}

TEST(TimerWheelTest, SubTickDeadlineRoundsUp) {
  // 1.5 ms: due at the 2 ms tick, never at 1 ms.
  auto w = MakeWheel(10);
  w->Schedule(1, kStart + kMs + kMs / 2);
  EXPECT_THAT(Fire(w.get(), kStart + kMs + kMs / 2 - 1), IsEmpty());
  EXPECT_THAT(Fire(w.get(), kStart + kMs + kMs / 2 + 1), IsEmpty());  // not yet at the 2 ms tick
  EXPECT_THAT(Fire(w.get(), kStart + 2 * kMs), ElementsAre(1));
}

TEST(TimerWheelTest, PastDeadlineFiresOnNextAdvance) {
  auto w = MakeWheel(10);
  w->Schedule(1, 0);
  w->Schedule(2, kStart - kHour);
  EXPECT_THAT(Fire(w.get(), kStart), UnorderedElementsAre(1, 2));
}

TEST(TimerWheelTest, FiresInDeadlineOrder) {
  auto w = MakeWheel(100);
  // Deadlines in reverse id order, 1 ms apart, across more than one turn
  // of level 0 (4096 ms) so both levels take part.
  for (uint32_t id = 0; id < 100; ++id) w->Schedule(id, kStart + (100 - id) * 77 * kMs);
  std::vector<uint32_t> fired = Fire(w.get(), kStart + 100 * 77 * kMs);
  std::vector<uint32_t> want;
  for (uint32_t id = 100; id-- > 0;) want.push_back(id);
  EXPECT_EQ(fired, want);
}

TEST(TimerWheelTest, CancelAndReschedule) {
  auto w = MakeWheel(10);
  w->Schedule(1, kStart + 10 * kMs);
  w->Schedule(2, kStart + 10 * kMs);
  w->Schedule(3, kStart + 10 * kMs);
  w->Cancel(2);
  w->Cancel(2);  // idempotent
  w->Cancel(7);  // never scheduled
  EXPECT_FALSE(w->Pending(2));
  w->Schedule(3, kStart + 20 * kMs);  // replaces, does not add
  EXPECT_EQ(w->pending_count(), 2u);
  EXPECT_THAT(Fire(w.get(), kStart + 15 * kMs), ElementsAre(1));
  w->Schedule(3, kStart + 12 * kMs);  // pulled earlier, now in the past
  EXPECT_THAT(Fire(w.get(), kStart + 16 * kMs), ElementsAre(3));
  EXPECT_THAT(Fire(w.get(), kStart + 30 * kMs), IsEmpty());
}

TEST(TimerWheelTest, CallbackReschedulesItself) {
  // A periodic timer (the backend SYN retransmission pattern): re-armed
  // from its own callback, it fires once per period, even when one
  // Advance covers many periods.
  auto w = MakeWheel(4);
  w->Schedule(0, kStart + 10 * kMs);
  std::vector<uint64_t> at;
  uint64_t now = kStart + 100 * kMs;
  w->Advance(now, [&](uint32_t id) {
    at.push_back(w->Deadline(id));
    w->Schedule(id, w->Deadline(id) + 10 * kMs);
  });
  ASSERT_EQ(at.size(), 10u);
  for (size_t i = 0; i < at.size(); ++i) EXPECT_EQ(at[i], kStart + (i + 1) * 10 * kMs);
  EXPECT_TRUE(w->Pending(0));
  EXPECT_EQ(w->Deadline(0), kStart + 110 * kMs);
}

TEST(TimerWheelTest, CallbackReschedulingIntoThePastDoesNotLoop) {
  auto w = MakeWheel(4);
  w->Schedule(0, kStart + 5 * kMs);
  int calls = 0;
  // Same tick: re-arming at a past deadline defers to the next tick.
  w->Advance(kStart + 5 * kMs, [&](uint32_t id) {
    ++calls;
    w->Schedule(id, 0);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(w->Pending(0));
  EXPECT_EQ(Fire(w.get(), kStart + 6 * kMs).size(), 1u);
  // Over a span of ticks: at most once per tick.
  w->Schedule(1, kStart + 6 * kMs);
  calls = 0;
  w->Advance(kStart + 16 * kMs, [&](uint32_t id) {
    ++calls;
    w->Schedule(id, kStart);
  });
  EXPECT_LE(calls, 11);
  EXPECT_TRUE(w->Pending(1));
}

TEST(TimerWheelTest, CallbackCancelsAndReschedulesOthers) {
  auto w = MakeWheel(10);
  for (uint32_t id = 0; id < 6; ++id) w->Schedule(id, kStart + 3 * kMs);
  w->Schedule(8, kStart + 2 * kMs);
  w->Schedule(9, kStart + 50 * kMs);
  std::vector<uint32_t> fired;
  w->Advance(kStart + 10 * kMs, [&](uint32_t id) {
    fired.push_back(id);
    if (id == 8) {
      // Fired first (2 ms). Cancel two of the 3 ms batch, push one out,
      // pull 9 in, and arm an idle one.
      w->Cancel(1);
      w->Cancel(4);
      w->Schedule(5, kStart + 40 * kMs);
      w->Schedule(9, kStart + 4 * kMs);
      w->Schedule(7, kStart + 3 * kMs);
    } else if (fired.size() == 2) {
      // First of the 3 ms batch: cancel whichever of the batch is still
      // pending and not yet fired, including ones already detached.
      for (uint32_t other : {0u, 2u, 3u}) {
        if (other != id) w->Cancel(other);
      }
    }
  });
  // 2 ms: 8. 3 ms: {0,2,3,7} in some order; the first of them cancels
  // the rest of {0,2,3} (some already detached from the slot), so 7 still
  // fires unless it was the first. 4 ms: 9, pulled in from 50 ms.
  ASSERT_GE(fired.size(), 3u);
  EXPECT_EQ(fired.front(), 8u);
  EXPECT_EQ(fired.back(), 9u);
  if (fired[1] == 7) {
    EXPECT_EQ(fired.size(), 3u);
  } else {
    EXPECT_THAT(fired[1], testing::AnyOf(0u, 2u, 3u));
    ASSERT_EQ(fired.size(), 4u);
    EXPECT_EQ(fired[2], 7u);
  }
  EXPECT_FALSE(w->Pending(0) || w->Pending(1) || w->Pending(2) || w->Pending(3) || w->Pending(4));
  EXPECT_TRUE(w->Pending(5));
  EXPECT_THAT(Fire(w.get(), kStart + 40 * kMs), ElementsAre(5));
}

TEST(TimerWheelTest, FarDeadlinesBeyondTheSpan) {
  // 64 slots of 1 ms: level 0 spans 64 ms, level 1 spans 4.096 s. Each
  // deadline must fire exactly at its tick when the clock steps 1 ms at a
  // time: not early, not a tick late.
  auto w = MakeWheel(8, kMs, kStart, 64);
  const uint64_t deadlines[] = {
      63 * kMs,  64 * kMs,        65 * kMs,      4095 * kMs,     4096 * kMs,
      4097 * kMs, 3 * 4096 * kMs + 17 * kMs, 3 * kHour / 1000 + 1};
  for (uint32_t id = 0; id < 8; ++id) w->Schedule(id, kStart + deadlines[id]);
  std::vector<uint64_t> fired_at(8, 0);
  for (uint64_t now = kStart; now <= kStart + 13 * kSec; now += kMs) {
    w->Advance(now, [&](uint32_t id) {
      EXPECT_EQ(fired_at[id], 0u) << "fired twice: " << id;
      fired_at[id] = now;
    });
  }
  for (uint32_t id = 0; id < 8; ++id) {
    const uint64_t due = kStart + (deadlines[id] + kMs - 1) / kMs * kMs;
    EXPECT_EQ(fired_at[id], due) << "id " << id;
  }
}

TEST(TimerWheelTest, DeadlinesBeyondBothLevelsFireOnTime) {
  // Beyond slots^2 ticks (4.096 s here) a timer sits in level 1 for more
  // than one turn; it must survive the turns it is not due in.
  auto w = MakeWheel(4, kMs, kStart, 64);
  w->Schedule(0, kStart + 10 * kSec + 3 * kMs);
  w->Schedule(1, kStart + 4096 * kMs * 5);
  w->Schedule(2, kStart + 2 * kHour);
  uint64_t fired0 = 0, fired1 = 0, fired2 = 0;
  for (uint64_t now = kStart; now <= kStart + 2 * kHour + kSec; now += kMs) {
    w->Advance(now, [&](uint32_t id) {
      (id == 0 ? fired0 : id == 1 ? fired1 : fired2) = now;
    });
  }
  EXPECT_EQ(fired0, kStart + 10 * kSec + 3 * kMs);
  EXPECT_EQ(fired1, kStart + 4096 * kMs * 5);
  EXPECT_EQ(fired2, kStart + 2 * kHour);
}

TEST(TimerWheelTest, MaxBoundsWorkAndTheRestFiresNextCall) {
  auto w = MakeWheel(1000);
  // 400 timers due at 1 ms, 600 spread over 2..7 ms.
  for (uint32_t id = 0; id < 400; ++id) w->Schedule(id, kStart + kMs);
  for (uint32_t id = 400; id < 1000; ++id) w->Schedule(id, kStart + (2 + id % 6) * kMs);
  std::vector<uint32_t> all;
  std::vector<uint64_t> tick_of;
  const uint64_t now = kStart + 10 * kMs;
  size_t calls = 0;
  for (;;) {
    std::vector<uint32_t> got = Fire(w.get(), now, 64);
    ++calls;
    ASSERT_LE(got.size(), 64u);
    all.insert(all.end(), got.begin(), got.end());
    if (got.size() < 64) break;
  }
  EXPECT_EQ(calls, 16u);  // 15 full calls of 64 and one of 40
  ASSERT_EQ(all.size(), 1000u);
  std::vector<uint32_t> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::unique(sorted.begin(), sorted.end()), sorted.end());
  // Stopping mid-tick did not break deadline order.
  for (size_t i = 1; i < all.size(); ++i) {
    ASSERT_LE(w->Deadline(all[i - 1]), w->Deadline(all[i])) << i;
  }
  EXPECT_EQ(w->pending_count(), 0u);
  EXPECT_THAT(Fire(w.get(), now, 0), IsEmpty());
}

TEST(TimerWheelTest, ZeroBudgetFiresNothing) {
  auto w = MakeWheel(4);
  w->Schedule(0, kStart);
  EXPECT_THAT(Fire(w.get(), kStart + kSec, 0), IsEmpty());
  EXPECT_TRUE(w->Pending(0));
  EXPECT_THAT(Fire(w.get(), kStart + kSec), ElementsAre(0));
}

TEST(TimerWheelTest, ScheduleBetweenBudgetedCallsKeepsOrder) {
  auto w = MakeWheel(10);
  for (uint32_t id = 0; id < 5; ++id) w->Schedule(id, kStart + 5 * kMs);
  w->Schedule(5, kStart + 8 * kMs);
  EXPECT_EQ(Fire(w.get(), kStart + 9 * kMs, 2).size(), 2u);
  // The wheel stopped inside the 5 ms tick; a timer due earlier still
  // comes before the 8 ms one.
  w->Schedule(6, kStart + 6 * kMs);
  std::vector<uint32_t> rest = Fire(w.get(), kStart + 9 * kMs);
  ASSERT_EQ(rest.size(), 5u);
  EXPECT_EQ(rest[3], 6u);
  EXPECT_EQ(rest[4], 5u);
}

TEST(TimerWheelTest, ClockJumpOfHoursFiresEverythingOnce) {
  for (uint32_t slots : {64u, 4096u}) {
    for (size_t budget : {SIZE_MAX, size_t{7}}) {
      SCOPED_TRACE(testing::Message() << "slots " << slots << " budget " << budget);
      constexpr uint32_t kN = 5000;
      auto w = MakeWheel(kN + 1, kMs, kStart, slots);
      std::mt19937_64 rng(slots + budget);
      for (uint32_t id = 0; id < kN; ++id) w->Schedule(id, kStart + rng() % (10 * kHour));
      w->Schedule(kN, kStart + 30 * kHour);  // still in the future after the jump
      std::vector<int> count(kN + 1);
      const uint64_t now = kStart + 20 * kHour;
      size_t got;
      size_t calls = 0;
      do {
        got = w->Advance(now, [&](uint32_t id) {
          ++count[id];
          EXPECT_LE(w->Deadline(id), now);
        }, budget);
        ++calls;
      } while (got == budget);
      EXPECT_THAT(std::vector<int>(count.begin(), count.begin() + kN), testing::Each(1));
      EXPECT_EQ(count[kN], 0);
      EXPECT_TRUE(w->Pending(kN));
      // The wheel keeps working after the jump.
      w->Schedule(0, now + 5 * kMs);
      EXPECT_THAT(Fire(w.get(), now + 4 * kMs), IsEmpty());
      EXPECT_THAT(Fire(w.get(), now + 5 * kMs), ElementsAre(0));
      EXPECT_THAT(Fire(w.get(), kStart + 30 * kHour - 1), IsEmpty());
      EXPECT_THAT(Fire(w.get(), kStart + 30 * kHour), ElementsAre(kN));
    }
  }
}

TEST(TimerWheelTest, HugeClockJumpIsBoundedWork) {
  // 1 ns ticks and a jump of 10^18 ticks: stepping through the level-1
  // epochs one by one would never finish (1.5e16 of them); the wheel must
  // fast-forward to the last level-1 turn. The test timeout is the check.
  auto w = MakeWheel(300, /*tick_ns=*/1, /*now_ns=*/0, 64);
  std::mt19937_64 rng(3);
  for (uint32_t id = 0; id < 200; ++id) w->Schedule(id, rng() % 1'000'000'000'000'000ull);
  for (uint32_t id = 200; id < 300; ++id) w->Schedule(id, 2'000'000'000'000'000'000ull + id);
  std::vector<int> count(300);
  w->Advance(1'000'000'000'000'000'000ull, [&](uint32_t id) { ++count[id]; });
  EXPECT_THAT(std::vector<int>(count.begin(), count.begin() + 200), testing::Each(1));
  EXPECT_THAT(std::vector<int>(count.begin() + 200, count.end()), testing::Each(0));
  EXPECT_EQ(w->pending_count(), 100u);
  w->Advance(3'000'000'000'000'000'000ull, [&](uint32_t id) { ++count[id]; });
  EXPECT_THAT(count, testing::Each(1));
}

TEST(TimerWheelTest, JumpWithinLevelOneTurnKeepsOrder) {
  // A pause shorter than slots^2 ticks (64 slots: 4096 ms) loses no order.
  auto w = MakeWheel(500, kMs, kStart, 64);
  std::mt19937_64 rng(9);
  for (uint32_t id = 0; id < 500; ++id) w->Schedule(id, kStart + rng() % (4000 * kMs));
  std::vector<uint32_t> fired = Fire(w.get(), kStart + 4000 * kMs);
  ASSERT_EQ(fired.size(), 500u);
  for (size_t i = 1; i < fired.size(); ++i) {
    ASSERT_LE((w->Deadline(fired[i - 1]) + kMs - 1) / kMs, (w->Deadline(fired[i]) + kMs - 1) / kMs);
  }
}

TEST(TimerWheelTest, ClockStandingStillOrGoingBackIsHarmless) {
  auto w = MakeWheel(4);
  w->Schedule(0, kStart + 2 * kMs);
  EXPECT_THAT(Fire(w.get(), kStart + kMs), IsEmpty());
  EXPECT_THAT(Fire(w.get(), kStart), IsEmpty());  // earlier than the last call
  EXPECT_THAT(Fire(w.get(), 0), IsEmpty());
  EXPECT_THAT(Fire(w.get(), kStart + 2 * kMs), ElementsAre(0));
}

TEST(TimerWheelTest, SmallTickAndHugeDeadline) {
  auto w = MakeWheel(2, /*tick_ns=*/1, /*now_ns=*/0, 64);
  w->Schedule(0, UINT64_MAX);  // never due within any realistic run
  w->Schedule(1, 100);
  EXPECT_THAT(Fire(w.get(), 1'000'000), ElementsAre(1));
  EXPECT_TRUE(w->Pending(0));
}

// Random operations against a model: id -> {deadline, due tick}. Checks
// that nothing fires early, twice or after being cancelled, that a
// completed Advance leaves nothing due behind, and (when the clock has not
// jumped a whole level-1 turn) that timers fire in tick order.
void RandomAgainstModel(uint32_t slots, uint64_t tick, uint32_t seed, int rounds) {
  SCOPED_TRACE(testing::Message() << "slots " << slots << " seed " << seed);
  constexpr uint32_t kIds = 300;
  const uint64_t span0 = slots * tick;
  const uint64_t span1 = span0 * slots;
  uint64_t now = 12345 * tick + 7;
  auto w = MakeWheel(kIds, tick, now, slots);
  std::mt19937_64 rng(seed);
  struct Timer {
    uint64_t deadline;
    uint64_t due_tick;  // ceil(deadline / tick), or later if it was scheduled in the past
  };
  std::map<uint32_t, Timer> model;
  // The earliest tick Schedule() can use now: exact after a completed
  // Advance (the wheel has processed every tick up to its now), an upper
  // bound after one that ran out of budget.
  uint64_t floor_tick = now / tick;
  uint64_t caught_up_tick = now / tick;  // now of the last completed Advance
  bool last_complete = true;
  auto schedule = [&](uint32_t id, uint64_t d, uint64_t floor) {
    w->Schedule(id, d);
    model[id] = Timer{d, std::max((d + tick - 1) / tick, floor)};
  };

  auto random_deadline = [&](uint64_t base) -> uint64_t {
    switch (rng() % 8) {
      case 0: return base > span0 ? base - rng() % span0 : 0;  // past
      case 1: case 2: case 3: return base + rng() % span0;
      case 4: case 5: return base + rng() % span1;
      case 6: return base + rng() % (3 * span1);
      default: return base + rng() % (4 * tick);
    }
  };

  for (int round = 0; round < rounds; ++round) {
    const int ops = static_cast<int>(rng() % 6);
    for (int i = 0; i < ops; ++i) {
      const uint32_t id = static_cast<uint32_t>(rng() % kIds);
      if (rng() % 4 == 0) {
        w->Cancel(id);
        model.erase(id);
      } else {
        schedule(id, random_deadline(now), floor_tick);
      }
    }
    ASSERT_EQ(w->pending_count(), model.size());
    uint64_t step;
    switch (rng() % 20) {
      case 0: step = rng() % (2 * span0); break;
      case 1: step = rng() % (2 * span1); break;  // sometimes more than a level-1 turn
      default: step = rng() % (3 * tick); break;
    }
    now += step;
    const uint64_t now_tick = now / tick;
    const size_t budget = rng() % 4 == 0 ? 1 + rng() % 5 : SIZE_MAX;
    const bool check_order =
        budget == SIZE_MAX && last_complete && now_tick - caught_up_tick < (slots - 1) * slots;
    uint64_t last_fired_tick = 0;
    const size_t fired = w->Advance(now, [&](uint32_t id) {
      auto it = model.find(id);
      ASSERT_NE(it, model.end()) << "fired a timer that is not pending: " << id;
      ASSERT_LE(it->second.deadline, now) << "fired early: " << id;
      if (check_order) {
        ASSERT_GE(it->second.due_tick, last_fired_tick) << "out of order: " << id;
        last_fired_tick = it->second.due_tick;
      }
      model.erase(it);
      // Callbacks poke at the wheel too, only into the future so a
      // completed Advance still means "nothing due is left".
      switch (rng() % 6) {
        case 0:
          schedule(id, now + 1 + rng() % span0, 0);
          break;
        case 1: {
          const uint32_t other = static_cast<uint32_t>(rng() % kIds);
          w->Cancel(other);
          model.erase(other);
          break;
        }
        case 2:
          schedule(static_cast<uint32_t>(rng() % kIds), now + 1 + rng() % (2 * span1), 0);
          break;
        default: break;
      }
    }, budget);
    ASSERT_FALSE(testing::Test::HasFatalFailure());
    ASSERT_LE(fired, budget);
    ASSERT_EQ(w->pending_count(), model.size());
    last_complete = fired < budget;
    floor_tick = std::max(floor_tick, now_tick + 1);
    if (last_complete) {
      for (const auto& [id, t] : model) {
        ASSERT_GT(t.due_tick, now_tick) << "left behind: " << id << " at round " << round;
      }
      caught_up_tick = now_tick;
    }
  }
}

TEST(TimerWheelTest, RandomOperationsMatchModel64Slots) {
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    RandomAgainstModel(64, 1000, seed, 50'000);
    if (HasFatalFailure()) return;
  }
}

TEST(TimerWheelTest, RandomOperationsMatchModel256Slots) {
  RandomAgainstModel(256, 1, 11, 50'000);
}

}  // namespace
}  // namespace moat::flow
