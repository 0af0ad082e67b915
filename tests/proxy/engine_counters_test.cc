// One focused scenario per counter that no other test reads: each drives
// the engine into the one situation that must bump it, and checks the
// exact change of every counter around that step (ExpectCounterDeltas), so
// a counter bumped twice, not at all, or next to an unexpected one fails.
// counter_coverage_test.cc keeps it that way for counters added later.

#include <cstring>
#include <vector>

#include "engine_harness.h"
#include "gtest/gtest.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpFin;
using net::kTcpPsh;
using net::kTcpRst;
using net::kTcpSyn;

class EngineCounterTest : public FamilyTest {
 protected:
  // The MSS moat advertises for this family (--mss is the IPv4 value).
  uint16_t AdvertisedMss() const { return v6() ? 1440 : 1460; }
  Harness h_;
};

MOAT_FAMILIES(EngineCounterTest);

// ---------------------------------------------------------------------------
// Backend handshake mismatches: counted, the splice goes on.

TEST_P(EngineCounterTest, BackendSynAckWithoutTimestampsIsATimestampMismatch) {
  Conn c = MakeConn();
  c.backend_ts = false;
  DriveToSynSent(h_, &c);
  const auto before = h_.Snapshot();
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  ExpectCounterDeltas(before, h_.Snapshot(),
                      {{Counter::k_backend_synack, 1}, {Counter::k_backend_ts_mismatch, 1}});
  // The third ACK speaks the backend's dialect: no timestamps.
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpAck);
  EXPECT_FALSE(h_.emitted()[0].opts.has_timestamps);
  // Spliced data still flows.
  EXPECT_EQ(h_.Send(Side::kServer,
                    c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).PayloadFill(10, 'x')),
            Verdict::kForward);
}

TEST_P(EngineCounterTest, NoTimestampMismatchWhenTheClientDidNotUseThem) {
  Conn c = MakeConn();
  c.ts = false;
  c.backend_ts = false;
  DriveToSynSent(h_, &c);
  const auto before = h_.Snapshot();
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  ExpectCounterDeltas(before, h_.Snapshot(), {{Counter::k_backend_synack, 1}});
}

TEST_P(EngineCounterTest, BackendMssBelowTheAdvertisedOneIsCounted) {
  Conn c = MakeConn();
  c.backend_mss = static_cast<uint16_t>(AdvertisedMss() - 1);
  DriveToSynSent(h_, &c);
  const auto before = h_.Snapshot();
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  ExpectCounterDeltas(before, h_.Snapshot(),
                      {{Counter::k_backend_synack, 1}, {Counter::k_backend_mss_smaller, 1}});
}

TEST_P(EngineCounterTest, BackendMssEqualToTheAdvertisedOneIsFine) {
  Conn c = MakeConn();
  c.backend_mss = AdvertisedMss();
  DriveToSynSent(h_, &c);
  const auto before = h_.Snapshot();
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  ExpectCounterDeltas(before, h_.Snapshot(), {{Counter::k_backend_synack, 1}});
}

// ---------------------------------------------------------------------------
// Backend-opened flows: every segment counted as passed through, none as
// translated.

TEST_P(EngineCounterTest, EverySegmentOfABackendOpenedFlowIsCountedAsPassedThrough) {
  const Endpoints e = EndpointsFor(v6());
  auto pass = [&](Side in, const TcpPacket& s, std::initializer_list<CounterDelta> deltas) {
    Frame f = s.BuildFrame();
    const Frame copy = f;
    const auto before = h_.Snapshot();
    EXPECT_EQ(h_.Send(in, f), Verdict::kForward);
    EXPECT_EQ(std::memcmp(f.buf, copy.buf, copy.len), 0) << "passed through unchanged";
    EXPECT_TRUE(h_.emitted().empty());
    ExpectCounterDeltas(before, h_.Snapshot(), deltas);
  };
  // The backend's SYN creates the flow.
  pass(Side::kServer, SegmentDefaults(e.FromServer()).Seq(5000).Flags(kTcpSyn).Mss(1460),
       {{Counter::k_flows_passthrough, 1},
        {Counter::k_flows_active, 1},
        {Counter::k_passthrough_forwarded, 1}});
  pass(Side::kClient,
       SegmentDefaults(e.FromClient()).Seq(9000).Ack(5001).Flags(kTcpSyn | kTcpAck).Mss(1460),
       {{Counter::k_passthrough_forwarded, 1}});
  pass(Side::kServer, SegmentDefaults(e.FromServer()).Seq(5001).Ack(9001).PayloadFill(100, 'x'),
       {{Counter::k_passthrough_forwarded, 1}});
  pass(Side::kClient, SegmentDefaults(e.FromClient()).Seq(9001).Ack(5101).PayloadFill(50, 'x'),
       {{Counter::k_passthrough_forwarded, 1}});
  EXPECT_EQ(h_.Count(Counter::k_passthrough_forwarded), 4u);
}

