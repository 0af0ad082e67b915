// Engine scenarios for "moat is never the reason a connection breaks":
// retransmissions while the backend handshake runs, window scaling and ECN
// when the client's timestamp echo is lost, backends that refuse ECN, blind
// in-window RSTs (RFC 5961 §3) and frames moat does not protect but cannot
// parse. Every emitted or rewritten frame is parsed back and its checksums
// verified (ParseSeen).

#include <cstring>
#include <functional>
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

class ResilienceTest : public FamilyTest {
 protected:
  Harness h_;
};

MOAT_FAMILIES(ResilienceTest);

// ---------------------------------------------------------------------------
// Held data: retransmissions while the backend handshake runs.

TEST_P(ResilienceTest, RetransmittedCopiesDoNotFillTheHeldSlots) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c, /*payload=*/100);  // held: [isn+1, isn+101)
  const auto data = [&](uint32_t off, size_t len, uint32_t tsval) {
    return c.C()
        .Seq(c.client_isn + 1 + off)
        .Ack(c.cookie_isn + 1)
        .Window(c.client_win)
        .Timestamps(tsval, c.synack_tsval)
        .PayloadSize(len)
        .Flags(kTcpAck | kTcpPsh);
  };
  // The client's RTO fires again and again while the backend is slow: every
  // copy of the first segment, and a copy of a part of it, is absorbed.
  for (int i = 1; i <= 6; ++i) {
    EXPECT_EQ(h_.Send(Side::kClient, data(0, 100, c.client_tsval + i)), Verdict::kConsumed);
  }
  EXPECT_EQ(h_.Send(Side::kClient, data(50, 50, c.client_tsval + 7)), Verdict::kConsumed);
  EXPECT_EQ(h_.Count(Counter::k_held_duplicate), 7u);
  EXPECT_EQ(h_.Count(Counter::k_held_segments), 1u);
  EXPECT_EQ(h_.Count(Counter::k_drop_held_overflow), 0u);
  // New data still has its slots, and its retransmission is absorbed too.
  EXPECT_EQ(h_.Send(Side::kClient, data(100, 100, c.client_tsval + 8)), Verdict::kConsumed);
  EXPECT_EQ(h_.Send(Side::kClient, data(100, 100, c.client_tsval + 9)), Verdict::kConsumed);
  // A segment that overlaps a held one but adds bytes is new data.
  EXPECT_EQ(h_.Send(Side::kClient, data(150, 100, c.client_tsval + 10)), Verdict::kConsumed);
  // A retransmitted FIN is a copy like any other.
  TcpPacket fin = data(250, 0, c.client_tsval + 11).Flags(kTcpAck | kTcpFin);
  EXPECT_EQ(h_.Send(Side::kClient, fin), Verdict::kConsumed);
  EXPECT_EQ(h_.Send(Side::kClient, fin), Verdict::kConsumed);
  EXPECT_EQ(h_.Count(Counter::k_held_segments), 4u);
  EXPECT_EQ(h_.Count(Counter::k_held_duplicate), 9u);
  EXPECT_EQ(h_.Count(Counter::k_drop_held_overflow), 0u);

  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  const auto& out = h_.emitted();
  ASSERT_EQ(out.size(), 5u);  // the third ACK, then each held segment once
  EXPECT_EQ(out[1].seq(), c.client_isn + 1);
  EXPECT_EQ(out[2].seq(), c.client_isn + 101);
  EXPECT_EQ(out[3].seq(), c.client_isn + 151);
  EXPECT_EQ(out[4].seq(), c.client_isn + 251);
  EXPECT_TRUE(out[4].flags() & kTcpFin);
  // The third ACK carries the TSval of the first segment held (the third
  // ACK with data), so no held segment is older than it (PAWS, RFC 7323
  // §5.3); later copies do not move it.
  EXPECT_EQ(out[0].opts.tsval, c.client_tsval);
  EXPECT_EQ(h_.Count(Counter::k_held_released), 4u);
}

// ---------------------------------------------------------------------------
// ECN (RFC 3168): the client negotiated it with moat; the backend may not.

constexpr uint8_t kNotEct = 0, kEct1 = 1, kEct0 = 2, kCe = 3;

// The ECN field of a frame's IP header (IPv4 TOS or IPv6 traffic class,
// low two bits; RFC 3168 §5).
uint8_t EcnOf(const Seen& s) {
  const uint8_t* ip = s.v.ip();
  return s.v.ipv6() ? static_cast<uint8_t>((ip[1] >> 4) & 3) : static_cast<uint8_t>(ip[1] & 3);
}

