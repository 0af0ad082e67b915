// Scenario tests for the engine: one per protocol transition, IPv4 and
// IPv6, with sequence numbers and timestamps placed next to the 2^32 wrap.
// Every emitted or rewritten frame is parsed back and its checksums
// verified (ParseSeen).

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "engine_harness.h"
#include "gtest/gtest.h"
#include "moat/cookie/cookie.h"
#include "moat/net/bytes.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpCwr;
using net::kTcpEce;
using net::kTcpFin;
using net::kTcpPsh;
using net::kTcpRst;
using net::kTcpSyn;

class EngineTest : public FamilyTest {
 protected:
  Harness h_;
};

MOAT_FAMILIES(EngineTest);

// ---------------------------------------------------------------------------
// Client SYN -> cookie SYN-ACK.

TEST_P(EngineTest, SynIsAnsweredStatelesslyWithCookieSynAck) {
  Conn c = MakeConn();
  Seen synack;
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(c), &synack), Verdict::kReflect);
  EXPECT_EQ(synack.side, Side::kClient);
  EXPECT_EQ(synack.flags(), kTcpSyn | kTcpAck);
  EXPECT_EQ(synack.ack(), c.client_isn + 1);
  EXPECT_EQ(synack.win(), 65535);
  EXPECT_EQ(synack.v.src_port(), kServerPort);
  EXPECT_EQ(synack.v.dst_port(), kClientPort);
  EXPECT_EQ(std::memcmp(synack.v.src_addr(), v6() ? kServerV6 : kServerV4, v6() ? 16 : 4), 0);
  EXPECT_EQ(std::memcmp(synack.v.dst_addr(), v6() ? kClientV6 : kClientV4, v6() ? 16 : 4), 0);
  EXPECT_EQ(std::memcmp(synack.v.dst_mac(), kClientMac.b, 6), 0);
  EXPECT_EQ(std::memcmp(synack.v.src_mac(), kServerMac.b, 6), 0);
  EXPECT_TRUE(synack.opts.has_mss);
  EXPECT_EQ(synack.opts.mss, v6() ? 1440 : 1460);
  EXPECT_TRUE(synack.opts.sack_permitted);
  EXPECT_TRUE(synack.opts.has_wscale);
  EXPECT_EQ(synack.opts.wscale, 7);
  EXPECT_TRUE(synack.opts.has_timestamps);
  EXPECT_EQ(synack.opts.tsecr, c.client_tsval - 10);
  // The TSval's low bits carry the client's exact options.
  EXPECT_EQ(synack.opts.tsval & cookie::kTsOptionMask, 7u | cookie::kTsSackBit);
  EXPECT_EQ(h_.engine().flow_count(), 0u);
  EXPECT_EQ(h_.Count(Counter::k_syn_received), 1u);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), 1u);
}

TEST_P(EngineTest, RetransmittedSynGetsTheSameIsn) {
  Conn c = MakeConn();
  Seen a, b;
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(c), &a), Verdict::kReflect);
  h_.set_now(h_.now() + 3 * kSec);
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(c), &b), Verdict::kReflect);
  EXPECT_EQ(a.seq(), b.seq());
  EXPECT_EQ(h_.engine().flow_count(), 0u);
}

struct SynOptionCase {
  const char* name;
  int client_ws;
  bool ts;
  bool sack;
  bool ecn;
  // expected in the SYN-ACK
  bool ws_offered;
  bool ts_offered;
  bool sack_offered;
  bool ece;
};

class SynOptionsTest : public ::testing::TestWithParam<SynOptionCase> {};

TEST_P(SynOptionsTest, SynAckOffersOnlyWhatTheClientOfferedAndCanBeCarried) {
  const SynOptionCase& t = GetParam();
  Harness h;
  Conn c;
  c.client_ws = t.client_ws;
  c.ts = t.ts;
  c.sack = t.sack;
  c.ecn = t.ecn;
  Seen synack;
  ASSERT_EQ(h.Send(Side::kClient, ClientSyn(c), &synack), Verdict::kReflect);
  EXPECT_EQ(synack.opts.has_wscale, t.ws_offered);
  EXPECT_EQ(synack.opts.has_timestamps, t.ts_offered);
  EXPECT_EQ(synack.opts.sack_permitted, t.sack_offered);
  EXPECT_EQ((synack.flags() & kTcpEce) != 0, t.ece);
  EXPECT_EQ(synack.flags() & kTcpCwr, 0);  // RFC 3168 §6.1.1: ECE only
  EXPECT_EQ(synack.payload_len(), 0);

  // The backend SYN carries the same agreement, decoded from the cookie.
  c.cookie_isn = synack.seq();
  c.synack_tsval = synack.opts.tsval;
  ASSERT_EQ(h.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kConsumed);
  ASSERT_EQ(h.emitted().size(), 1u);
  const Seen& syn = h.emitted()[0];
  EXPECT_EQ(syn.side, Side::kServer);
  EXPECT_EQ(syn.flags() & (kTcpSyn | kTcpAck), kTcpSyn);
  EXPECT_EQ(syn.seq(), c.client_isn);
  EXPECT_EQ(syn.opts.has_wscale, t.ws_offered);
  if (t.ws_offered) {
    EXPECT_EQ(syn.opts.wscale, t.ts ? t.client_ws : (t.client_ws >= 8 ? 8 : t.client_ws));
  }
  EXPECT_EQ(syn.opts.has_timestamps, t.ts_offered);
  if (t.ts_offered) {
    EXPECT_EQ(syn.opts.tsval, c.client_tsval);
    EXPECT_EQ(syn.opts.tsecr, 0u);
  }
  EXPECT_EQ(syn.opts.sack_permitted, t.sack_offered);
  EXPECT_EQ(syn.flags() & (kTcpEce | kTcpCwr), t.ece ? (kTcpEce | kTcpCwr) : 0);
  EXPECT_TRUE(syn.opts.has_mss);
  // 12 bytes less with timestamps: room for the TSopt moat would insert if
  // the backend refused them (PlanTsRoom).
  EXPECT_EQ(syn.opts.mss, t.ts_offered ? 1448 : 1460);
}

