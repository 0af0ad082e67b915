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

}  // namespace
}  // namespace moat::proxy::testing