TcpPacket ClientData(const Conn& c, uint32_t off, uint8_t ecn, uint8_t extra_flags = 0) {
  return c.C()
      .Seq(c.client_isn + 1 + off)
      .Ack(c.cookie_isn + 1)
      .Window(c.client_win)
      .Timestamps(c.client_tsval + 1 + off, c.synack_tsval)
      .PayloadSize(100)
      .Tos(uint8_t(0xb8 | ecn))
      .Flags(kTcpAck | kTcpPsh | extra_flags);
}

TEST_P(ResilienceTest, BackendRefusingEcnIsCountedAndClientStopsClaimingIt) {
  Conn c = MakeConn();
  c.ecn = true;
  const Seen synack = DoSyn(h_, &c);
  ASSERT_TRUE(synack.flags() & kTcpEce);  // moat agreed to ECN with the client
  ASSERT_EQ(h_.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].flags() & (kTcpEce | kTcpCwr), kTcpEce | kTcpCwr);
  // The backend's SYN-ACK lacks ECE: it does not do ECN (RFC 3168 §6.1.1).
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  EXPECT_EQ(h_.Count(Counter::k_backend_ecn_refused), 1u);

  // The client still believes in ECN: its data claims ECT, and it sets ECE
  // and CWR. None of that may reach a backend that would ignore the marks:
  // routers behind moat must drop rather than mark, so the client hears of
  // congestion by loss.
  uint32_t off = 0;
  for (uint8_t ecn : {kEct0, kEct1, kNotEct}) {
    SCOPED_TRACE(static_cast<int>(ecn));
    Seen out;
    ASSERT_EQ(h_.Send(Side::kClient, ClientData(c, off, ecn, kTcpEce | kTcpCwr), &out),
              Verdict::kForward);
    EXPECT_EQ(EcnOf(out), kNotEct);  // ParseSeen checked the IPv4 header checksum
    if (out.v.ipv6()) {              // DSCP kept
      EXPECT_EQ(out.v.ip()[0] & 0x0f, 0x0b);
      EXPECT_EQ(out.v.ip()[1] & 0xc0, 0x80);
    } else {
      EXPECT_EQ(out.v.ip()[1] & 0xfc, 0xb8);
    }
    EXPECT_EQ(out.flags() & (kTcpEce | kTcpCwr), 0);
    EXPECT_EQ(out.ack(), c.backend_isn + 1);
    off += 100;
  }
  // A segment a router before moat already marked CE: the backend cannot
  // echo the mark, so it is turned into a loss (RFC 6040 §4.2, a CE outer
  // header on a Not-ECT inner one is dropped).
  EXPECT_EQ(h_.Send(Side::kClient, ClientData(c, off, kCe)), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_ecn_ce), 1u);
  EXPECT_EQ(h_.Count(Counter::k_ecn_cleared), 3u);
}

TEST_P(ResilienceTest, BackendAcceptingEcnKeepsEveryMark) {
  Conn c = MakeConn();
  c.ecn = true;
  DriveToSynSent(h_, &c);
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c).Flags(kTcpSyn | kTcpAck | kTcpEce)),
            Verdict::kConsumed);
  EXPECT_EQ(h_.Count(Counter::k_backend_ecn_refused), 0u);
  uint32_t off = 0;
  for (uint8_t ecn : {kEct0, kEct1, kCe}) {
    Seen out;
    ASSERT_EQ(h_.Send(Side::kClient, ClientData(c, off, ecn, kTcpEce | kTcpCwr), &out),
              Verdict::kForward);
    EXPECT_EQ(EcnOf(out), ecn);
    EXPECT_EQ(out.flags() & (kTcpEce | kTcpCwr), kTcpEce | kTcpCwr);
    off += 100;
  }
  EXPECT_EQ(h_.Count(Counter::k_ecn_cleared), 0u);
  EXPECT_EQ(h_.Count(Counter::k_drop_ecn_ce), 0u);
}

TEST_P(ResilienceTest, HeldSegmentsStopClaimingEcnTowardsARefusingBackend) {
  Conn c = MakeConn();
  c.ecn = true;
  DoSyn(h_, &c);
  TcpPacket first = ClientHandshakeAck(c, 100).Tos(kEct0);
  ASSERT_EQ(h_.Send(Side::kClient, first), Verdict::kConsumed);
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 2u);
  EXPECT_EQ(EcnOf(h_.emitted()[1]), kNotEct);
  EXPECT_EQ(h_.Count(Counter::k_ecn_cleared), 1u);
}

// ---------------------------------------------------------------------------
// Window scale and ECN when the timestamp echo is lost (RFC 7323 §2.2,
// §2.3). The exact client shift rides only in moat's TSval; the cookie ISN
// carries {none, 6, 7, 8}.

