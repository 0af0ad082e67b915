// --mtu (issue 11 item 5, jumbo frames): what the engine does with the
// configured MTU. The checks of --mss against it, full-size segments held
// during the backend handshake and released whole, a frame longer than a
// held slot dropped and counted, and the MSS moat passes to the backend
// clamped to what the MTU carries.

#include <string>

#include "engine_harness.h"
#include "gtest/gtest.h"
#include "moat/proxy/held_pool.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpPsh;
using net::kTcpSyn;

EngineConfig MtuConfig(uint16_t mtu, uint16_t mss) {
  EngineConfig c = DefaultConfig();
  c.mtu = mtu;
  c.mss = mss;
  return c;
}

TEST(MtuConfigTest, MssMustFitTheMtu) {
  EXPECT_TRUE(ValidateConfig(MtuConfig(1500, 1460)).ok());
  EXPECT_TRUE(ValidateConfig(MtuConfig(9000, 8960)).ok());
  EXPECT_TRUE(ValidateConfig(MtuConfig(9000, 1460)).ok());
  const absl::Status s = ValidateConfig(MtuConfig(1500, 8960));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(std::string(s.message()),
            "--mss=8960 does not fit --mtu=1500: a 1500-byte MTU carries an MSS of at most 1460 "
            "(MTU - 40 bytes of IPv4 and TCP headers); lower --mss or raise --mtu");
  EXPECT_FALSE(ValidateConfig(MtuConfig(1500, 1461)).ok());
  EXPECT_FALSE(ValidateConfig(MtuConfig(9000, 9000)).ok());
  // The default MSS fits the smallest MTU moat accepts.
  EXPECT_TRUE(ValidateConfig(MtuConfig(1280, 1240)).ok());
}

TEST(MtuConfigTest, MtuRange) {
  const absl::Status low = ValidateConfig(MtuConfig(1279, 536));
  ASSERT_FALSE(low.ok());
  EXPECT_EQ(std::string(low.message()), "--mtu=1279 is out of range [1280, 9000]");
  EXPECT_FALSE(ValidateConfig(MtuConfig(9001, 1460)).ok());
  EXPECT_TRUE(ValidateConfig(MtuConfig(1280, 536)).ok());
}

TEST(MtuConfigTest, FrameRoomHoldsAWholeFrame) {
  // Ethernet, two VLAN tags and the IP packet; never below a standard
  // mbuf's 2048 bytes.
  EXPECT_EQ(FrameRoom(1500), 2048u);
  EXPECT_EQ(FrameRoom(1280), 2048u);
  EXPECT_EQ(FrameRoom(9000), 9024u);
  EXPECT_GE(FrameRoom(9000), 9000u + 14 + 8);
  EXPECT_EQ(FrameRoom(4000) % 64, 0u);
  EXPECT_EQ(kMaxFrame, FrameRoom(kMaxMtu));
  EXPECT_FALSE(HeldPool::Create(4, kMaxFrame + 64).ok());
  auto pool = HeldPool::Create(4, FrameRoom(9000));
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ((*pool)->frame_room(), 9024u);
  // The held pool is what grows with the MTU (README, sizing).
  EXPECT_GT(HeldPool::MemoryBytes(4096, FrameRoom(9000)),
            4 * HeldPool::MemoryBytes(4096, FrameRoom(1500)));
}

class JumboTest : public FamilyTest {
 protected:
  // The largest MSS moat advertises at MTU 9000 in this family, and the
  // payload of a full-size segment carrying timestamps (12 option bytes).
  uint16_t mss() const { return v6() ? 8940 : 8960; }
  uint16_t full_payload() const { return static_cast<uint16_t>(mss() - 12); }
  Conn JumboConn() const {
    Conn c;
    c.v6 = v6();
    c.mss = mss();
    c.backend_mss = mss();
    return c;
  }
};

MOAT_FAMILIES(JumboTest);

