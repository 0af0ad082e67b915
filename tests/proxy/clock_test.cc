// The engine's two clocks (engine.h, "Two clocks"; SECURITY.md, "Clocks"):
// flow timers run on monotonic time, cookies, key epochs and moat's TSval
// on wall-clock time. The harness injects both; StepWall() steps the wall
// clock an hour back or forward while flows are open, as `date -s` or a
// bad NTP server would.
//
// Driven the way the dataplane drove the engine before (one CLOCK_REALTIME
// time for everything: pass h.wall() where h.now() is passed), the timer
// tests fail: an hour forward expires every flow, TIME_WAIT and pending
// handshake at the next tick, an hour back freezes every timer for an hour.

#include <cstdint>
#include <cstring>
#include <ostream>

#include "engine_harness.h"
#include "gtest/gtest.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpFin;
using net::kTcpPsh;
using net::kTcpRst;
using net::kTcpSyn;

constexpr int64_t kHour = 3600 * static_cast<int64_t>(kSec);
// A realistic pair: monotonic time is time since boot, wall time is
// seconds since 1970.
constexpr uint64_t kBootMono = 200 * kSec;
constexpr uint64_t kWall = 1'764'590'400 * kSec;  // 2025-12-01 12:00 UTC

struct Step {
  const char* name;
  int64_t by;
};
void PrintTo(const Step& s, std::ostream* os) { *os << s.name; }

class ClockTest : public ::testing::TestWithParam<Step> {
 protected:
  explicit ClockTest(const EngineConfig& config = DefaultConfig()) : h_(config, kBootMono) {
    h_.SetWall(kWall);
  }
  int64_t step() const { return GetParam().by; }

  Conn MakeConn(uint16_t port) const {
    Conn c;
    c.client_port = port;
    return c;
  }
  // Data from the backend, spliced to the client: proves the flow is live.
  Verdict ServerData(const Conn& c, uint32_t offset, Seen* out = nullptr) {
    return h_.Send(Side::kServer,
                   c.S()
                       .Seq(c.backend_isn + 1 + offset)
                       .Ack(c.client_isn + 1)
                       .Flags(kTcpAck | kTcpPsh)
                       .PayloadFill(10, 'd')
                       .Timestamps(c.backend_tsval + 1, c.client_tsval),
                   out);
  }
  Verdict ClientData(const Conn& c, uint32_t offset) {
    return h_.Send(Side::kClient, c.C()
                                      .Seq(c.client_isn + 1 + offset)
                                      .Ack(c.cookie_isn + 1)
                                      .Flags(kTcpAck | kTcpPsh)
                                      .PayloadFill(10, 'u')
                                      .Timestamps(c.client_tsval + 1, c.synack_tsval));
  }

  Harness h_;
};

INSTANTIATE_TEST_SUITE_P(Steps, ClockTest,
                         ::testing::Values(Step{"HourBack", -kHour}, Step{"HourForward", kHour}),
                         [](const auto& info) { return info.param.name; });

// Established flows across the step: none expires at once (the old
// forward-step failure: idle deadlines an hour in the past), data keeps
// flowing both ways, and the idle timers still fire idle_timeout_s after
// the last segment on the monotonic clock (the old backward-step failure:
// nothing would expire for an hour and five minutes).
TEST_P(ClockTest, WallStepNeitherExpiresNorFreezesEstablishedFlows) {
  constexpr int kFlows = 8;
  Conn conns[kFlows];
  for (int i = 0; i < kFlows; ++i) {
    conns[i] = MakeConn(static_cast<uint16_t>(41000 + i));
    DriveToEstablished(h_, &conns[i]);
    ASSERT_EQ(ServerData(conns[i], 0), Verdict::kForward);
  }
  ASSERT_EQ(h_.engine().flow_count(), static_cast<uint32_t>(kFlows));
  h_.Advance(10 * kSec);
  h_.StepWall(step());
  h_.Advance(kMs);
  EXPECT_TRUE(h_.emitted().empty()) << "no RSTs at the step";
  EXPECT_EQ(h_.Count(Counter::k_flows_expired), 0u);
  EXPECT_EQ(h_.engine().flow_count(), static_cast<uint32_t>(kFlows));
  for (int i = 0; i < kFlows; ++i) {
    EXPECT_EQ(ClientData(conns[i], 0), Verdict::kForward) << i;
    EXPECT_EQ(ServerData(conns[i], 10), Verdict::kForward) << i;
  }
  // The last segments were 10 s + 1 ms after the first; idle expiry is
  // 300 s after them, to the tick.
  const uint64_t idle = uint64_t{DefaultConfig().idle_timeout_s} * kSec;
  h_.Advance(idle - 2 * kSec);
  EXPECT_EQ(h_.Count(Counter::k_flows_expired), 0u);
  h_.Advance(3 * kSec);
  EXPECT_EQ(h_.Count(Counter::k_flows_expired), static_cast<uint64_t>(kFlows));
  EXPECT_EQ(h_.Count(Counter::k_idle_rst_sent), static_cast<uint64_t>(kFlows));
  EXPECT_EQ(h_.engine().flow_count(), 0u);
}