INSTANTIATE_TEST_SUITE_P(
    Table, SynOptionsTest,
    ::testing::Values(
        SynOptionCase{"AllOptions", 7, true, true, false, true, true, true, false},
        SynOptionCase{"NoWscale", -1, true, true, false, false, true, true, false},
        SynOptionCase{"NoTimestamps", 7, false, true, false, true, false, true, false},
        SynOptionCase{"NoSack", 7, true, false, false, true, true, false, false},
        SynOptionCase{"BareSyn", -1, false, false, false, false, false, false, false},
        // Without timestamps a shift below 6 cannot be encoded: not offered.
        SynOptionCase{"SmallWscaleNoTs", 2, false, true, false, false, false, true, false},
        SynOptionCase{"SmallWscaleWithTs", 2, true, true, false, true, true, true, false},
        SynOptionCase{"LargeWscaleNoTsRoundsDown", 10, false, false, false, true, false, false,
                      false},
        SynOptionCase{"EcnWithTimestamps", 7, true, true, true, true, true, true, true},
        SynOptionCase{"EcnWithoutTimestampsRefused", 7, false, true, true, true, false, true,
                      false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_P(EngineTest, SynWithPayloadOrFastOpenIsAnsweredWithoutTheData) {
  Conn c = MakeConn();
  Seen synack;
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(c).FastOpenRequest().PayloadFill(100, 'x'), &synack), Verdict::kReflect);
  EXPECT_EQ(synack.ack(), c.client_isn + 1);  // the data is not acknowledged
  EXPECT_EQ(synack.payload_len(), 0);
  EXPECT_FALSE(synack.opts.has_fastopen);
  EXPECT_EQ(h_.Count(Counter::k_syn_payload_ignored), 1u);
}

TEST(EngineVlanTest, SynAckKeepsBothVlanTags) {
  Harness h;
  Conn c;
  Seen synack;
  ASSERT_EQ(h.Send(Side::kClient, ClientSyn(c).Vlan(100, net::kEtherTypeQinQ).Vlan(200), &synack), Verdict::kReflect);
  ASSERT_EQ(synack.v.vlan_count, 2);
  EXPECT_EQ(synack.v.vlan_tci[0], 100);
  EXPECT_EQ(synack.v.vlan_tci[1], 200);
  EXPECT_EQ(synack.v.vlan_tpid[0], 0x88a8);
  EXPECT_EQ(synack.v.vlan_tpid[1], 0x8100);
  // The backend SYN, generated from flow state, carries them too.
  c.cookie_isn = synack.seq();
  c.synack_tsval = synack.opts.tsval;
  ASSERT_EQ(h.Send(Side::kClient, ClientHandshakeAck(c).Vlan(100, net::kEtherTypeQinQ).Vlan(200)), Verdict::kConsumed);
  ASSERT_EQ(h.emitted().size(), 1u);
  EXPECT_EQ(h.emitted()[0].v.vlan_count, 2);
  EXPECT_EQ(h.emitted()[0].v.vlan_tci[1], 200);
}

TEST(EngineSmallBufferTest, SynAckGoesToOutputWhenTheFrameIsTooSmall) {
  Harness h;
  Conn c;
  // A SYN without options is shorter than the SYN-ACK (which has an MSS).
  Frame f = c.C().Seq(c.client_isn).Ack(0).Flags(kTcpSyn).BuildFrame();
  const uint16_t cap = f.len;  // no room to grow
  const Verdict v = h.engine().Process(Side::kClient, f.buf, &f.len, cap, h.now(), h.out());
  EXPECT_EQ(v, Verdict::kConsumed);
  h.Drain();
  ASSERT_EQ(h.emitted().size(), 1u);
  EXPECT_EQ(h.emitted()[0].flags(), kTcpSyn | kTcpAck);
}

// ---------------------------------------------------------------------------
// Client ACK -> cookie check -> backend SYN.

TEST_P(EngineTest, InvalidCookieIsDroppedSilently) {
  Conn c = MakeConn();
  DoSyn(h_, &c);
  c.cookie_isn ^= 0x100;  // one MAC bit
  EXPECT_EQ(h_.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kDrop);
  EXPECT_TRUE(h_.emitted().empty());
  EXPECT_EQ(h_.Count(Counter::k_cookie_invalid), 1u);
  EXPECT_EQ(h_.engine().flow_count(), 0u);
}

TEST_P(EngineTest, ExpiredCookieIsDropped) {
  Conn c = MakeConn();
  DoSyn(h_, &c);
  h_.set_now(h_.now() + 180 * kSec);  // past the 60..120 s lifetime
  EXPECT_EQ(h_.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_cookie_invalid), 1u);
}

TEST_P(EngineTest, ValidCookieCreatesFlowAndSendsBackendSyn) {
  Conn c = MakeConn();
  const Seen syn = DriveToSynSent(h_, &c);
  EXPECT_EQ(syn.side, Side::kServer);
  EXPECT_EQ(syn.flags(), kTcpSyn);
  EXPECT_EQ(syn.seq(), c.client_isn);
  // Less the 12 bytes kept for a timestamp option moat would insert if
  // the backend refused timestamps (PlanTsRoom): the client has them.
  EXPECT_EQ(syn.opts.mss, (v6() ? 1440 : 1460) - 12);
  EXPECT_EQ(syn.opts.wscale, 7);
  EXPECT_TRUE(syn.opts.sack_permitted);
  EXPECT_EQ(syn.opts.tsval, c.client_tsval);
  EXPECT_EQ(syn.win(), 502 << 7);
  // Impersonates the client, at L2 too.
  EXPECT_EQ(std::memcmp(syn.v.src_mac(), kClientMac.b, 6), 0);
  EXPECT_EQ(std::memcmp(syn.v.dst_mac(), kServerMac.b, 6), 0);
  EXPECT_EQ(std::memcmp(syn.v.src_addr(), v6() ? kClientV6 : kClientV4, v6() ? 16 : 4), 0);
  EXPECT_EQ(syn.v.src_port(), kClientPort);
  const Flow* f = h_.engine().FindFlow(c.key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kSynSent);
  EXPECT_EQ(h_.Count(Counter::k_cookie_valid), 1u);
  EXPECT_EQ(h_.Count(Counter::k_flows_created), 1u);
  EXPECT_EQ(h_.Count(Counter::k_flows_active), 1u);
  EXPECT_EQ(h_.Count(Counter::k_backend_syn_sent), 1u);
}

TEST_P(EngineTest, DuplicateHandshakeAckCreatesNothing) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c);
  EXPECT_EQ(h_.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kConsumed);
  EXPECT_TRUE(h_.emitted().empty());
  EXPECT_EQ(h_.Count(Counter::k_flows_created), 1u);
  EXPECT_EQ(h_.Count(Counter::k_handshake_acks_absorbed), 1u);
}

TEST_P(EngineTest, FlowTableFullRefusesWithRst) {
  EngineConfig cfg = DefaultConfig();
  cfg.flow_capacity = 1;
  Harness h(cfg);
  Conn a = MakeConn();
  DriveToSynSent(h, &a);
  Conn b = MakeConn();
  b.client_port = 40001;
  DoSyn(h, &b);
  EXPECT_EQ(h.Send(Side::kClient, ClientHandshakeAck(b)), Verdict::kDrop);
  ASSERT_EQ(h.emitted().size(), 1u);
  const Seen& rst = h.emitted()[0];
  EXPECT_EQ(rst.side, Side::kClient);
  EXPECT_EQ(rst.flags(), kTcpRst);
  EXPECT_EQ(rst.seq(), b.cookie_isn + 1);  // = the ACK's ack (RFC 9293 §3.10.7.1)
  EXPECT_EQ(rst.v.dst_port(), 40001);
  EXPECT_EQ(h.Count(Counter::k_drop_flow_table_full), 1u);
  EXPECT_EQ(h.Count(Counter::k_client_rst_sent), 1u);
  // Nothing was evicted: the flow already in the table completes.
  EXPECT_EQ(h.Send(Side::kServer, BackendSynAck(a)), Verdict::kConsumed);
  const Flow* f = h.engine().FindFlow(a.key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kEstablished);
  EXPECT_EQ(h.engine().FindFlow(b.key()), nullptr);
}

// ---------------------------------------------------------------------------
// Backend handshake.

TEST_P(EngineTest, BackendSynAckCompletesSpliceWithThirdAck) {
  Conn c = MakeConn();
  const std::vector<Seen> out = DriveToEstablished(h_, &c);
  ASSERT_EQ(out.size(), 1u);
  const Seen& ack = out[0];
  EXPECT_EQ(ack.side, Side::kServer);
  EXPECT_EQ(ack.flags(), kTcpAck);
  EXPECT_EQ(ack.seq(), c.client_isn + 1);
  EXPECT_EQ(ack.ack(), c.backend_isn + 1);
  EXPECT_EQ(ack.win(), c.client_win);
  EXPECT_TRUE(ack.opts.has_timestamps);
  EXPECT_EQ(ack.opts.tsval, c.client_tsval);
  EXPECT_EQ(ack.opts.tsecr, c.backend_tsval);
  const Flow* f = h_.engine().FindFlow(c.key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kEstablished);
  EXPECT_EQ(static_cast<uint32_t>(f->delta.value()), c.delta());
  EXPECT_EQ(f->ts_delta, c.ts_delta());
  EXPECT_EQ(h_.Count(Counter::k_backend_synack), 1u);
}