// The bytes a client believes it may send: the window field scaled by the
// shift moat's SYN-ACK offered (RFC 7323 §2.3).
uint64_t ClientSeesBytes(const Seen& synack, const Seen& to_client) {
  const int shift = synack.opts.has_wscale ? synack.opts.wscale : 0;
  return static_cast<uint64_t>(to_client.win()) << shift;
}

struct EchoCase {
  const char* name;
  int client_ws;
  enum { kEcho, kNoTimestamps, kMangled } ack;
  // Expected: the shift moat's SYN-ACK offers, and the one its backend SYN
  // carries (-1: none).
  int synack_ws;
  int backend_syn_ws;
};

class EchoTest : public ::testing::TestWithParam<EchoCase> {};

TEST_P(EchoTest, WindowsTheClientSeesAreTheBackendsWithOrWithoutTheEcho) {
  const EchoCase& t = GetParam();
  Harness h;
  Conn c;
  c.client_ws = t.client_ws;
  c.ecn = true;
  const Seen synack = DoSyn(h, &c);
  ASSERT_EQ(synack.opts.has_wscale, t.synack_ws >= 0);
  if (t.synack_ws >= 0) {
    EXPECT_EQ(synack.opts.wscale, t.synack_ws);
  }
  TcpPacket ack = c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1).Window(c.client_win);
  if (t.ack == EchoCase::kEcho) ack.Timestamps(c.client_tsval, c.synack_tsval);
  // A TSecr whose option bits disagree with the cookie (a middlebox that
  // rewrote it): shift 8, which the ISN's code says it is not.
  if (t.ack == EchoCase::kMangled) {
    ack.Timestamps(c.client_tsval, (c.synack_tsval & ~cookie::kTsOptionMask) | 8u);
  }
  ASSERT_EQ(h.Send(Side::kClient, ack), Verdict::kConsumed);
  ASSERT_EQ(h.emitted().size(), 1u);
  const Seen backend_syn = h.emitted()[0];
  EXPECT_EQ(backend_syn.opts.has_wscale, t.backend_syn_ws >= 0);
  if (t.backend_syn_ws >= 0) {
    EXPECT_EQ(backend_syn.opts.wscale, t.backend_syn_ws);
  }
  EXPECT_EQ(h.Count(Counter::k_ts_echo_mismatch), t.ack == EchoCase::kMangled ? 1u : 0u);
  // ECN rides only in the echo: without it moat cannot know it promised
  // ECN, so the backend is not asked for it.
  EXPECT_EQ(backend_syn.flags() & (kTcpEce | kTcpCwr),
            t.ack == EchoCase::kEcho ? (kTcpEce | kTcpCwr) : 0);

  // The backend answers with its own scaling (honoured only when offered).
  const int backend_ws = 7;
  TcpPacket bsa = c.S()
                .Seq(c.backend_isn)
                .Ack(c.client_isn + 1)
                .Flags(kTcpSyn | kTcpAck)
                .Window(65160)
                .Mss(1460)
                .SackPermitted()
                .WindowScale(backend_ws);
  if (t.ack != EchoCase::kNoTimestamps) bsa.Timestamps(c.backend_tsval, c.client_tsval);
  ASSERT_EQ(h.Send(Side::kServer, bsa), Verdict::kConsumed);
  const int backend_shift = backend_syn.opts.has_wscale ? backend_ws : 0;

  // Windows the backend advertises: the client must read the same bytes
  // (clamped to what the 16-bit field at the client's shift can say).
  for (uint16_t w : {1, 100, 509, 4000, 65535}) {
    SCOPED_TRACE(w);
    TcpPacket data = c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).Window(w);
    if (t.ack != EchoCase::kNoTimestamps) data.Timestamps(c.backend_tsval + 1, c.client_tsval);
    Seen out;
    ASSERT_EQ(h.Send(Side::kServer, data, &out), Verdict::kForward);
    const uint64_t backend_bytes = static_cast<uint64_t>(w) << backend_shift;
    const int to = synack.opts.has_wscale ? synack.opts.wscale : 0;
    const uint64_t most = uint64_t{65535} << to;
    EXPECT_EQ(ClientSeesBytes(synack, out),
              backend_bytes > most ? most : (backend_bytes >> to) << to);
  }
  // Windows the client advertises: the backend never reads more bytes than
  // the client offered (the client scales its own fields by its own shift
  // whenever moat's SYN-ACK carried a window-scale option).
  for (uint16_t w : {1, 100, 502, 65535}) {
    SCOPED_TRACE(w);
    TcpPacket data = c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1).Window(w);
    if (t.ack != EchoCase::kNoTimestamps) data.Timestamps(c.client_tsval + 1, c.synack_tsval);
    Seen out;
    ASSERT_EQ(h.Send(Side::kClient, data, &out), Verdict::kForward);
    const int client_shift = synack.opts.has_wscale && t.client_ws >= 0 ? t.client_ws : 0;
    const uint64_t client_bytes = static_cast<uint64_t>(w) << client_shift;
    const uint64_t backend_reads = static_cast<uint64_t>(out.win())
                                   << (backend_syn.opts.has_wscale ? backend_syn.opts.wscale : 0);
    EXPECT_LE(backend_reads, client_bytes);
    if (t.ack == EchoCase::kEcho) {
      EXPECT_EQ(backend_reads, client_bytes);  // exact when the echo arrived
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, EchoTest,
    ::testing::Values(
        // A shift the ISN cannot carry: moat offers shift 0, so a client
        // whose echo is lost multiplies by 1, which is right.
        EchoCase{"SmallShiftEcho", 2, EchoCase::kEcho, 0, 2},
        EchoCase{"SmallShiftNoTimestampsInAck", 2, EchoCase::kNoTimestamps, 0, -1},
        EchoCase{"SmallShiftMangledEcho", 2, EchoCase::kMangled, 0, -1},
        EchoCase{"ShiftZeroEcho", 0, EchoCase::kEcho, 0, 0},
        EchoCase{"ShiftZeroNoTimestampsInAck", 0, EchoCase::kNoTimestamps, 0, -1},
        // Shifts the ISN carries: moat's own shift, with or without echo.
        EchoCase{"ShiftSevenEcho", 7, EchoCase::kEcho, 7, 7},
        EchoCase{"ShiftSevenNoTimestampsInAck", 7, EchoCase::kNoTimestamps, 7, 7},
        EchoCase{"ShiftTenNoTimestampsInAckRoundsDown", 10, EchoCase::kNoTimestamps, 7, 8},
        EchoCase{"NoShiftEcho", -1, EchoCase::kEcho, -1, -1}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(EchoLostTest, ClientThatMayBelieveInEcnStopsClaimingIt) {
  Harness h;
  Conn c;
  c.ecn = true;
  const Seen synack = DoSyn(h, &c);
  ASSERT_TRUE(synack.flags() & kTcpEce);
  // The third ACK lost its timestamps on the way: moat cannot tell that it
  // agreed to ECN, so the backend SYN asks for none ...
  ASSERT_EQ(h.Send(Side::kClient, c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1)),
            Verdict::kConsumed);
  ASSERT_EQ(h.emitted().size(), 1u);
  EXPECT_EQ(h.emitted()[0].flags() & (kTcpEce | kTcpCwr), 0);
  ASSERT_EQ(
      h.Send(Side::kServer,
             c.S().Seq(c.backend_isn).Ack(c.client_isn + 1).Flags(kTcpSyn | kTcpAck).Mss(1460)),
      Verdict::kConsumed);
  // ... and the client's ECT claims do not reach the backend.
  Seen out;
  ASSERT_EQ(h.Send(Side::kClient, c.C()
                                      .Seq(c.client_isn + 1)
                                      .Ack(c.cookie_isn + 1)
                                      .PayloadSize(10)
                                      .Tos(kEct0)
                                      .Flags(kTcpAck | kTcpEce)),
            Verdict::kForward);
  EXPECT_EQ(h.Send(Side::kClient,
                   c.C().Seq(c.client_isn + 11).Ack(c.cookie_isn + 1).PayloadSize(10).Tos(kEct0), &out),
            Verdict::kForward);
  EXPECT_EQ(EcnOf(out), kNotEct);
  // Not a backend refusal: nobody asked it.
  EXPECT_EQ(h.Count(Counter::k_backend_ecn_refused), 0u);
  EXPECT_EQ(h.Count(Counter::k_ecn_cleared), 2u);
}

// ---------------------------------------------------------------------------
// Blind in-window RSTs (RFC 5961 §3): moat confirms with the endpoint before
// it forgets a flow.

class BlindRstTest : public ResilienceTest {
 protected:
  // Established, and both ends have spoken once so both windows are known
  // (400 << 7 bytes each way).
  void SetUp() override {
    c_ = MakeConn();
    DriveToEstablished(h_, &c_);
    ASSERT_EQ(h_.Send(Side::kServer, c_.S()
                                         .Seq(c_.backend_isn + 1)
                                         .Ack(c_.client_isn + 1)
                                         .Window(400)
                                         .Timestamps(c_.backend_tsval + 5, c_.client_tsval)),
              Verdict::kForward);
    ASSERT_EQ(h_.Send(Side::kClient, c_.C()
                                         .Seq(c_.client_isn + 1)
                                         .Ack(c_.cookie_isn + 1)
                                         .Window(400)
                                         .Timestamps(c_.client_tsval + 5, c_.synack_tsval)),
              Verdict::kForward);
  }
  TcpPacket BlindRstFromClient() const {
    return c_.C().Seq(c_.client_isn + 1 + 1000).Ack(0).Flags(kTcpRst);
  }
  TcpPacket BlindRstFromServer() const {
    return c_.S().Seq(c_.backend_isn + 1 + 5000).Ack(0).Flags(kTcpRst);
  }
  // The backend's ACK as it would answer a probe or a RST (its numbers).
  TcpPacket ServerAck() const {
    return c_.S()
        .Seq(c_.backend_isn + 1)
        .Ack(c_.client_isn + 1)
        .Window(400)
        .Timestamps(c_.backend_tsval + 6, c_.client_tsval + 5);
  }
  const Flow* flow() { return h_.engine().FindFlow(c_.key()); }
  // The first probe goes out time_wait_ms (5 s) after the last RST.
  static constexpr uint64_t kProbeAfter = 5 * kSec;
  Conn c_;
};

MOAT_FAMILIES(BlindRstTest);

TEST_P(BlindRstTest, TwoBlindRstsThenSilenceAreAnsweredByAProbeAndTheFlowStays) {
  // The first blind RST draws the backend's challenge ACK, which withdraws
  // it; the second, 100 ms later, draws nothing: Linux sends at most one
  // challenge ACK per socket per 500 ms (tcp_invalid_ratelimit).
  ASSERT_EQ(h_.Send(Side::kClient, BlindRstFromClient()), Verdict::kForward);
  ASSERT_EQ(h_.Send(Side::kServer, ServerAck()), Verdict::kForward);
  EXPECT_EQ(flow()->state, FlowState::kEstablished);
  h_.Advance(100 * kMs);
  ASSERT_EQ(h_.Send(Side::kClient, BlindRstFromClient()), Verdict::kForward);
  EXPECT_EQ(flow()->state, FlowState::kRstPending);
  EXPECT_EQ(h_.Count(Counter::k_rst_in_window), 2u);

  h_.Advance(kProbeAfter - kMs);
  EXPECT_TRUE(h_.emitted().empty());
  // Silence for time_wait_ms: moat asks the backend, which should have
  // taken the RST, with a keep-alive at its exact numbers: one below what
  // it acknowledged, acking what it sent, with the client's latest TSval.
  h_.Advance(kMs);
  ASSERT_NE(flow(), nullptr);
  ASSERT_EQ(h_.emitted().size(), 1u);
  const Seen& probe = h_.emitted()[0];
  EXPECT_EQ(probe.side, Side::kServer);
  EXPECT_EQ(probe.flags(), kTcpAck);
  EXPECT_EQ(probe.seq(), c_.client_isn);
  EXPECT_EQ(probe.ack(), c_.backend_isn + 1);
  EXPECT_EQ(probe.payload_len(), 0);
  ASSERT_TRUE(probe.opts.has_timestamps);
  EXPECT_EQ(probe.opts.tsval, c_.client_tsval + 5);
  EXPECT_EQ(probe.opts.tsecr, c_.backend_tsval + 6);  // the latest backend TSval
  EXPECT_EQ(std::memcmp(probe.v.src_addr(), v6() ? kClientV6 : kClientV4, v6() ? 16 : 4), 0);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_sent), 1u);

  // The backend still holds the connection and answers with an ACK: the
  // RST is withdrawn, and the answer to moat's own probe stays with moat.
  EXPECT_EQ(h_.Send(Side::kServer, ServerAck()), Verdict::kConsumed);
  EXPECT_EQ(flow()->state, FlowState::kEstablished);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_answered), 1u);
  // Idle a while longer (well inside the idle timeout): nothing happens,
  // and data still flows both ways.
  h_.Advance(30 * kSec);
  EXPECT_TRUE(h_.emitted().empty());
  Seen out;
  ASSERT_EQ(h_.Send(Side::kClient,
                    c_.C()
                        .Seq(c_.client_isn + 1)
                        .Ack(c_.cookie_isn + 1)
                        .Timestamps(c_.client_tsval + 9, c_.synack_tsval + 5)
                        .PayloadSize(10),
                    &out),
            Verdict::kForward);
  EXPECT_EQ(out.ack(), c_.backend_isn + 1);
  ASSERT_EQ(h_.Send(Side::kServer,
                    c_.S()
                        .Seq(c_.backend_isn + 1)
                        .Ack(c_.client_isn + 11)
                        .Timestamps(c_.backend_tsval + 9, c_.client_tsval + 9)
                        .PayloadSize(10),
                    &out),
            Verdict::kForward);
  EXPECT_EQ(out.seq(), c_.cookie_isn + 1);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_unanswered), 0u);
}

