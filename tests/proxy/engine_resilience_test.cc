// Engine scenarios for "moat is never the reason a connection breaks":
// retransmissions while the backend handshake runs, window scaling and ECN
// when the client's timestamp echo is lost, backends that refuse ECN, blind
// in-window RSTs (RFC 5961 §3) and frames moat does not protect but cannot
// parse. Every emitted or rewritten frame is parsed back and its checksums
// verified (ParseSeen).

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

class ResilienceTest : public ::testing::TestWithParam<bool> {
 protected:
  bool v6() const { return GetParam(); }
  Conn MakeConn() const {
    Conn c;
    c.v6 = v6();
    return c;
  }
  Harness h_;
};

INSTANTIATE_TEST_SUITE_P(Families, ResilienceTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Ipv6" : "Ipv4"; });

// ---------------------------------------------------------------------------
// Held data: retransmissions while the backend handshake runs.

TEST_P(ResilienceTest, RetransmittedCopiesDoNotFillTheHeldSlots) {
  Conn c = MakeConn();
  DriveToSynSent(h_, &c, /*payload=*/100);  // held: [isn+1, isn+101)
  const auto data = [&](uint32_t off, size_t len, uint32_t tsval) {
    return c.C().Seq(c.client_isn + 1 + off).Ack(c.cookie_isn + 1).Win(c.client_win)
        .Ts(tsval, c.synack_tsval).Payload(len).Flags(kTcpAck | kTcpPsh);
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
  Seg fin = data(250, 0, c.client_tsval + 11).Flags(kTcpAck | kTcpFin);
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
  // The latest TSval of any copy went into the third ACK.
  EXPECT_EQ(out[0].opts.tsval, c.client_tsval + 11);
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

Seg ClientData(const Conn& c, uint32_t off, uint8_t ecn, uint8_t extra_flags = 0) {
  return c.C().Seq(c.client_isn + 1 + off).Ack(c.cookie_isn + 1).Win(c.client_win)
      .Ts(c.client_tsval + 1 + off, c.synack_tsval).Payload(100).Tos(uint8_t(0xb8 | ecn))
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
    if (out.v.ipv6()) {  // DSCP kept
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
  Seg first = ClientHandshakeAck(c, 100).Tos(kEct0);
  ASSERT_EQ(h_.Send(Side::kClient, first), Verdict::kConsumed);
  ASSERT_EQ(h_.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  ASSERT_EQ(h_.emitted().size(), 2u);
  EXPECT_EQ(EcnOf(h_.emitted()[1]), kNotEct);
  EXPECT_EQ(h_.Count(Counter::k_ecn_cleared), 1u);
}

}  // namespace
}  // namespace moat::proxy::testing