TEST_P(EngineTest, KeptSegmentsAreReleasedTranslatedAfterTheThirdAck) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c, /*payload=*/100);
  // Three more while the backend is silent; the fifth exceeds the bound.
  for (int i = 1; i <= 4; ++i) {
    TcpPacket s = c.C().Seq(c.client_isn + 1 + 100 * i).Ack(c.cookie_isn + 1).Window(c.client_win)
                .Timestamps(c.client_tsval + i, c.synack_tsval).PayloadFill(100, 'x');
    if (i == 4) s.Flags(kTcpAck | kTcpFin);
    EXPECT_EQ(h_.Send(Side::kClient, s), i < 4 ? Verdict::kConsumed : Verdict::kDrop);
  }
  EXPECT_EQ(h_.Count(Counter::k_held_segments), 4u);
  EXPECT_EQ(h_.Count(Counter::k_drop_held_overflow), 1u);
  const uint32_t free_before = h_.engine().held_free();

  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  const auto& out = h_.emitted();
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0].payload_len(), 0);  // the third ACK first
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(out[i].side, Side::kServer);
    EXPECT_EQ(out[i].seq(), c.client_isn + 1 + 100 * (i - 1));
    EXPECT_EQ(out[i].ack(), c.backend_isn + 1);
    EXPECT_EQ(out[i].payload_len(), 100);
    EXPECT_EQ(out[i].opts.tsecr, c.backend_tsval);
  }
  // The third ACK carries the first kept segment's TSval: every segment
  // released after it is at least as new, so none fails the backend's PAWS
  // check (RFC 7323 §5.3).
  EXPECT_EQ(out[0].opts.tsval, c.client_tsval);
  for (int i = 1; i <= 4; ++i) EXPECT_GE(out[i].opts.tsval, out[0].opts.tsval);
  EXPECT_EQ(h_.engine().held_free(), free_before + 4);
  EXPECT_EQ(h_.Count(Counter::k_held_released), 4u);
}

TEST_P(EngineTest, BackendSynRetransmitsWithBackoffThenResetsClient) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c);
  const uint64_t rto[] = {1 * kSec, 2 * kSec, 4 * kSec};
  for (uint64_t step : rto) {
    h_.Advance(step - kMs);
    EXPECT_TRUE(h_.emitted().empty());
    h_.Advance(kMs);
    ASSERT_EQ(h_.emitted().size(), 1u);
    EXPECT_EQ(h_.emitted()[0].flags(), kTcpSyn);
    EXPECT_EQ(h_.emitted()[0].seq(), c.client_isn);
  }
  EXPECT_EQ(h_.Count(Counter::k_backend_syn_retransmit), 3u);
  h_.Advance(8 * kSec);
  ASSERT_EQ(h_.emitted().size(), 1u);
  const Seen& rst = h_.emitted()[0];
  EXPECT_EQ(rst.side, Side::kClient);
  EXPECT_EQ(rst.flags(), kTcpRst | kTcpAck);
  EXPECT_EQ(rst.seq(), c.cookie_isn + 1);
  EXPECT_EQ(rst.ack(), c.client_isn + 1);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.Count(Counter::k_backend_timeout), 1u);
  EXPECT_EQ(h_.Count(Counter::k_flows_active), 0u);
}

TEST_P(EngineTest, BackendRefusalResetsClientAndFreesHeld) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c, 50);
  const uint32_t free_before = h_.engine().held_free();
  ASSERT_EQ(h_.Send(Side::kServer, c.S().Seq(0).Ack(c.client_isn + 1).Flags(kTcpRst | kTcpAck)),
            Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 1u);
  const Seen& rst = h_.emitted()[0];
  EXPECT_EQ(rst.side, Side::kClient);
  EXPECT_EQ(rst.flags(), kTcpRst | kTcpAck);
  EXPECT_EQ(rst.seq(), c.cookie_isn + 1);
  EXPECT_EQ(rst.ack(), c.client_isn + 1 + 50);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.engine().held_free(), free_before + 1);
  EXPECT_EQ(h_.Count(Counter::k_backend_refused), 1u);
}

TEST_P(EngineTest, BackendRstNotAckingOurSynIsDropped) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c);
  EXPECT_EQ(h_.Send(Side::kServer, c.S().Seq(0).Ack(c.client_isn + 7).Flags(kTcpRst | kTcpAck)),
            Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_rst_out_of_window), 1u);
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
}

TEST_P(EngineTest, BackendSynAckWithWrongAckIsDropped) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c);
  EXPECT_EQ(h_.Send(Side::kServer, BackendSynAck(c).Ack(c.client_isn + 2)), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_backend_synack), 1u);
  EXPECT_EQ(h_.engine().FindFlow(c.key())->state, FlowState::kSynSent);
}

TEST_P(EngineTest, StaleBackendConnectionIsResetDuringHandshake) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c);
  ASSERT_EQ(h_.Send(Side::kServer, c.S().Seq(777).Ack(12345)), Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].side, Side::kServer);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpRst);
  EXPECT_EQ(h_.emitted()[0].seq(), 12345u);
  EXPECT_EQ(h_.Count(Counter::k_backend_stale_reset), 1u);
}

TEST_P(EngineTest, ClientRstDuringBackendHandshakeResetsBackend) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c);
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(c.client_isn + 1).Ack(0).Flags(kTcpRst)),
            Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].side, Side::kServer);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpRst);
  EXPECT_EQ(h_.emitted()[0].seq(), c.client_isn + 1);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
}

TEST_P(EngineTest, DuplicateBackendSynAckIsAnsweredAgain) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpAck);
  EXPECT_EQ(h_.emitted()[0].seq(), c.client_isn + 1);
  EXPECT_EQ(h_.emitted()[0].ack(), c.backend_isn + 1);
  EXPECT_EQ(h_.Count(Counter::k_backend_synack_dup), 1u);
}

// ---------------------------------------------------------------------------
// Established: translation.

TEST_P(EngineTest, ServerToClientShiftsSeqAndTsval) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  Seen out;
  ASSERT_EQ(h_.Send(Side::kServer,
                    c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).Window(100)
                        .Timestamps(c.backend_tsval + 5, c.client_tsval).PayloadFill(300, 'x'),
                    &out),
            Verdict::kForward);
  EXPECT_EQ(out.side, Side::kClient);
  EXPECT_EQ(out.seq(), c.cookie_isn + 1);
  EXPECT_EQ(out.ack(), c.client_isn + 1);  // client space: untouched
  EXPECT_EQ(out.opts.tsval, c.synack_tsval + 5);
  EXPECT_EQ(out.opts.tsecr, c.client_tsval);
  EXPECT_EQ(out.win(), 100);  // same shift both legs
  EXPECT_EQ(out.payload_len(), 300);
  EXPECT_EQ(h_.Count(Counter::k_fwd_server_to_client), 1u);
}

