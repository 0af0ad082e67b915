// Engine::Reconfigure (policy.cc): a reload's new services, rate limit and
// lists take effect between bursts while every flow keeps its state. A
// service that leaves --protect keeps its flows spliced until they end;
// new connections to it are bridged; a new service is answered.

#include <string>

#include "engine_harness.h"
#include "gtest/gtest.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpFin;
using net::kTcpSyn;

constexpr uint16_t kNewPort = 81;

EngineConfig WithServices(const char* protect) {
  EngineConfig c = DefaultConfig();
  auto s = ParseProtect(protect);
  EXPECT_TRUE(s.ok()) << s.status();
  c.services = *s;
  return c;
}

// The default services with port 80 removed and 81 added.
EngineConfig Moved() { return WithServices("198.18.1.2:81,[2001:2::2]:81"); }

class PolicyTest : public FamilyTest {
 protected:
  Harness h_;
};

MOAT_FAMILIES(PolicyTest);

TEST_P(PolicyTest, FlowsOfARemovedServiceAreStillSplicedUntilTheyEnd) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  ASSERT_EQ(h_.engine().flow_count(), 1u);
  h_.engine().Reconfigure(Moved());
  EXPECT_EQ(h_.Count(Counter::k_config_reloads), 1u);
  EXPECT_EQ(h_.Count(Counter::k_services_retired), 2u);
  EXPECT_EQ(h_.engine().retired_services().size(), 2u);
  const uint64_t bridged = h_.Count(Counter::k_bridged);

  // Data both ways is still translated (a bridged segment would carry the
  // client-leg numbers to the backend unchanged).
  const uint32_t cs = c.client_isn + 1, ks = c.cookie_isn + 1, bs = c.backend_isn + 1;
  Seen out;
  ASSERT_EQ(
      h_.Send(Side::kClient,
              c.C().Seq(cs).Ack(ks).PayloadSize(100).Timestamps(c.client_tsval + 1, c.synack_tsval), &out),
      Verdict::kForward);
  EXPECT_EQ(out.ack(), bs);
  EXPECT_EQ(out.opts.tsecr, c.backend_tsval);
  ASSERT_EQ(
      h_.Send(Side::kServer,
              c.S().Seq(bs).Ack(cs + 100).PayloadSize(200).Timestamps(c.backend_tsval + 1, c.client_tsval + 1),
              &out),
      Verdict::kForward);
  EXPECT_EQ(out.seq(), ks);
  EXPECT_EQ(out.opts.tsval, c.backend_tsval + 1 + c.ts_delta());
  EXPECT_EQ(h_.Count(Counter::k_fwd_client_to_server), 1u);
  EXPECT_EQ(h_.Count(Counter::k_fwd_server_to_client), 1u);
  EXPECT_EQ(h_.Count(Counter::k_bridged), bridged);

  // ... and it closes as usual: FIN both ways, TIME_WAIT, gone.
  ASSERT_EQ(h_.Send(Side::kClient, c.C()
                                       .Seq(cs + 100)
                                       .Ack(ks + 200)
                                       .Flags(kTcpFin | kTcpAck)
                                       .Timestamps(c.client_tsval + 2, c.synack_tsval + 1)),
            Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kServer, c.S()
                                       .Seq(bs + 200)
                                       .Ack(cs + 101)
                                       .Flags(kTcpFin | kTcpAck)
                                       .Timestamps(c.backend_tsval + 2, c.client_tsval + 2)),
            Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kClient,
                    c.C().Seq(cs + 101).Ack(ks + 201).Timestamps(c.client_tsval + 3, c.synack_tsval + 2)),
            Verdict::kForward);
  EXPECT_EQ(h_.engine().FindFlow(c.key())->state, FlowState::kTimeWait);
  h_.Advance(6 * kSec);
  EXPECT_EQ(h_.engine().flow_count(), 0u);
  // The flow is gone: its segments are bridged now, unchanged.
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(cs + 101).Ack(ks + 201), &out), Verdict::kForward);
  EXPECT_EQ(out.ack(), ks + 201);
  EXPECT_EQ(h_.Count(Counter::k_bridged), bridged + 1);
}