TEST_P(JumboTest, FullSizeSegmentsHeldDuringTheBackendHandshakeAreReleasedWhole) {
  Harness h(MtuConfig(9000, 8960));
  Conn c = JumboConn();
  const Seen synack = DoSyn(h, &c);
  EXPECT_EQ(synack.opts.mss, mss());  // what 9000 bytes carry in this family
  // The third ACK with a full-size segment, then a second one.
  TcpPacket first = ClientHandshakeAck(c, full_payload());
  {
    Frame f = first.BuildFrame();
    EXPECT_EQ(f.len, 9000 + 14);  // a full 9000-byte IP packet
    ASSERT_EQ(h.Send(Side::kClient, f), Verdict::kConsumed);
  }
  ASSERT_EQ(h.emitted().size(), 1u);
  EXPECT_EQ(h.emitted()[0].flags(), kTcpSyn);
  // The client's, within the MTU, less the 12 bytes kept for a TSopt.
  EXPECT_EQ(h.emitted()[0].opts.mss, mss() - 12);
  TcpPacket second = c.C()
                         .Seq(c.client_isn + 1 + full_payload())
                         .Ack(c.cookie_isn + 1)
                         .Window(c.client_win)
                         .Timestamps(c.client_tsval + 1, c.synack_tsval)
                         .PayloadFill(full_payload(), 'y')
                         .Flags(kTcpAck | kTcpPsh);
  ASSERT_EQ(h.Send(Side::kClient, second), Verdict::kConsumed);
  EXPECT_EQ(h.Count(Counter::k_held_segments), 2u);
  EXPECT_EQ(h.Count(Counter::k_drop_held_overflow), 0u);
  EXPECT_EQ(h.Count(Counter::k_drop_held_oversize), 0u);

  ASSERT_EQ(h.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  const auto& out = h.emitted();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].payload_len(), 0);  // the third ACK
  for (int i = 1; i <= 2; ++i) {
    EXPECT_EQ(out[i].side, Side::kServer);
    EXPECT_EQ(out[i].frame->len, 9000 + 14);
    EXPECT_EQ(out[i].seq(), c.client_isn + 1 + full_payload() * (i - 1));
    ASSERT_EQ(out[i].payload_len(), full_payload());
    const uint8_t want = i == 1 ? 'x' : 'y';
    size_t wrong = 0;
    for (size_t b = 0; b < full_payload(); ++b) wrong += out[i].v.payload()[b] != want;
    EXPECT_EQ(wrong, 0u) << "payload bytes changed";
  }
  EXPECT_EQ(h.Count(Counter::k_held_released), 2u);
}

// A frame longer than a held slot only arrives when the link lets through
// more than --mtu: it is not held (the Output and the slots are sized by
// the MTU), the flow stays, and the client's retransmission, sized by the
// MSS moat advertised, gets through.
TEST_P(JumboTest, AFrameLongerThanAHeldSlotIsDroppedAndCounted) {
  Harness h;  // --mtu=1500: 2048-byte slots
  Conn c = JumboConn();
  c.mss = 1460;
  DoSyn(h, &c);
  ASSERT_EQ(h.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kConsumed);
  TcpPacket big = c.C()
                      .Seq(c.client_isn + 1)
                      .Ack(c.cookie_isn + 1)
                      .Window(c.client_win)
                      .Timestamps(c.client_tsval, c.synack_tsval)
                      .PayloadFill(3000, 'z')
                      .Flags(kTcpAck | kTcpPsh);
  EXPECT_EQ(h.Send(Side::kClient, big), Verdict::kDrop);
  EXPECT_EQ(h.Count(Counter::k_drop_held_oversize), 1u);
  EXPECT_EQ(h.Count(Counter::k_drop_held_overflow), 0u);
  EXPECT_EQ(h.Count(Counter::k_held_segments), 0u);
  const Flow* f = h.engine().FindFlow(c.key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->state, FlowState::kSynSent);
  TcpPacket again = big;
  again.PayloadFill(1000, 'z');
  EXPECT_EQ(h.Send(Side::kClient, again), Verdict::kConsumed);
  EXPECT_EQ(h.Count(Counter::k_held_segments), 1u);
}

// The same on the third ACK itself: the flow is created, the data is not.
TEST_P(JumboTest, AnOversizedThirdAckCreatesTheFlowWithoutItsData) {
  Harness h;
  Conn c = JumboConn();
  c.mss = 1460;
  DoSyn(h, &c);
  EXPECT_EQ(h.Send(Side::kClient, ClientHandshakeAck(c, 3000)), Verdict::kDrop);
  EXPECT_EQ(h.Count(Counter::k_drop_held_oversize), 1u);
  EXPECT_EQ(h.Count(Counter::k_backend_syn_sent), 1u);
  EXPECT_NE(h.engine().FindFlow(c.key()), nullptr);
}

// A jumbo client behind a moat whose ports carry 1500 bytes: the backend
// must not be invited to send segments moat's ports cannot carry.
TEST_P(JumboTest, TheBackendSynCarriesNoMoreMssThanTheMtuCarries) {
  {
    Harness h;  // --mtu=1500
    Conn c = JumboConn();
    const Seen syn = DriveToSynSent(h, &c);
    EXPECT_EQ(syn.flags(), kTcpSyn);
    // Each less the 12 bytes kept for a TSopt (the client has timestamps;
    // PlanTsRoom).
    EXPECT_EQ(syn.opts.mss, (v6() ? 1440 : 1460) - 12);
  }
  {
    Harness h(MtuConfig(4000, 1460));
    Conn c = JumboConn();
    const Seen syn = DriveToSynSent(h, &c);
    EXPECT_EQ(syn.opts.mss, (v6() ? 3940 : 3960) - 12);
  }
  {
    Harness h(MtuConfig(9000, 1460));
    Conn c = JumboConn();
    const Seen syn = DriveToSynSent(h, &c);
    EXPECT_EQ(syn.opts.mss, mss() - 12);
  }
}

}  // namespace
}  // namespace moat::proxy::testing