TEST_P(BlindRstTest, ProbeAnsweredWithRstEndsTheFlow) {
  ASSERT_EQ(h_.Send(Side::kClient, BlindRstFromClient()), Verdict::kForward);
  h_.Advance(kProbeAfter);
  ASSERT_EQ(h_.emitted().size(), 1u);
  const Seen probe = h_.emitted()[0];
  // The backend took the RST after all (a stack that accepts any in-window
  // RST): it has no connection and answers the probe <SEQ=SEG.ACK><CTL=RST>.
  Seen out;
  ASSERT_EQ(h_.Send(Side::kServer, c_.S().Seq(probe.ack()).Ack(0).Flags(kTcpRst), &out),
            Verdict::kForward);
  EXPECT_EQ(out.side, Side::kClient);
  EXPECT_EQ(out.seq(), c_.cookie_isn + 1);
  EXPECT_EQ(flow(), nullptr);
  EXPECT_EQ(h_.Count(Counter::k_rst_teardown), 1u);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_answered), 0u);
}

TEST_P(BlindRstTest, UnansweredProbesRemoveTheFlowAndResetBothEnds) {
  // A RST from the server side: the probe goes to the client, in the
  // client leg's numbers, with the backend's latest TSval shifted.
  ASSERT_EQ(h_.Send(Side::kServer, BlindRstFromServer()), Verdict::kForward);
  h_.Advance(kProbeAfter);
  ASSERT_EQ(h_.emitted().size(), 1u);
  const Seen& probe = h_.emitted()[0];
  EXPECT_EQ(probe.side, Side::kClient);
  EXPECT_EQ(probe.flags(), kTcpAck);
  EXPECT_EQ(probe.seq(), c_.cookie_isn);
  EXPECT_EQ(probe.ack(), c_.client_isn + 1);
  ASSERT_TRUE(probe.opts.has_timestamps);
  EXPECT_EQ(probe.opts.tsval, c_.backend_tsval + 5 + c_.ts_delta());
  EXPECT_EQ(probe.opts.tsecr, c_.client_tsval + 5);
  // Lost, or never answered: one more probe, then moat gives up, and
  // resets both ends at their exact numbers since it can pass nothing of
  // this flow any more (as idle expiry does).
  h_.Advance(kProbeAfter);
  ASSERT_EQ(h_.emitted().size(), 1u);
  EXPECT_EQ(h_.emitted()[0].side, Side::kClient);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_sent), 2u);
  ASSERT_NE(flow(), nullptr);
  h_.Advance(kProbeAfter);
  EXPECT_EQ(flow(), nullptr);
  ASSERT_EQ(h_.emitted().size(), 2u);
  for (const Seen& rst : h_.emitted()) EXPECT_TRUE(rst.flags() & kTcpRst);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_unanswered), 1u);
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_answered), 0u);
}