// An ICMP error from a router on the client side about a segment the
// backend sent (Fragmentation Needed / Packet Too Big), quoting it as the
// client side saw it: `spliced` is that segment after moat translated it.
Frame IcmpErrorAbout(const Frame& spliced, bool v6, uint32_t mtu) {
  net::PacketView q;
  EXPECT_EQ(net::ParseFrame(const_cast<uint8_t*>(spliced.buf), spliced.len, &q),
            net::ParseError::kOk);
  const uint16_t quote = static_cast<uint16_t>(std::min<int>(q.l3_end - q.l3_offset, 120));
  Frame f;
  std::memcpy(f.buf, q.src_mac(), 6);      // to the backend
  std::memcpy(f.buf + 6, q.dst_mac(), 6);  // from the client-side router
  static const uint8_t kRouter4[4] = {198, 18, 0, 254};
  static const uint8_t kRouter6[16] = {0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe};
  uint8_t* ip = f.buf + 14;
  const uint16_t icmp_len = static_cast<uint16_t>(8 + quote);
  uint8_t* icmp;
  if (v6) {
    net::StoreBe16(f.buf + 12, net::kEtherTypeIpv6);
    ip[0] = 0x60;
    net::StoreBe16(ip + 4, icmp_len);
    ip[6] = net::kIpProtoIcmpv6;
    ip[7] = 64;
    std::memcpy(ip + 8, kRouter6, 16);
    std::memcpy(ip + 24, q.src_addr(), 16);
    icmp = ip + 40;
    icmp[0] = 2;  // Packet Too Big (RFC 4443 §3.2)
    net::StoreBe32(icmp + 4, mtu);
  } else {
    net::StoreBe16(f.buf + 12, net::kEtherTypeIpv4);
    ip[0] = 0x45;
    net::StoreBe16(ip + 2, static_cast<uint16_t>(20 + icmp_len));
    ip[8] = 64;
    ip[9] = net::kIpProtoIcmp;
    std::memcpy(ip + 12, kRouter4, 4);
    std::memcpy(ip + 16, q.src_addr(), 4);
    net::StoreBe16(ip + 10, net::Ipv4HeaderChecksum(ip, 20));
    icmp = ip + 20;
    icmp[0] = 3;  // Destination Unreachable, Fragmentation Needed (RFC 1191)
    icmp[1] = 4;
    net::StoreBe16(icmp + 6, static_cast<uint16_t>(mtu));
  }
  std::memcpy(icmp + 8, q.ip(), quote);
  uint32_t sum = 0;
  if (v6) {
    sum = net::ChecksumAccumulate(ip + 8, 32);
    sum += icmp_len + net::kIpProtoIcmpv6;
  }
  net::StoreBe16(icmp + 2, net::ChecksumFinish(net::ChecksumAccumulate(icmp, icmp_len, sum)));
  f.len = static_cast<uint16_t>(14 + (v6 ? 40 : 20) + icmp_len);
  return f;
}

// The checksum of an ICMP/ICMPv6 message, verified the receiver's way.
bool IcmpChecksumOk(const Frame& f) {
  net::PacketView v;
  if (net::ParseFrame(const_cast<uint8_t*>(f.buf), f.len, &v) != net::ParseError::kOk) {
    return false;
  }
  const uint16_t n = static_cast<uint16_t>(v.l3_end - v.l4_offset);
  uint32_t sum = 0;
  if (v.ipv6()) sum = net::ChecksumAccumulate(v.ip() + 8, 32) + n + net::kIpProtoIcmpv6;
  return net::ChecksumFinish(net::ChecksumAccumulate(v.frame + v.l4_offset, n, sum)) == 0;
}

TEST_P(EngineTest, IcmpErrorsAboutSplicedSegmentsReachTheBackendInItsSpace) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  Frame data = c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).PayloadFill(1400, 'x').BuildFrame();
  ASSERT_EQ(h_.Send(Side::kServer, data), Verdict::kForward);
  const Frame data_copy = data;
  Frame icmp = IcmpErrorAbout(data, v6(), 1280);
  ASSERT_TRUE(IcmpChecksumOk(icmp));
  const uint16_t quoted_seq_at = static_cast<uint16_t>(14 + (v6() ? 40 + 8 + 40 : 20 + 8 + 20) + 4);
  ASSERT_EQ(net::LoadBe32(icmp.buf + quoted_seq_at), c.cookie_isn + 1);  // the client's space

  EXPECT_EQ(h_.Send(Side::kClient, icmp), Verdict::kForward);
  EXPECT_EQ(net::LoadBe32(icmp.buf + quoted_seq_at), c.backend_isn + 1);  // the backend's
  EXPECT_TRUE(IcmpChecksumOk(icmp));
  EXPECT_EQ(h_.Count(Counter::k_icmp_translated), 1u);

  // About a flow moat does not know: bridged byte for byte.
  Conn other = MakeConn();
  other.client_port = 40999;
  Frame stray = other.S().Seq(12345).Ack(1).PayloadFill(100, 'x').BuildFrame();
  Frame icmp2 = IcmpErrorAbout(stray, v6(), 1280);
  const Frame before = icmp2;
  EXPECT_EQ(h_.Send(Side::kClient, icmp2), Verdict::kForward);
  EXPECT_EQ(std::memcmp(icmp2.buf, before.buf, before.len), 0);
  EXPECT_EQ(h_.Count(Counter::k_icmp_translated), 1u);

  // About the spliced flow but addressed elsewhere than the service: not
  // ours to edit (and it would show the flow's delta to whoever gets it).
  Frame icmp3 = IcmpErrorAbout(data_copy, v6(), 1280);
  net::PacketView o;
  ASSERT_EQ(net::ParseFrame(icmp3.buf, icmp3.len, &o), net::ParseError::kOk);
  o.dst_addr()[o.addr_len() - 1] ^= 0x40;  // checksums do not matter here
  const Frame before3 = icmp3;
  EXPECT_EQ(h_.Send(Side::kClient, icmp3), Verdict::kForward);
  EXPECT_EQ(std::memcmp(icmp3.buf, before3.buf, before3.len), 0);
  EXPECT_EQ(h_.Count(Counter::k_icmp_translated), 1u);
}

TEST_P(EngineTest, ClientToServerShiftsAckSackAndTsecr) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  // The server sent 300 bytes; the client got 100 and 200..300.
  h_.Send(Side::kServer, c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).Window(100)
                             .Timestamps(c.backend_tsval + 5, c.client_tsval).PayloadFill(300, 'x'));
  const uint32_t base = c.cookie_isn + 1;
  Seen out;
  ASSERT_EQ(h_.Send(Side::kClient,
                    c.C().Seq(c.client_isn + 1).Ack(base + 100).Window(c.client_win)
                        .Timestamps(c.client_tsval + 1, c.synack_tsval + 5).SackBlocks({base + 200, base + 300}),
                    &out),
            Verdict::kForward);
  const uint32_t bbase = c.backend_isn + 1;
  EXPECT_EQ(out.seq(), c.client_isn + 1);
  EXPECT_EQ(out.ack(), bbase + 100);
  EXPECT_EQ(out.opts.tsval, c.client_tsval + 1);
  EXPECT_EQ(out.opts.tsecr, c.backend_tsval + 5);
  ASSERT_EQ(out.opts.sack_blocks, 1);
  EXPECT_EQ(net::LoadBe32(out.v.tcp() + out.opts.sack_offset), bbase + 200);
  EXPECT_EQ(net::LoadBe32(out.v.tcp() + out.opts.sack_offset + 4), bbase + 300);
  EXPECT_EQ(out.win(), c.client_win);
}

struct WindowCase {
  const char* name;
  int client_ws;
  int backend_ws;
  uint16_t server_win;  // as the backend writes it
  uint16_t expect_to_client;
  uint16_t client_win;
  uint16_t expect_to_server;
};

class WindowTest : public ::testing::TestWithParam<WindowCase> {};

TEST_P(WindowTest, WindowsAreRescaledBetweenLegs) {
  const WindowCase& t = GetParam();
  Harness h;
  Conn c;
  c.client_ws = t.client_ws;
  c.backend_ws = t.backend_ws;
  DriveToEstablished(h, &c);
  Seen out;
  ASSERT_EQ(h.Send(Side::kServer,
                   c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).Window(t.server_win)
                       .Timestamps(c.backend_tsval, c.client_tsval),
                   &out),
            Verdict::kForward);
  EXPECT_EQ(out.win(), t.expect_to_client);
  ASSERT_EQ(h.Send(Side::kClient,
                   c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1).Window(t.client_win)
                       .Timestamps(c.client_tsval, c.synack_tsval),
                   &out),
            Verdict::kForward);
  EXPECT_EQ(out.win(), t.expect_to_server);
}