TEST_P(PolicyTest, NewSynsToARemovedServiceAreBridgedAndANewServiceIsAnswered) {
  Conn old = MakeConn(40001);
  DriveToEstablished(h_, &old);  // keeps the retired service in use
  h_.engine().Reconfigure(Moved());

  Conn c = MakeConn(40002);
  Seen out;
  const uint64_t synacks = h_.Count(Counter::k_synack_sent);
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(c), &out), Verdict::kForward);
  EXPECT_EQ(out.flags(), kTcpSyn);  // the client's own SYN, to the backend
  EXPECT_EQ(out.seq(), c.client_isn);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), synacks);
  EXPECT_EQ(h_.Count(Counter::k_bridged), 1u);
  // The backend answers itself; that is bridged too, no flow is made.
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c), &out), Verdict::kForward);
  EXPECT_EQ(out.seq(), c.backend_isn);
  EXPECT_EQ(h_.Count(Counter::k_bridged), 2u);
  EXPECT_EQ(h_.engine().flow_count(), 1u);

  // Port 81 is protected now: moat answers with a cookie.
  Conn n = MakeConn(40003);
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(n).Ports(40003, kNewPort), &out), Verdict::kReflect);
  EXPECT_EQ(out.flags(), kTcpSyn | kTcpAck);
  EXPECT_EQ(out.v.src_port(), kNewPort);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), synacks + 1);
}

TEST_P(PolicyTest, ARemovedServiceProtectedAgainIsAnsweredAgain) {
  Conn c = MakeConn(40001);
  DriveToEstablished(h_, &c);
  h_.engine().Reconfigure(Moved());
  EXPECT_EQ(h_.Count(Counter::k_services_retired), 2u);
  h_.engine().Reconfigure(DefaultConfig());
  EXPECT_EQ(h_.Count(Counter::k_config_reloads), 2u);
  // Port 80 is no longer retired; port 81, just removed, is.
  const ServiceSet& retired = h_.engine().retired_services();
  ASSERT_EQ(retired.size(), 2u);
  EXPECT_EQ(retired[0].port_lo, kNewPort);
  EXPECT_EQ(retired[1].port_lo, kNewPort);
  Conn n = MakeConn(40002);
  Seen out;
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(n), &out), Verdict::kReflect);
  // The flow from before both reloads is still spliced.
  ASSERT_EQ(h_.Send(Side::kClient,
                    c.C()
                        .Seq(c.client_isn + 1)
                        .Ack(c.cookie_isn + 1)
                        .PayloadSize(5)
                        .Timestamps(c.client_tsval + 1, c.synack_tsval),
                    &out),
            Verdict::kForward);
  EXPECT_EQ(out.ack(), c.backend_isn + 1);
}

TEST_P(PolicyTest, ASynOnATimeWaitTupleOfARemovedServiceIsBridged) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  const uint32_t cs = c.client_isn + 1, ks = c.cookie_isn + 1, bs = c.backend_isn + 1;
  ASSERT_EQ(
      h_.Send(
          Side::kClient,
          c.C().Seq(cs).Ack(ks).Flags(kTcpFin | kTcpAck).Timestamps(c.client_tsval + 1, c.synack_tsval)),
      Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kServer, c.S()
                                       .Seq(bs)
                                       .Ack(cs + 1)
                                       .Flags(kTcpFin | kTcpAck)
                                       .Timestamps(c.backend_tsval + 1, c.client_tsval + 1)),
            Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kClient,
                    c.C().Seq(cs + 1).Ack(ks + 1).Timestamps(c.client_tsval + 2, c.synack_tsval + 1)),
            Verdict::kForward);
  ASSERT_EQ(h_.engine().FindFlow(c.key())->state, FlowState::kTimeWait);
  h_.engine().Reconfigure(Moved());
  // Protected, this SYN would replace the flow and get a cookie
  // (ReuseTimeWait); the service is gone, so it is the backend's.
  Conn again = c;
  again.client_isn = c.client_isn + 100000;
  Seen out;
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(again), &out), Verdict::kForward);
  EXPECT_EQ(out.flags(), kTcpSyn);
  EXPECT_EQ(h_.engine().flow_count(), 0u);
  EXPECT_EQ(h_.Count(Counter::k_time_wait_reuse), 0u);
}