TEST_P(BlindRstTest, TrafficBeforeTheProbeWithdrawsTheRst) {
  ASSERT_EQ(h_.Send(Side::kClient, BlindRstFromClient()), Verdict::kForward);
  h_.Advance(kSec);
  // The backend's challenge ACK, late: passed on like any segment.
  EXPECT_EQ(h_.Send(Side::kServer, ServerAck()), Verdict::kForward);
  EXPECT_EQ(flow()->state, FlowState::kEstablished);
  h_.Advance(2 * kProbeAfter);
  EXPECT_TRUE(h_.emitted().empty());
  EXPECT_EQ(h_.Count(Counter::k_rst_probe_sent), 0u);
}

// ---------------------------------------------------------------------------
// Transparency: what moat cannot parse but does not protect passes on byte
// for byte; what could reach a protected service is dropped, counted.

using Bytes = std::vector<uint8_t>;

Bytes ToBytes(const Frame& f) { return Bytes(f.buf, f.buf + f.len); }

// A third VLAN tag in front of the two TcpPacket already has.
Bytes ThreeVlans(Bytes f) {
  const uint8_t tag[4] = {0x81, 0x00, 0x00, 0x07};
  f.insert(f.begin() + 12, tag, tag + 4);
  return f;
}

// An IPv4 frame (no VLAN tags) with 4 bytes of IP options (NOP, NOP, NOP,
// EOL) after the fixed header; lengths and the header checksum fixed. The
// TCP checksum does not cover the IP options.
Bytes WithIpOptions(Bytes f) {
  const uint8_t opts[4] = {1, 1, 1, 0};
  f.insert(f.begin() + 14 + 20, opts, opts + 4);
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x46;
  net::StoreBe16(ip + 2, static_cast<uint16_t>(net::LoadBe16(ip + 2) + 4));
  net::StoreBe16(ip + 10, 0);
  net::StoreBe16(ip + 10, net::Ipv4HeaderChecksum(ip, 24));
  return f;
}