// ---------------------------------------------------------------------------
// drop_unexpected: segments that fit no state of their flow.

struct UnexpectedCase {
  const char* name;
  bool established;  // else the flow waits for the backend's SYN-ACK
  bool from_client;
  uint8_t flags;
};

class UnexpectedTest : public ::testing::TestWithParam<UnexpectedCase> {};

TEST_P(UnexpectedTest, IsDroppedAndLeavesTheFlowAsItWas) {
  const UnexpectedCase& t = GetParam();
  Harness h;
  Conn c;
  if (t.established) {
    DriveToEstablished(h, &c);
  } else {
    DriveToSynSent(h, &c);
  }
  TcpPacket s = t.from_client ? c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1)
                              : c.S().Seq(c.backend_isn + 1000).Ack(c.client_isn + 1);
  s.Flags(t.flags).Mss(1460);
  const auto before = h.Snapshot();
  EXPECT_EQ(h.Send(t.from_client ? Side::kClient : Side::kServer, s), Verdict::kDrop);
  EXPECT_TRUE(h.emitted().empty());
  ExpectCounterDeltas(before, h.Snapshot(), {{Counter::k_drop_unexpected, 1}});
  EXPECT_NE(h.engine().FindFlow(c.key()), nullptr);
  if (t.established) {
    // The flow still splices.
    Seen out;
    ASSERT_EQ(h.Send(Side::kServer,
                     c.S()
                         .Seq(c.backend_isn + 1)
                         .Ack(c.client_isn + 1)
                         .Timestamps(c.backend_tsval, c.client_tsval)
                         .PayloadFill(10, 'x'),
                     &out),
              Verdict::kForward);
    EXPECT_EQ(out.seq(), c.cookie_isn + 1);
  } else {
    // The backend handshake still completes.
    EXPECT_EQ(h.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
    EXPECT_EQ(h.Count(Counter::k_backend_synack), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, UnexpectedTest,
    ::testing::Values(
        // A SYN from the server side of a spliced flow: the backend's
        // handshake is over (and was with moat, not with this sender).
        UnexpectedCase{"ServerSynOnSplicedFlow", true, false, kTcpSyn},
        // A SYN-ACK that is not the retransmission of the one moat answered
        // (another ISN).
        UnexpectedCase{"ServerSynAckWithAnotherIsn", true, false, kTcpSyn | kTcpAck},
        UnexpectedCase{"ClientSynAckOnSplicedFlow", true, true, kTcpSyn | kTcpAck},
        // The client finished its handshake with moat: a SYN now is stray.
        UnexpectedCase{"ClientSynDuringBackendHandshake", false, true, kTcpSyn}),
    [](const auto& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------
// The Output: what happens when a caller did not leave the room the engine
// asks for (kMaxEmittedPerPacket). Never in the dataplane; counted so that
// such a bug shows.

TEST(EngineOutputTest, SynAckWithNoRoomAnywhereIsDroppedAsNoRoom) {
  Harness h;
  Conn c;
  // A SYN without options is shorter than the SYN-ACK (which has an MSS),
  // so it cannot be answered in place within its own length ...
  Frame f = c.C().Seq(c.client_isn).Flags(kTcpSyn).BuildFrame();
  const uint16_t cap = f.len;
  // ... and the Output is full.
  h.FillOutput(0);
  const auto before = h.Snapshot();
  EXPECT_EQ(h.engine().Process(Side::kClient, f.buf, &f.len, cap, h.now(), h.out()),
            Verdict::kDrop);
  EXPECT_EQ(h.out()->size(), kMaxEmitted) << "nothing appended";
  h.ClearEmitted();
  h.Drain();
  EXPECT_TRUE(h.emitted().empty());
  ExpectCounterDeltas(before, h.Snapshot(),
                      {{Counter::k_syn_received, 1}, {Counter::k_drop_no_room, 1}});
  EXPECT_EQ(h.engine().flow_count(), 0u);

  // One free slot is enough: the SYN-ACK goes there instead.
  Frame g = c.C().Seq(c.client_isn).Flags(kTcpSyn).BuildFrame();
  h.FillOutput(1);
  const auto before2 = h.Snapshot();
  EXPECT_EQ(h.engine().Process(Side::kClient, g.buf, &g.len, cap, h.now(), h.out()),
            Verdict::kConsumed);
  h.ClearEmitted();
  h.Drain();
  ASSERT_EQ(h.emitted().size(), 1u);
  EXPECT_EQ(h.emitted()[0].flags(), kTcpSyn | kTcpAck);
  ExpectCounterDeltas(before2, h.Snapshot(),
                      {{Counter::k_syn_received, 1}, {Counter::k_synack_sent, 1}});
}

TEST(EngineOutputTest, FullOutputLosesTheBackendSynUntilItIsRetransmitted) {
  Harness h;
  Conn c;
  DoSyn(h, &c);
  h.FillOutput(0);
  const auto before = h.Snapshot();
  ASSERT_EQ(h.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kConsumed);
  EXPECT_TRUE(h.emitted().empty());
  // The flow stands, the SYN is lost (not counted as sent).
  ExpectCounterDeltas(before, h.Snapshot(),
                      {{Counter::k_cookie_valid, 1},
                       {Counter::k_flows_created, 1},
                       {Counter::k_flows_active, 1},
                       {Counter::k_output_overflow, 1}});
  EXPECT_NE(h.engine().FindFlow(c.key()), nullptr);
  // The retransmission timer sends it after the first RTO (1 s).
  const auto before_rto = h.Snapshot();
  h.Advance(kSec);
  ASSERT_EQ(h.emitted().size(), 1u);
  EXPECT_EQ(h.emitted()[0].side, Side::kServer);
  EXPECT_EQ(h.emitted()[0].flags(), kTcpSyn);
  EXPECT_EQ(h.emitted()[0].seq(), c.client_isn);
  ExpectCounterDeltas(before_rto, h.Snapshot(), {{Counter::k_backend_syn_retransmit, 1}});
}

TEST(EngineOutputTest, OutputWithRoomForOnlyTheThirdAckLosesTheKeptSegment) {
  Harness h;
  Conn c;
  DriveToSynSent(h, &c, /*payload=*/100);
  const uint32_t free_before = h.engine().held_free();
  h.FillOutput(1);
  const auto before = h.Snapshot();
  ASSERT_EQ(h.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  // The third ACK went out; the kept segment did not (the client
  // retransmits it), and its slot is back in the pool.
  ASSERT_EQ(h.emitted().size(), 1u);
  EXPECT_EQ(h.emitted()[0].flags(), kTcpAck);
  EXPECT_EQ(h.emitted()[0].payload_len(), 0);
  ExpectCounterDeltas(before, h.Snapshot(),
                      {{Counter::k_backend_synack, 1}, {Counter::k_output_overflow, 1}});
  EXPECT_EQ(h.engine().held_free(), free_before + 1);
}

// ---------------------------------------------------------------------------
// RSTs moat sends to backends.

TEST_P(EngineCounterTest, ClientRstDuringTheBackendHandshakeResetsTheBackend) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c);
  const auto before = h_.Snapshot();
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(c.client_isn + 1).Flags(kTcpRst)), Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 1u);
  const Seen& rst = h_.emitted()[0];
  EXPECT_EQ(rst.side, Side::kServer);
  EXPECT_EQ(rst.flags(), kTcpRst);
  EXPECT_EQ(rst.seq(), c.client_isn + 1);  // the backend's RCV.NXT: an exact match
  ExpectCounterDeltas(before, h_.Snapshot(),
                      {{Counter::k_server_rst_sent, 1},
                       {Counter::k_rst_teardown, 1},
                       {Counter::k_flows_closed, 1},
                       {Counter::k_flows_active, -1}});
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
}

TEST_P(EngineCounterTest, StaleBackendConnectionGetsARst) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c);
  const auto before = h_.Snapshot();
  ASSERT_EQ(h_.Send(Side::kServer, c.S().Seq(777).Ack(12345)), Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].side, Side::kServer);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpRst);
  EXPECT_EQ(h_.emitted()[0].seq(), 12345u);  // <SEQ=SEG.ACK><CTL=RST>
  ExpectCounterDeltas(before, h_.Snapshot(),
                      {{Counter::k_server_rst_sent, 1}, {Counter::k_backend_stale_reset, 1}});
}