INSTANTIATE_TEST_SUITE_P(
    Table, WindowTest,
    ::testing::Values(
        WindowCase{"SameShift", 7, 7, 500, 500, 300, 300},
        WindowCase{"BackendLarger", 7, 9, 500, 2000, 300, 300},
        WindowCase{"BackendSmaller", 7, 3, 300, 18, 300, 300},
        WindowCase{"BackendSmallerNeverZero", 7, 3, 5, 1, 300, 300},
        WindowCase{"BackendHugeClamped", 7, 14, 1000, 65535, 300, 300},
        // Backend refused scaling: its windows are bytes; the client's must
        // be unscaled for it.
        WindowCase{"BackendUnscaled", 7, -1, 65535, 511, 300, 38400},
        WindowCase{"BackendUnscaledClamped", 7, -1, 65535, 511, 1000, 65535},
        WindowCase{"BackendUnscaledSmall", 7, -1, 100, 1, 10, 1280},
        WindowCase{"ZeroStaysZero", 7, 9, 0, 0, 0, 0},
        // Client did not scale: nobody does, nothing changes (a backend
        // that answers WS anyway is ignored, RFC 7323 §2.2).
        WindowCase{"ClientUnscaled", -1, 7, 1000, 1000, 1000, 1000}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_P(EngineTest, NoTimestampsMeansNoTimestampRewrite) {
  Conn c = MakeConn();
  c.ts = false;
  DriveToEstablished(h_, &c);
  Seen out;
  ASSERT_EQ(h_.Send(Side::kServer, c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).PayloadFill(10, 'x'),
                    &out),
            Verdict::kForward);
  EXPECT_EQ(out.seq(), c.cookie_isn + 1);
  EXPECT_FALSE(out.opts.has_timestamps);
}

TEST_P(EngineTest, ClientSynOnLiveFlowIsPassedOnAndChallengeAckTranslated) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  // RFC 5961 §4: the client restarted and reuses the port.
  Seen syn;
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(c).Seq(0x12345678), &syn), Verdict::kForward);
  EXPECT_EQ(syn.seq(), 0x12345678u);
  EXPECT_EQ(h_.Count(Counter::k_syn_on_established), 1u);
  // The backend's challenge ACK is translated like any segment...
  Seen challenge;
  ASSERT_EQ(h_.Send(Side::kServer, c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1)
                                       .Timestamps(c.backend_tsval + 1, c.client_tsval),
                    &challenge),
            Verdict::kForward);
  EXPECT_EQ(challenge.seq(), c.cookie_isn + 1);
  // ...and the client's RST at its ack (an exact match) ends the flow.
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(challenge.ack()).Ack(0).Flags(kTcpRst)),
            Verdict::kForward);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.Count(Counter::k_rst_teardown), 1u);
}

// ---------------------------------------------------------------------------
// RST validation (RFC 5961 §3).

struct RstCase {
  const char* name;
  bool from_client;
  int64_t offset;  // from the receiver's expected sequence number
  Verdict verdict;
  bool flow_removed;
  bool pending;
};

class RstTest : public ::testing::TestWithParam<RstCase> {};

TEST_P(RstTest, RstIsCheckedAgainstTheReceiversWindow) {
  const RstCase& t = GetParam();
  Harness h;
  Conn c;
  DriveToEstablished(h, &c);
  // Both ends have spoken once, so both windows are known: 400 << 7 bytes.
  h.Send(Side::kServer, c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).Window(400)
                            .Timestamps(c.backend_tsval, c.client_tsval));
  h.Send(Side::kClient, c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1).Window(400)
                            .Timestamps(c.client_tsval, c.synack_tsval));
  Seen out;
  Verdict v;
  if (t.from_client) {
    v = h.Send(Side::kClient,
               c.C().Seq(c.client_isn + 1 + static_cast<uint32_t>(t.offset)).Ack(0).Flags(kTcpRst),
               &out);
  } else {
    v = h.Send(Side::kServer,
               c.S().Seq(c.backend_isn + 1 + static_cast<uint32_t>(t.offset)).Ack(0).Flags(kTcpRst),
               &out);
  }
  EXPECT_EQ(v, t.verdict);
  if (v == Verdict::kForward && !t.from_client) {
    EXPECT_EQ(out.seq(), c.cookie_isn + 1 + static_cast<uint32_t>(t.offset));
  }
  const Flow* f = h.engine().FindFlow(c.key());
  EXPECT_EQ(f == nullptr, t.flow_removed);
  if (f != nullptr) {
    EXPECT_EQ(f->state == FlowState::kRstPending, t.pending);
  }
  if (t.verdict == Verdict::kDrop) {
    EXPECT_EQ(h.Count(Counter::k_drop_rst_out_of_window), 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, RstTest,
    ::testing::Values(RstCase{"ClientExact", true, 0, Verdict::kForward, true, false},
                      RstCase{"ClientInWindow", true, 1000, Verdict::kForward, false, true},
                      RstCase{"ClientBelowWindow", true, -1, Verdict::kDrop, false, false},
                      RstCase{"ClientBeyondWindow", true, 400 << 7, Verdict::kDrop, false, false},
                      RstCase{"ClientFarAway", true, 0x40000000, Verdict::kDrop, false, false},
                      RstCase{"ServerExact", false, 0, Verdict::kForward, true, false},
                      RstCase{"ServerInWindow", false, 5000, Verdict::kForward, false, true},
                      RstCase{"ServerBeyondWindow", false, 400 << 7, Verdict::kDrop, false, false},
                      RstCase{"ServerFarAway", false, -0x40000000, Verdict::kDrop, false, false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_P(EngineTest, InWindowRstIsConfirmedBeforeTheFlowGoes) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(c.client_isn + 11).Ack(0).Flags(kTcpRst)),
            Verdict::kForward);
  // The backend answers with a challenge ACK and the connection lives on.
  ASSERT_EQ(h_.Send(Side::kServer, c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1)
                                       .Timestamps(c.backend_tsval, c.client_tsval)),
            Verdict::kForward);
  h_.Advance(10 * kSec);
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
  // A second in-window RST and silence: after time_wait_ms moat probes the
  // backend (engine_resilience_test.cc has the details); unanswered twice,
  // the flow goes and both ends are reset.
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(c.client_isn + 11).Ack(0).Flags(kTcpRst)),
            Verdict::kForward);
  h_.Advance(5 * kSec + kMs);
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].flags(), kTcpAck);
  h_.Advance(5 * kSec);
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
  h_.Advance(5 * kSec);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.emitted().size(), 2u);  // the RSTs
}

// ---------------------------------------------------------------------------
// Teardown.

TEST_P(EngineTest, FourWayCloseEntersTimeWaitThenExpires) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
  auto ts_c = [&](TcpPacket s) { return s.Timestamps(c.client_tsval, c.synack_tsval); };
  auto ts_s = [&](TcpPacket s) { return s.Timestamps(c.backend_tsval, c.client_tsval); };
  EXPECT_EQ(h_.Send(Side::kClient, ts_c(c.C().Seq(cs).Ack(ks).Flags(kTcpFin | kTcpAck))),
            Verdict::kForward);
  EXPECT_EQ(h_.Send(Side::kServer, ts_s(c.S().Seq(bs).Ack(cs + 1))), Verdict::kForward);
  const Flow* f = h_.engine().FindFlow(c.key());
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->of(Side::kClient).Has(kHalfFinAcked));
  EXPECT_EQ(f->state, FlowState::kHalfClosed);
  EXPECT_EQ(h_.Send(Side::kServer, ts_s(c.S().Seq(bs).Ack(cs + 1).Flags(kTcpFin | kTcpAck))),
            Verdict::kForward);
  EXPECT_EQ(h_.Send(Side::kClient, ts_c(c.C().Seq(cs + 1).Ack(ks + 1))), Verdict::kForward);
  f = h_.engine().FindFlow(c.key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kTimeWait);
  EXPECT_EQ(h_.Count(Counter::k_flows_time_wait), 1u);
  // A retransmitted last ACK is still translated.
  Seen out;
  EXPECT_EQ(h_.Send(Side::kClient, ts_c(c.C().Seq(cs + 1).Ack(ks + 1)), &out), Verdict::kForward);
  EXPECT_EQ(out.ack(), bs + 1);
  h_.Advance(5 * kSec - kMs);
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
  h_.Advance(2 * kMs);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.Count(Counter::k_flows_closed), 1u);
  EXPECT_EQ(h_.Count(Counter::k_flows_active), 0u);
}