// An IPv6 frame (no VLAN tags) with n Destination Options headers (PadN)
// between the fixed header and TCP.
Bytes WithExtHeaders(Bytes f, int n) {
  uint8_t* ip = f.data() + 14;
  const uint8_t upper = ip[6];
  ip[6] = 60;
  net::StoreBe16(ip + 4, static_cast<uint16_t>(net::LoadBe16(ip + 4) + 8 * n));
  Bytes chain;
  for (int i = 0; i < n; ++i) {
    const uint8_t h[8] = {static_cast<uint8_t>(i + 1 == n ? upper : 60), 0, 1, 4, 0, 0, 0, 0};
    chain.insert(chain.end(), h, h + 8);
  }
  f.insert(f.begin() + 14 + 40, chain.begin(), chain.end());
  return f;
}

struct TransparentCase {
  const char* name;
  std::function<Bytes()> make;
  Side in;
  // Expected: passed on unchanged, or dropped under this parse reason.
  bool passes;
  net::ParseError reason;
};

Frame FromBytes(const Bytes& b) {
  Frame f;
  std::memcpy(f.buf, b.data(), b.size());
  f.len = static_cast<uint16_t>(b.size());
  return f;
}

constexpr uint8_t kBadMss[4] = {2, 3, 5, 1};  // MSS of length 3