// A flow whose backend has not answered, and one in TIME_WAIT: the backend
// SYN is retransmitted 1 s later, TIME_WAIT ends 5 s later, neither at the
// step nor an hour after it.
TEST_P(ClockTest, BackendSynRetransmitAndTimeWaitRunOnMonotonicTime) {
  Conn opening = MakeConn(42000);
  DriveToSynSent(h_, &opening);
  Conn closing = MakeConn(42001);
  DriveToEstablished(h_, &closing);
  const uint32_t cs = closing.client_isn + 1, bs = closing.backend_isn + 1;
  const uint32_t ks = closing.cookie_isn + 1;
  auto ts_c = [&](TcpPacket s) { return s.Timestamps(closing.client_tsval, closing.synack_tsval); };
  auto ts_s = [&](TcpPacket s) {
    return s.Timestamps(closing.backend_tsval, closing.client_tsval);
  };
  ASSERT_EQ(h_.Send(Side::kClient, ts_c(closing.C().Seq(cs).Ack(ks).Flags(kTcpFin | kTcpAck))),
            Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kServer, ts_s(closing.S().Seq(bs).Ack(cs + 1).Flags(kTcpFin | kTcpAck))),
            Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kClient, ts_c(closing.C().Seq(cs + 1).Ack(ks + 1))), Verdict::kForward);
  const Flow* tw = h_.engine().FindFlow(closing.key());
  ASSERT_NE(tw, nullptr);
  ASSERT_EQ(tw->state, FlowState::kTimeWait);

  h_.Advance(500 * kMs);
  h_.StepWall(step());
  h_.Advance(kMs);
  EXPECT_TRUE(h_.emitted().empty());
  EXPECT_NE(h_.engine().FindFlow(closing.key()), nullptr) << "TIME_WAIT ended at the step";
  EXPECT_NE(h_.engine().FindFlow(opening.key()), nullptr);
  EXPECT_EQ(h_.Count(Counter::k_backend_syn_retransmit), 0u);

  h_.Advance(499 * kMs);  // 1 s after the backend SYN
  ASSERT_EQ(h_.emitted().size(), 1u) << "the backend SYN retransmission did not fire";
  EXPECT_EQ(h_.emitted()[0].side, Side::kServer);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpSyn);
  EXPECT_EQ(h_.Count(Counter::k_backend_syn_retransmit), 1u);
  // The rest in 10 ms steps, as a worker's ticks would go.
  uint64_t since_syn = kSec;
  auto run_until = [&](uint64_t t) {
    for (; since_syn < t; since_syn += 10 * kMs) h_.Advance(10 * kMs);
  };
  run_until(5 * kSec - 10 * kMs);
  EXPECT_NE(h_.engine().FindFlow(closing.key()), nullptr);
  run_until(5 * kSec + 10 * kMs);  // 5 s after the last ACK
  EXPECT_EQ(h_.engine().FindFlow(closing.key()), nullptr) << "TIME_WAIT never ended";
  EXPECT_EQ(h_.Count(Counter::k_flows_closed), 1u);
  // The backend handshake gives up on schedule: SYNs at 0, 1, 3, 7 s, the
  // client reset at 15 s.
  EXPECT_EQ(h_.Count(Counter::k_backend_syn_retransmit), 2u);
  run_until(15 * kSec - 10 * kMs);
  EXPECT_EQ(h_.Count(Counter::k_backend_syn_retransmit), 3u);
  EXPECT_EQ(h_.Count(Counter::k_backend_timeout), 0u);
  run_until(15 * kSec + 10 * kMs);
  EXPECT_EQ(h_.Count(Counter::k_backend_timeout), 1u);
  EXPECT_EQ(h_.engine().FindFlow(opening.key()), nullptr);
}

// An in-window RST just before the step: the keep-alive probe goes out
// time_wait_ms (5 s) later on monotonic time, and the probe's answer keeps
// the flow.
TEST_P(ClockTest, RstConfirmationProbesRunOnMonotonicTime) {
  Conn c = MakeConn(42100);
  DriveToEstablished(h_, &c);
  ASSERT_EQ(h_.Send(Side::kServer, c.S()
                                       .Seq(c.backend_isn + 1)
                                       .Ack(c.client_isn + 1)
                                       .Window(400)
                                       .Timestamps(c.backend_tsval + 5, c.client_tsval)),
            Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(c.client_isn + 1 + 1000).Ack(0).Flags(kTcpRst)),
            Verdict::kForward);
  h_.StepWall(step());
  h_.Advance(kMs);
  EXPECT_TRUE(h_.emitted().empty());
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
  h_.Advance(5 * kSec);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_sent), 1u) << "the probe did not fire";
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].side, Side::kServer);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_unanswered), 0u);
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
}