TEST_P(EngineTest, SimultaneousCloseEntersTimeWait) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
  EXPECT_EQ(h_.Send(Side::kClient, c.C().Seq(cs).Ack(ks).Flags(kTcpFin | kTcpAck)
                                       .Timestamps(c.client_tsval, c.synack_tsval)),
            Verdict::kForward);
  EXPECT_EQ(h_.Send(Side::kServer, c.S().Seq(bs).Ack(cs).Flags(kTcpFin | kTcpAck)
                                       .Timestamps(c.backend_tsval, c.client_tsval)),
            Verdict::kForward);
  EXPECT_EQ(h_.Send(Side::kClient, c.C().Seq(cs + 1).Ack(ks + 1)
                                       .Timestamps(c.client_tsval, c.synack_tsval)),
            Verdict::kForward);
  EXPECT_EQ(h_.Send(Side::kServer, c.S().Seq(bs + 1).Ack(cs + 1)
                                       .Timestamps(c.backend_tsval, c.client_tsval)),
            Verdict::kForward);
  ASSERT_NE(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.engine().FindFlow(c.key())->state, FlowState::kTimeWait);
}

TEST_P(EngineTest, HalfCloseKeepsDataFlowingTheOtherWay) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
  // The client sends its request and shuts down writing.
  EXPECT_EQ(h_.Send(Side::kClient, c.C().Seq(cs).Ack(ks).Flags(kTcpFin | kTcpAck | kTcpPsh)
                                       .PayloadFill(20, 'x').Timestamps(c.client_tsval, c.synack_tsval)),
            Verdict::kForward);
  for (int i = 0; i < 3; ++i) {
    Seen out;
    EXPECT_EQ(h_.Send(Side::kServer, c.S().Seq(bs + 1000 * i).Ack(cs + 21).PayloadFill(1000, 'x')
                                         .Timestamps(c.backend_tsval + i, c.client_tsval),
                      &out),
              Verdict::kForward);
    EXPECT_EQ(out.seq(), ks + 1000 * i);
    EXPECT_EQ(h_.Send(Side::kClient, c.C().Seq(cs + 21).Ack(ks + 1000 * (i + 1))
                                         .Timestamps(c.client_tsval, c.synack_tsval + i)),
              Verdict::kForward);
  }
  const Flow* f = h_.engine().FindFlow(c.key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kHalfClosed);
  EXPECT_TRUE(f->of(Side::kClient).Has(kHalfFinAcked));
  // Half-closed flows get the shorter idle timeout (60 s, not 300 s).
  h_.Advance(61 * kSec);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.Count(Counter::k_flows_expired), 1u);
}

TEST_P(EngineTest, NewSynOnTimeWaitFlowGetsACookie) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
  h_.Send(Side::kClient, c.C().Seq(cs).Ack(ks).Flags(kTcpFin | kTcpAck).Timestamps(c.client_tsval, c.synack_tsval));
  h_.Send(Side::kServer, c.S().Seq(bs).Ack(cs + 1).Flags(kTcpFin | kTcpAck).Timestamps(c.backend_tsval, c.client_tsval));
  h_.Send(Side::kClient, c.C().Seq(cs + 1).Ack(ks + 1).Timestamps(c.client_tsval, c.synack_tsval));
  ASSERT_EQ(h_.engine().FindFlow(c.key())->state, FlowState::kTimeWait);
  Conn again = c;
  again.client_isn = cs + 100000;
  Seen synack;
  ASSERT_EQ(h_.Send(Side::kClient, ClientSyn(again), &synack), Verdict::kReflect);
  EXPECT_EQ(synack.ack(), again.client_isn + 1);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.Count(Counter::k_time_wait_reuse), 1u);
  // And the new connection completes.
  again.cookie_isn = synack.seq();
  again.synack_tsval = synack.opts.tsval;
  EXPECT_EQ(h_.Send(Side::kClient, ClientHandshakeAck(again)), Verdict::kConsumed);
  EXPECT_EQ(h_.engine().FindFlow(c.key())->state, FlowState::kSynSent);
}

TEST_P(EngineTest, IdleFlowIsRescheduledWhileActiveThenResetBothWays) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
  h_.Send(Side::kServer, c.S().Seq(bs).Ack(cs).PayloadFill(10, 'x').Timestamps(c.backend_tsval, c.client_tsval));
  h_.Advance(200 * kSec);
  h_.Send(Side::kClient, c.C().Seq(cs).Ack(ks + 10).Timestamps(c.client_tsval, c.synack_tsval));
  h_.Advance(101 * kSec);  // 301 s after the start: the first timer fires, re-arms
  EXPECT_NE(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_TRUE(h_.emitted().empty());
  h_.Advance(200 * kSec);
  EXPECT_EQ(h_.engine().FindFlow(c.key()), nullptr);
  EXPECT_EQ(h_.Count(Counter::k_flows_expired), 1u);
  ASSERT_EQ(h_.emitted().size(), 2u);
  const Seen& to_client = h_.emitted()[0];
  const Seen& to_server = h_.emitted()[1];
  EXPECT_EQ(to_client.side, Side::kClient);
  EXPECT_EQ(to_client.flags(), kTcpRst | kTcpAck);
  EXPECT_EQ(to_client.seq(), ks + 10);  // what the client acked last
  EXPECT_EQ(to_client.ack(), cs);
  EXPECT_EQ(to_server.side, Side::kServer);
  EXPECT_EQ(to_server.seq(), cs);       // what the server acked last
  EXPECT_EQ(to_server.ack(), bs + 10);  // backend space
  EXPECT_EQ(std::memcmp(to_server.v.src_mac(), kClientMac.b, 6), 0);
  EXPECT_EQ(std::memcmp(to_client.v.dst_mac(), kClientMac.b, 6), 0);
}

// ---------------------------------------------------------------------------
// Not ours, malformed, or stray.

TEST_P(EngineTest, NonProtectedTrafficIsBridgedUnchanged) {
  std::vector<Frame> frames;
  // TCP to another port and to another address.
  frames.push_back(FromClient(v6()).Ports(1234, 81).Flags(kTcpSyn).BuildFrame());
  if (!v6()) frames.push_back(FromClient().DstAddr(kOtherV4).Flags(kTcpSyn).BuildFrame());
  // ARP.
  Frame arp;
  arp.len = 42;
  std::memcpy(arp.buf, kServerMac.b, 6);
  std::memcpy(arp.buf + 6, kClientMac.b, 6);
  net::StoreBe16(arp.buf + 12, net::kEtherTypeArp);
  frames.push_back(arp);
  // UDP to the protected address (rewrite the protocol of a TCP frame).
  Frame udp = FromClient(v6()).PayloadFill(8, 'x').BuildFrame();
  net::PacketView v;
  ASSERT_EQ(net::ParseFrame(udp.buf, udp.len, &v), net::ParseError::kOk);
  v.ip()[v6() ? 6 : 9] = net::kIpProtoUdp;
  if (!v6()) net::FillIpv4HeaderChecksum(v);
  frames.push_back(udp);
  for (Frame& f : frames) {
    Frame copy = f;
    EXPECT_EQ(h_.Send(Side::kClient, f), Verdict::kForward);
    EXPECT_EQ(f.len, copy.len);
    EXPECT_EQ(std::memcmp(f.buf, copy.buf, f.len), 0);
  }
  EXPECT_EQ(h_.Count(Counter::k_bridged), frames.size());
  EXPECT_EQ(h_.engine().flow_count(), 0u);
}