TcpPacket ToOther(bool v6 = false) {
  static constexpr uint8_t kOtherV6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3};
  return FromClient(v6).DstAddr(v6 ? kOtherV6 : kOtherV4).Flags(kTcpSyn).Seq(1);
}

std::vector<TransparentCase> TransparentCases() {
  using PE = net::ParseError;
  return {
      {"ThreeVlansToAnotherHost",
       [] { return ThreeVlans(ToBytes(ToOther().Vlan(1).Vlan(2).BuildFrame())); }, Side::kClient, true,
       PE::kOk},
      {"ThreeVlansToAnotherPortOfTheService",
       [] {
         return ThreeVlans(
             ToBytes(FromClient().Ports(5555, 22).Flags(kTcpSyn).Vlan(1).Vlan(2).BuildFrame()));
       },
       Side::kClient, true, PE::kOk},
      {"ThreeVlansToTheService",
       [] { return ThreeVlans(ToBytes(FromClient().Flags(kTcpSyn).Vlan(1).Vlan(2).BuildFrame())); },
       Side::kClient, false, PE::kTooManyVlans},
      {"ThreeVlansNotIp",
       [] {
         Bytes f = ThreeVlans(ToBytes(ToOther().Vlan(1).Vlan(2).BuildFrame()));
         net::StoreBe16(f.data() + 24, net::kEtherTypeArp);
         return f;
       },
       Side::kClient, true, PE::kOk},
      {"UnknownEtherType",
       [] {
         Bytes f = ToBytes(FromClient().Flags(kTcpSyn).BuildFrame());
         net::StoreBe16(f.data() + 12, 0x88b5);  // IEEE local experimental
         return f;
       },
       Side::kClient, true, PE::kOk},
      {"NineExtensionHeadersToAnotherHost",
       [] { return WithExtHeaders(ToBytes(ToOther(true).BuildFrame()), 9); }, Side::kClient, true,
       PE::kOk},
      {"NineExtensionHeadersToTheServiceAddress",
       [] { return WithExtHeaders(ToBytes(FromClient(true).Ports(5555, 22).BuildFrame()), 9); },
       Side::kClient, false, PE::kIpv6TooManyExtHeaders},
      {"IpOptionsToAnotherHost", [] { return WithIpOptions(ToBytes(ToOther().BuildFrame())); },
       Side::kClient, true, PE::kOk},
      {"BadTcpOptionToAnotherHost",
       [] {
         return ToBytes(ToOther().Opt({kBadMss[0], kBadMss[1], kBadMss[2], kBadMss[3]}).BuildFrame());
       },
       Side::kClient, true, PE::kOk},
      {"BadTcpOptionToAnotherPortOfTheService",
       [] {
         return ToBytes(FromClient().Ports(5555, 22).Opt({2, 3, 5, 1}).Flags(kTcpSyn).BuildFrame());
       },
       Side::kClient, true, PE::kOk},
      {"BadTcpOptionToTheService",
       [] {
         return ToBytes(FromClient().Opt({2, 3, 5, 1}).Flags(kTcpSyn).BuildFrame());
       },
       Side::kClient, false, PE::kTcpOptionBadLength},
      {"BadTcpOptionFromAnotherPortOfTheServiceHost",
       [] {
         return ToBytes(FromServer().Ports(22, 5555).Opt({2, 3, 5, 1}).BuildFrame());
       },
       Side::kServer, true, PE::kOk},
      {"BadTcpOptionFromTheService",
       [] {
         return ToBytes(FromServer().Opt({2, 3, 5, 1}).BuildFrame());
       },
       Side::kServer, false, PE::kTcpOptionBadLength},
      {"BadIpLengthToAnotherHost",
       [] {
         Bytes f = ToBytes(ToOther().BuildFrame());
         net::StoreBe16(f.data() + 14 + 2, 1400);  // beyond the frame
         return f;
       },
       Side::kClient, true, PE::kOk},
      {"BadIpLengthToTheServiceAddress",
       [] {
         Bytes f = ToBytes(FromClient().Ports(5555, 22).BuildFrame());
         net::StoreBe16(f.data() + 14 + 2, 1400);
         return f;
       },
       Side::kClient, false, PE::kIpv4TotalLengthTooLong},
      {"TruncatedEthernetCannotBeAttributed", [] { return Bytes(10, 0xab); }, Side::kClient, false,
       PE::kTruncatedEthernet},
  };
}