// ---------------------------------------------------------------------------
// RSTs inside the window but not at the exact sequence number (RFC 5961
// §3.2): passed on, the flow kept unless traffic resumes; after silence
// moat probes the receiver, and only unanswered probes remove the flow
// (engine_resilience_test.cc: BlindRstTest has the answered cases).

TEST_P(EngineCounterTest, InWindowRstIsPassedOnAndTheFlowRemovedAfterUnansweredProbes) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  const auto before = h_.Snapshot();
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(c.client_isn + 11).Flags(kTcpRst)), Verdict::kForward);
  EXPECT_TRUE(h_.emitted().empty());
  ExpectCounterDeltas(before, h_.Snapshot(),
                      {{Counter::k_rst_in_window, 1}, {Counter::k_fwd_client_to_server, 1}});
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
  const auto before_probe = h_.Snapshot();
  h_.Advance(5 * kSec + kMs);  // time_wait_ms of silence: a probe to the backend
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].side, Side::kServer);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpAck);
  ExpectCounterDeltas(before_probe, h_.Snapshot(), {{Counter::k_rst_probe_sent, 1}});
  h_.Advance(5 * kSec);  // unanswered: a second probe
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
  const auto before_expiry = h_.Snapshot();
  h_.Advance(5 * kSec);  // still unanswered: both ends reset, the flow gone
  EXPECT_EQ(h_.emitted().size(), 2u);
  ExpectCounterDeltas(before_expiry, h_.Snapshot(),
                      {{Counter::k_rst_probe_unanswered, 1},
                       {Counter::k_client_rst_sent, 1},
                       {Counter::k_server_rst_sent, 1},
                       {Counter::k_flows_closed, 1},
                       {Counter::k_flows_active, -1}});
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
}