TEST_P(EngineTest, FragmentsOfProtectedTrafficAreDropped) {
  Frame f = FromClient(v6()).PayloadFill(100, 'x').BuildFrame();
  net::PacketView v;
  ASSERT_EQ(net::ParseFrame(f.buf, f.len, &v), net::ParseError::kOk);
  if (v6()) {
    // Insert a Fragment header (offset 1, so not the first).
    const uint16_t l4 = v.l4_offset;
    std::memmove(f.buf + l4 + 8, f.buf + l4, f.len - l4);
    f.buf[l4] = net::kIpProtoTcp;
    f.buf[l4 + 1] = 0;
    net::StoreBe16(f.buf + l4 + 2, 1 << 3);
    net::StoreBe32(f.buf + l4 + 4, 42);
    f.buf[v.l3_offset + 6] = 44;
    net::StoreBe16(f.buf + v.l3_offset + 4, net::LoadBe16(f.buf + v.l3_offset + 4) + 8);
    f.len += 8;
  } else {
    net::StoreBe16(v.ip() + 6, 0x2000);  // MF
    net::FillIpv4HeaderChecksum(v);
  }
  EXPECT_EQ(h_.Send(Side::kClient, f), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_fragment), 1u);
}

// Inserts `n` bytes of header at the start of the TCP header, naming
// `next` (the old next header) inside it, and points the IP header at
// `type`: an extension header moat must see through or drop.
void InsertHeaderBeforeTcp(Frame* f, uint8_t type, const uint8_t* hdr, uint16_t n) {
  net::PacketView v;
  ASSERT_EQ(net::ParseFrame(f->buf, f->len, &v), net::ParseError::kOk);
  const uint16_t l4 = v.l4_offset;
  std::memmove(f->buf + l4 + n, f->buf + l4, f->len - l4);
  std::memcpy(f->buf + l4, hdr, n);
  f->len = static_cast<uint16_t>(f->len + n);
  uint8_t* ip = f->buf + v.l3_offset;
  if (v.ipv6()) {
    ip[6] = type;
    net::StoreBe16(ip + 4, static_cast<uint16_t>(net::LoadBe16(ip + 4) + n));
  } else {
    ip[9] = type;
    net::StoreBe16(ip + 2, static_cast<uint16_t>(net::LoadBe16(ip + 2) + n));
    net::StoreBe16(ip + 10, 0);
    net::StoreBe16(ip + 10, net::Ipv4HeaderChecksum(ip, 20));
  }
}

// An atomic IPv6 fragment whose Fragment header names Destination Options,
// which name TCP: the SYN inside must not reach the backend unanswered by
// a cookie (Linux processes such a fragment at once).
TEST_P(EngineTest, FragmentsHidingTcpBehindExtensionHeadersAreDropped) {
  if (!v6()) GTEST_SKIP() << "IPv6 extension headers";
  Frame f = ClientSyn(MakeConn()).BuildFrame();
  const uint8_t chain[16] = {
      60, 0, 0, 0, 0, 0, 0, 7,                  // Fragment: offset 0, M=0, id 7
      net::kIpProtoTcp, 0, 1, 4, 0, 0, 0, 0,  // Destination Options: PadN
  };
  InsertHeaderBeforeTcp(&f, 44, chain, sizeof(chain));
  EXPECT_EQ(h_.Send(Side::kClient, f), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_fragment), 1u);
  EXPECT_EQ(h_.Count(Counter::k_bridged), 0u);
}

// AH (either family) in front of TCP: moat does not parse it, so it cannot
// tell a SYN inside from anything else, and drops it for protected
// addresses rather than pass a handshake it did not see.
TEST_P(EngineTest, AuthenticationHeaderBeforeTcpIsDropped) {
  Frame f = ClientSyn(MakeConn()).BuildFrame();
  const uint8_t ah[12] = {net::kIpProtoTcp, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
  InsertHeaderBeforeTcp(&f, 51, ah, 12);
  EXPECT_EQ(h_.Send(Side::kClient, f), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_ext_header), 1u);
  EXPECT_EQ(h_.Count(Counter::k_bridged), 0u);
}

// Fragments that cannot carry TCP (UDP here) pass, even to a protected
// address: the rule is about TCP, not about the address.
TEST_P(EngineTest, UdpFragmentsToProtectedAddressesPass) {
  Frame f = ClientSyn(MakeConn()).BuildFrame();
  net::PacketView v;
  ASSERT_EQ(net::ParseFrame(f.buf, f.len, &v), net::ParseError::kOk);
  if (v6()) {
    const uint8_t frag[8] = {net::kIpProtoUdp, 0, 0, 8, 0, 0, 0, 9};  // offset 1
    InsertHeaderBeforeTcp(&f, 44, frag, 8);
  } else {
    uint8_t* ip = f.buf + v.l3_offset;
    ip[9] = net::kIpProtoUdp;
    net::StoreBe16(ip + 6, 0x2000);  // MF
    net::StoreBe16(ip + 10, 0);
    net::StoreBe16(ip + 10, net::Ipv4HeaderChecksum(ip, 20));
  }
  EXPECT_EQ(h_.Send(Side::kClient, f), Verdict::kForward);
  EXPECT_EQ(h_.Count(Counter::k_bridged), 1u);
}

// Spliced data is not verified (it would cost a pass over every payload
// byte); the incremental rewrites keep a corrupted segment's checksum
// wrong, so its receiver still drops it. A FIN or RST is verified: it
// would change moat's own state.
TEST_P(EngineTest, CorruptSplicedDataStaysDetectablyCorrupt) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  Frame data = c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1)
                   .Timestamps(c.backend_tsval + 1, c.client_tsval).PayloadFill(200, 'x').BuildFrame();
  data.buf[data.len - 7] ^= 0x10;  // corrupt the payload after the checksum was made
  ASSERT_EQ(h_.Send(Side::kServer, data), Verdict::kForward);
  net::PacketView v;
  ASSERT_EQ(net::ParseFrame(data.buf, data.len, &v), net::ParseError::kOk);
  EXPECT_EQ(v.seq().value(), c.cookie_isn + 1);  // translated
  EXPECT_FALSE(net::VerifyTcpChecksum(v));  // still wrong after seq and TSval moved
  data.buf[data.len - 7] ^= 0x10;  // undo the corruption: now it must verify
  EXPECT_TRUE(net::VerifyTcpChecksum(v));
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 0u);

  Frame fin = c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1)
                  .Flags(kTcpFin | kTcpAck).BuildFrame();
  fin.buf[fin.len - 1] ^= 0x01;
  EXPECT_EQ(h_.Send(Side::kClient, fin), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 1u);
  const Flow* f = h_.engine().FindFlow(c.key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kEstablished);
}

// Once a FIN was seen, a pure ACK can end the flow (it acks the FIN), so
// it is verified: a corrupted final ACK must not put the flow in TIME_WAIT
// while the endpoint, which drops it, still waits for its FIN to be acked.
TEST_P(EngineTest, CorruptAckOfAFinIsDropped) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  ASSERT_EQ(h_.Send(Side::kClient, c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1)
                                       .Flags(kTcpFin | kTcpAck)),
            Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kServer, c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 2)
                                       .Flags(kTcpFin | kTcpAck)),
            Verdict::kForward);
  Frame last = c.C().Seq(c.client_isn + 2).Ack(c.cookie_isn + 2).Flags(kTcpAck).BuildFrame();
  last.buf[last.len - 1] ^= 0x01;  // the window's low byte: checksum now wrong
  EXPECT_EQ(h_.Send(Side::kClient, last), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 1u);
  const Flow* f = h_.engine().FindFlow(c.key());
  ASSERT_NE(f, nullptr);
  EXPECT_NE(f->state, FlowState::kTimeWait);
}

TEST_P(EngineTest, BadChecksumsAreDropped) {
  Frame f = ClientSyn(MakeConn()).PayloadFill(10, 'x').BuildFrame();
  f.buf[f.len - 1] ^= 0x40;
  EXPECT_EQ(h_.Send(Side::kClient, f), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 1u);
  if (!v6()) {
    Frame g = ClientSyn(MakeConn()).BuildFrame();
    g.buf[14 + 8] ^= 1;  // TTL: only the IPv4 header sum notices
    EXPECT_EQ(h_.Send(Side::kClient, g), Verdict::kDrop);
    EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 2u);
  }
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), 0u);
}