// A cookie made before the step is checked against the wall clock's slot
// after it: an hour either way is far outside its 60-120 s life, so it
// fails like a forgery (counted, no state, no reply), as SECURITY.md
// documents. Cookies made after the step validate: the key schedule
// follows the wall clock back as well as forward.
TEST_P(ClockTest, CookieMadeBeforeAnHourStepIsRejectedAndNewOnesWork) {
  Conn before = MakeConn(43000);
  DoSyn(h_, &before);
  h_.Advance(kSec);
  h_.StepWall(step());
  EXPECT_EQ(h_.Send(Side::kClient, ClientHandshakeAck(before)), Verdict::kDrop);
  EXPECT_TRUE(h_.emitted().empty());
  EXPECT_EQ(h_.Count(Counter::k_cookie_invalid), 1u);
  EXPECT_EQ(h_.engine().flow_count(), 0u);

  Conn after = MakeConn(43001);
  DriveToSynSent(h_, &after);
  EXPECT_EQ(h_.Count(Counter::k_cookie_valid), 1u);
  const Flow* f = h_.engine().FindFlow(after.key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kSynSent);
}

class ClockCacheTest : public ClockTest {
 protected:
  ClockCacheTest() : ClockTest(CacheConfig()) {}
};

INSTANTIATE_TEST_SUITE_P(Steps, ClockCacheTest,
                         ::testing::Values(Step{"HourBack", -kHour}, Step{"HourForward", kHour}),
                         [](const auto& info) { return info.param.name; });

// A SYN-cache entry across the step: the SYN-ACK is retransmitted 1 s and
// 3 s after the SYN and the entry forgotten 7 s after it, on monotonic
// time. The retransmission carries a cookie of the new wall clock, so a
// client that only gets that one completes its handshake.
TEST_P(ClockCacheTest, SynCacheRetransmitsAndExpiresOnMonotonicTime) {
  Conn c = MakeConn(44000);
  DoSyn(h_, &c);
  h_.Advance(500 * kMs);
  h_.StepWall(step());
  h_.Advance(kMs);
  EXPECT_TRUE(h_.emitted().empty());
  EXPECT_EQ(h_.engine().syn_cache()->size(), 1u) << "the entry expired at the step";
  h_.Advance(499 * kMs);
  ASSERT_EQ(h_.emitted().size(), 1u) << "no SYN-ACK retransmission 1 s after the SYN";
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpSyn | kTcpAck);
  EXPECT_EQ(h_.Count(Counter::k_synack_retransmit), 1u);
  h_.Advance(2 * kSec);
  EXPECT_EQ(h_.Count(Counter::k_synack_retransmit), 2u);
  ASSERT_EQ(h_.emitted().size(), 1u);
  Conn again = c;
  again.cookie_isn = h_.emitted()[0].seq();
  again.synack_tsval = h_.emitted()[0].opts.tsval;
  h_.Advance(3999 * kMs);
  EXPECT_EQ(h_.engine().syn_cache()->size(), 1u);
  h_.Advance(kMs);  // 7 s after the SYN
  EXPECT_EQ(h_.engine().syn_cache()->size(), 0u);
  EXPECT_EQ(h_.Count(Counter::k_syn_cache_expired), 1u);
  EXPECT_EQ(h_.Send(Side::kClient, ClientHandshakeAck(again)), Verdict::kConsumed);
  EXPECT_EQ(h_.Count(Counter::k_cookie_valid), 1u);
}

// What a SYN-ACK carries (cookie ISN, the TSval, the Fast Open cookie) is a
// function of the wall clock alone: an engine whose monotonic clock is
// 200 s since boot answers byte for byte like one whose single clock is
// the wall clock, which is what lets a fleet validate each other's
// cookies. Fails if any of them were taken from the monotonic clock.
TEST(ClockWallTest, SynAckDependsOnTheWallClockOnly) {
  EngineConfig config = CacheConfig();
  config.fastopen = true;
  Harness booted(config, kBootMono);
  booted.SetWall(kWall);
  Harness reference(config, kWall);
  for (bool v6 : {false, true}) {
    Conn c;
    c.v6 = v6;
    c.ecn = true;
    const TcpPacket syn = ClientSyn(c).FastOpenRequest();
    Seen a, b;
    ASSERT_EQ(booted.Send(Side::kClient, syn, &a), Verdict::kReflect);
    ASSERT_EQ(reference.Send(Side::kClient, syn, &b), Verdict::kReflect);
    ASSERT_EQ(a.frame->len, b.frame->len);
    EXPECT_EQ(std::memcmp(a.frame->buf, b.frame->buf, a.frame->len), 0) << "v6=" << v6;
    // The TSval is wall-clock milliseconds, the low 6 bits replaced.
    EXPECT_EQ(a.opts.tsval >> 6, static_cast<uint32_t>(kWall / kMs) >> 6);
    // The reference engine's cookie completes the handshake on the booted
    // one (another instance of a fleet).
    c.cookie_isn = b.seq();
    c.synack_tsval = b.opts.tsval;
    EXPECT_EQ(booted.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kConsumed);
  }
  EXPECT_EQ(booted.Count(Counter::k_cookie_valid), 2u);
}

}  // namespace
}  // namespace moat::proxy::testing