TEST(Policy, RateLimitAndListsChangeAtRunTime) {
  Harness h;
  Conn c;
  for (int i = 0; i < 5; ++i) {
    c.client_port = static_cast<uint16_t>(30000 + i);
    ASSERT_EQ(h.Send(Side::kClient, ClientSyn(c)), Verdict::kReflect);
  }
  EngineConfig limited = DefaultConfig();
  limited.synack_rate = 2;
  h.engine().Reconfigure(limited);
  EXPECT_TRUE(h.engine().rate_limiter().enabled());
  int answered = 0;
  for (int i = 0; i < 5; ++i) {
    c.client_port = static_cast<uint16_t>(31000 + i);
    answered += h.Send(Side::kClient, ClientSyn(c)) == Verdict::kReflect;
  }
  EXPECT_EQ(answered, 2);
  EXPECT_EQ(h.Count(Counter::k_drop_synack_rate), 3u);
  // Deny the client's /24.
  EngineConfig denied = DefaultConfig();
  denied.deny = *ParsePrefixList("deny", "198.18.0.0/24");
  h.engine().Reconfigure(denied);
  EXPECT_FALSE(h.engine().rate_limiter().enabled());
  c.client_port = 32000;
  EXPECT_EQ(h.Send(Side::kClient, ClientSyn(c)), Verdict::kDrop);
  EXPECT_EQ(h.Count(Counter::k_drop_denied), 1u);
  // And back to nothing.
  h.engine().Reconfigure(DefaultConfig());
  EXPECT_EQ(h.Send(Side::kClient, ClientSyn(c)), Verdict::kReflect);
  EXPECT_EQ(h.Count(Counter::k_config_reloads), 3u);
  EXPECT_EQ(h.engine().config().synack_rate, 0u);
}

// The SYN cache retransmits SYN-ACKs (1 s, then 2 s more) to the same,
// maybe spoofed, source: each takes a token, or a limited prefix would get
// three SYN-ACKs for every one the limit allows.
TEST(Policy, SynCacheRetransmissionsTakeRateTokens) {
  EngineConfig c = CacheConfig();
  c.synack_rate = 2;
  Harness h(c);
  Conn conn;
  // 10 SYNs a second from one /24 for 3 s, well under the SYN cache's
  // flood threshold, so it keeps entries and retransmits.
  uint64_t synacks = 0;
  for (int i = 0; i < 30; ++i) {
    conn.client_port = static_cast<uint16_t>(30000 + i);
    h.ClearEmitted();
    synacks += h.Send(Side::kClient, ClientSyn(conn)) == Verdict::kReflect;
    h.Advance(100'000'000);
    synacks += h.emitted().size();  // retransmitted SYN-ACKs
  }
  // 2 a second and a burst of 2, originals and retransmissions together.
  EXPECT_LE(synacks, 2u * 3 + 2);
  EXPECT_GT(h.Count(Counter::k_synack_retransmit_limited), 0u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_to_cookie), 0u);
}

TEST(Policy, ADeniedPrefixGetsNoSynCacheRetransmissions) {
  Harness h(CacheConfig());
  Conn conn;
  ASSERT_EQ(h.Send(Side::kClient, ClientSyn(conn)), Verdict::kReflect);
  EngineConfig denied = CacheConfig();
  denied.deny = *ParsePrefixList("deny", "198.18.0.0/24");
  h.engine().Reconfigure(denied);
  h.ClearEmitted();
  h.Advance(1'100'000'000);
  EXPECT_TRUE(h.emitted().empty());
  EXPECT_EQ(h.Count(Counter::k_synack_retransmit), 0u);
  EXPECT_EQ(h.Count(Counter::k_synack_retransmit_limited), 1u);
}

TEST(Policy, OnlyThePolicyChanges) {
  Harness h;
  EngineConfig next = Moved();
  next.mss = 1200;
  next.flow_capacity = 7;
  next.idle_timeout_s = 5;
  h.engine().Reconfigure(next);
  EXPECT_EQ(h.engine().config().mss, 1460);
  EXPECT_EQ(h.engine().config().flow_capacity, 1024u);
  EXPECT_EQ(h.engine().config().idle_timeout_s, 300u);
  EXPECT_EQ(h.engine().config().services.ToString(), "198.18.1.2:81,[2001:2::2]:81");
}

TEST(Policy, RetiredServicesAreBoundedOldestForgottenFirst) {
  Harness h;
  // 70 reloads, each protecting one new port and dropping the last one.
  for (int i = 0; i < 70; ++i) {
    h.engine().Reconfigure(WithServices(("198.18.1.2:" + std::to_string(1000 + i)).c_str()));
  }
  const ServiceSet& r = h.engine().retired_services();
  EXPECT_EQ(r.size(), ServiceSet::kMaxRanges);
  EXPECT_EQ(h.Count(Counter::k_services_retired), ServiceSet::kMaxRanges);
  // The default services and ports 1000..1004 were forgotten; 1005..1068 kept.
  EXPECT_EQ(r[0].port_lo, 1005);
  EXPECT_EQ(r[r.size() - 1].port_lo, 1068);
}

}  // namespace
}  // namespace moat::proxy::testing