// ---------------------------------------------------------------------------
// Idle expiry.

TEST_P(EngineCounterTest, IdleExpiryWithBothEndsKnownResetsBoth) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
  h_.Send(Side::kServer,
          c.S().Seq(bs).Ack(cs).PayloadFill(10, 'x').Timestamps(c.backend_tsval, c.client_tsval));
  h_.Send(Side::kClient, c.C().Seq(cs).Ack(ks + 10).Timestamps(c.client_tsval, c.synack_tsval));
  const auto before = h_.Snapshot();
  h_.Advance(299 * kSec);
  EXPECT_TRUE(h_.emitted().empty());
  h_.Advance(2 * kSec);  // past the 300 s idle timeout
  ASSERT_EQ(h_.emitted().size(), 2u);
  EXPECT_EQ(h_.emitted()[0].side, Side::kClient);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpRst | kTcpAck);
  EXPECT_EQ(h_.emitted()[1].side, Side::kServer);
  EXPECT_EQ(h_.emitted()[1].flags(), kTcpRst | kTcpAck);
  ExpectCounterDeltas(before, h_.Snapshot(),
                      {{Counter::k_flows_expired, 1},
                       {Counter::k_idle_rst_sent, 1},
                       {Counter::k_client_rst_sent, 1},
                       {Counter::k_server_rst_sent, 1},
                       {Counter::k_flows_closed, 1},
                       {Counter::k_flows_active, -1}});
  EXPECT_EQ(h_.engine().flow_count(), 0u);
}

// A backend-opened flow that only saw the backend's SYN: the client's
// numbers are unknown, so there is nothing to reset it at.
TEST_P(EngineCounterTest, IdleExpiryWithAnEndUnknownResetsNobody) {
  const Endpoints e = EndpointsFor(v6());
  ASSERT_EQ(h_.Send(Side::kServer, SegmentDefaults(e.FromServer()).Seq(5000).Flags(kTcpSyn)),
            Verdict::kForward);
  const auto before = h_.Snapshot();
  h_.Advance(61 * kSec);  // the 60 s timeout of a flow still opening
  EXPECT_TRUE(h_.emitted().empty());
  ExpectCounterDeltas(
      before, h_.Snapshot(),
      {{Counter::k_flows_expired, 1}, {Counter::k_flows_closed, 1}, {Counter::k_flows_active, -1}});
  EXPECT_EQ(h_.engine().flow_count(), 0u);
}

}  // namespace
}  // namespace moat::proxy::testing