class TransparentTest : public ::testing::TestWithParam<TransparentCase> {};

TEST_P(TransparentTest, UnprotectedPassesByteForByteProtectedIsDropped) {
  const TransparentCase& t = GetParam();
  Harness h;
  const Bytes in = t.make();
  Frame f = FromBytes(in);
  const Verdict v = h.engine().Process(t.in, f.buf, &f.len, sizeof(f.buf), h.now(), h.out());
  h.Drain();
  EXPECT_TRUE(h.emitted().empty());
  if (t.passes) {
    EXPECT_EQ(v, Verdict::kForward);
    EXPECT_EQ(Bytes(f.buf, f.buf + f.len), in) << "changed on the way";
    EXPECT_EQ(h.Count(Counter::k_bridged) + h.Count(Counter::k_bridged_unparsed), 1u);
    EXPECT_EQ(h.Count(Counter::k_drop_parse), 0u);
  } else {
    EXPECT_EQ(v, Verdict::kDrop);
    EXPECT_EQ(h.Count(Counter::k_drop_parse), 1u);
    EXPECT_EQ(h.engine().stats().LoadParse(static_cast<size_t>(t.reason)), 1u);
    EXPECT_EQ(h.Count(Counter::k_bridged_unparsed), 0u);
  }
  EXPECT_EQ(h.engine().flow_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Table, TransparentTest, ::testing::ValuesIn(TransparentCases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(TransparentCountTest, UnparsedFramesForOthersAreCountedApart) {
  Harness h;
  Frame f = FromBytes(ThreeVlans(ToBytes(ToOther().Vlan(1).Vlan(2).BuildFrame())));
  EXPECT_EQ(h.Send(Side::kClient, f), Verdict::kForward);
  EXPECT_EQ(h.Count(Counter::k_bridged_unparsed), 1u);
  EXPECT_EQ(h.Count(Counter::k_drop_parse), 0u);
  // A well-formed frame for another host is plain `bridged`.
  Frame g = FromBytes(WithIpOptions(ToBytes(ToOther().BuildFrame())));
  EXPECT_EQ(h.Send(Side::kClient, g), Verdict::kForward);
  EXPECT_EQ(h.Count(Counter::k_bridged), 1u);
}

TEST(TransparentCountTest, ProtectedConnectionWithIpOptionsIsAnswered) {
  // IP options do not stop moat from serving the protected service: the
  // SYN is answered with a cookie (the SYN-ACK carries no IP options).
  Harness h;
  Conn c;
  Frame f = FromBytes(WithIpOptions(ToBytes(ClientSyn(c).BuildFrame())));
  Seen synack;
  ASSERT_EQ(h.Send(Side::kClient, f, &synack), Verdict::kReflect);
  EXPECT_EQ(synack.flags(), kTcpSyn | kTcpAck);
  EXPECT_EQ(synack.ack(), c.client_isn + 1);
}

}  // namespace
}  // namespace moat::proxy::testing