TEST_P(EngineTest, ParseErrorsAreCountedPerReason) {
  Frame runt;
  runt.len = 10;
  EXPECT_EQ(h_.Send(Side::kClient, runt), Verdict::kDrop);
  EXPECT_EQ(h_.engine().stats().LoadParse(static_cast<size_t>(net::ParseError::kTruncatedEthernet)),
            1u);
  // An MSS option of length 5.
  EXPECT_EQ(h_.Send(Side::kClient, ClientSyn(MakeConn()).Opt({2, 5, 1, 2, 3})), Verdict::kDrop);
  EXPECT_EQ(h_.engine().stats().LoadParse(static_cast<size_t>(net::ParseError::kTcpOptionBadLength)),
            1u);
  EXPECT_EQ(h_.Count(Counter::k_drop_parse), 2u);
}

struct StrayCase {
  const char* name;
  bool from_client;
  uint8_t flags;
  Counter counter;
};

class StrayTest : public ::testing::TestWithParam<StrayCase> {};

TEST_P(StrayTest, SegmentsWithoutAFlowAreDroppedWithTheirReason) {
  const StrayCase& t = GetParam();
  Harness h;
  TcpPacket s = t.from_client ? FromClient() : FromServer();
  s.Seq(100).Ack(200).Flags(t.flags);
  EXPECT_EQ(h.Send(t.from_client ? Side::kClient : Side::kServer, s), Verdict::kDrop);
  EXPECT_EQ(h.Count(t.counter), 1u);
  EXPECT_TRUE(h.emitted().empty());
  EXPECT_EQ(h.engine().flow_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Table, StrayTest,
    ::testing::Values(
        StrayCase{"ClientRst", true, kTcpRst, Counter::k_drop_no_flow_client},
        StrayCase{"ClientRstAck", true, kTcpRst | kTcpAck, Counter::k_drop_no_flow_client},
        StrayCase{"ClientSynAck", true, kTcpSyn | kTcpAck, Counter::k_drop_no_flow_client},
        StrayCase{"ClientBareFin", true, kTcpFin, Counter::k_drop_no_flow_client},
        StrayCase{"ClientNull", true, 0, Counter::k_drop_no_flow_client},
        StrayCase{"ClientSynFin", true, kTcpSyn | kTcpFin, Counter::k_drop_bad_flags},
        StrayCase{"ClientSynRst", true, kTcpSyn | kTcpRst, Counter::k_drop_bad_flags},
        StrayCase{"ClientAckBadCookie", true, kTcpAck, Counter::k_cookie_invalid},
        StrayCase{"ServerAck", false, kTcpAck, Counter::k_drop_no_flow_server},
        StrayCase{"ServerSynAck", false, kTcpSyn | kTcpAck, Counter::k_drop_no_flow_server},
        StrayCase{"ServerRst", false, kTcpRst, Counter::k_drop_no_flow_server}),
    [](const auto& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------
// Backend-initiated connections.

TEST_P(EngineTest, BackendOpenedFlowIsPassedThroughUnchanged) {
  auto same = [&](Side in, TcpPacket s) {
    Frame f = s.BuildFrame();
    Frame copy = f;
    EXPECT_EQ(h_.Send(in, f), Verdict::kForward);
    EXPECT_EQ(std::memcmp(f.buf, copy.buf, f.len), 0);
  };
  same(Side::kServer, FromServer(v6()).Seq(5000).Ack(0).Flags(kTcpSyn).Mss(1460).WindowScale(7));
  const Flow* f = h_.engine().FindFlow(KeyFor(v6()));
  ASSERT_NE(f, nullptr);
  EXPECT_TRUE(f->passthrough());
  same(Side::kClient, FromClient(v6()).Seq(9000).Ack(5001).Flags(kTcpSyn | kTcpAck).WindowScale(7));
  same(Side::kServer, FromServer(v6()).Seq(5001).Ack(9001).PayloadFill(100, 'x'));
  same(Side::kClient, FromClient(v6()).Seq(9001).Ack(5101).PayloadFill(50, 'x'));
  same(Side::kServer, FromServer(v6()).Seq(5101).Ack(9051).Flags(kTcpFin | kTcpAck));
  same(Side::kClient, FromClient(v6()).Seq(9051).Ack(5102).Flags(kTcpFin | kTcpAck));
  same(Side::kServer, FromServer(v6()).Seq(5102).Ack(9052));
  f = h_.engine().FindFlow(KeyFor(v6()));
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kTimeWait);
  EXPECT_EQ(h_.Count(Counter::k_flows_passthrough), 1u);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), 0u);
  EXPECT_EQ(h_.Count(Counter::k_cookie_invalid), 0u);
  h_.Advance(6 * kSec);
  EXPECT_EQ(h_.engine().FindFlow(KeyFor(v6())), nullptr);
}

TEST_P(EngineTest, SimultaneousOpenJoinsTheBackendsFlow) {
  ASSERT_EQ(h_.Send(Side::kServer, FromServer(v6()).Seq(5000).Ack(0).Flags(kTcpSyn)),
            Verdict::kForward);
  // RFC 9293 figure 8: the client's own SYN crosses the backend's.
  Seen out;
  ASSERT_EQ(h_.Send(Side::kClient, FromClient(v6()).Seq(9000).Ack(0).Flags(kTcpSyn), &out),
            Verdict::kForward);
  EXPECT_EQ(out.seq(), 9000u);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), 0u);
  EXPECT_EQ(h_.Send(Side::kServer,
                    FromServer(v6()).Seq(5000).Ack(9001).Flags(kTcpSyn | kTcpAck)),
            Verdict::kForward);
  EXPECT_EQ(h_.Send(Side::kClient,
                    FromClient(v6()).Seq(9000).Ack(5001).Flags(kTcpSyn | kTcpAck)),
            Verdict::kForward);
  EXPECT_EQ(h_.Send(Side::kClient, FromClient(v6()).Seq(9001).Ack(5001).PayloadFill(10, 'x')),
            Verdict::kForward);
}

TEST_P(EngineTest, PassthroughRefusalRstTearsDown) {
  ASSERT_EQ(h_.Send(Side::kServer, FromServer(v6()).Seq(5000).Ack(0).Flags(kTcpSyn)),
            Verdict::kForward);
  // A blind RST is not accepted...
  EXPECT_EQ(h_.Send(Side::kClient, FromClient(v6()).Seq(1).Ack(77).Flags(kTcpRst | kTcpAck)),
            Verdict::kDrop);
  // ...the client's refusal (acking the SYN) is.
  EXPECT_EQ(h_.Send(Side::kClient,
                    FromClient(v6()).Seq(0).Ack(5001).Flags(kTcpRst | kTcpAck)),
            Verdict::kForward);
  EXPECT_EQ(h_.engine().FindFlow(KeyFor(v6())), nullptr);
}

TEST(EnginePassthroughTest, FullTableForwardsUntracked) {
  EngineConfig cfg = DefaultConfig();
  cfg.flow_capacity = 1;
  Harness h(cfg);
  ASSERT_EQ(h.Send(Side::kServer, FromServer().Seq(1).Ack(0).Flags(kTcpSyn)),
            Verdict::kForward);
  ASSERT_EQ(h.Send(Side::kServer,
                   FromServer().Ports(kServerPort, 1).Seq(1).Ack(0).Flags(kTcpSyn)),
            Verdict::kForward);
  EXPECT_EQ(h.Count(Counter::k_passthrough_untracked), 1u);
}

TEST(EngineConfigTest, CreateRejectsBadConfig) {
  EngineConfig cfg = DefaultConfig();
  cfg.wscale = 15;
  EXPECT_FALSE(Engine::Create(cfg, kT0).ok());
  EngineConfig empty;
  EXPECT_FALSE(Engine::Create(empty, kT0).ok());
}

}  // namespace
}  // namespace moat::proxy::testing
