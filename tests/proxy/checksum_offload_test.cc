// Checksum offloads at the engine's entry points (frame_meta.h): the NIC's
// RX verdict standing in for the software verify, and the frames the engine
// builds with only the pseudo-header sum when the egress port completes
// checksums itself. The dataplane's half (mbuf flags <-> FrameMeta) is in
// tests/dataplane/frame_path_test.cc.

#include <cstring>
#include <vector>

#include "engine_harness.h"
#include "gtest/gtest.h"
#include "moat/net/bytes.h"
#include "moat/net/checksum.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpSyn;

// Process() with a FrameMeta; whatever it appended stays in h.out().
Verdict SendMeta(Harness& h, Side in, Frame& f, FrameMeta* meta) {
  h.out()->Clear();
  return h.engine().Process(in, f.buf, &f.len, sizeof(f.buf), h.now(), h.out(), meta);
}

// Breaks a frame's TCP checksum (the field itself, so nothing else moves).
void BreakTcpChecksum(Frame& f) {
  net::PacketView v;
  ASSERT_EQ(moat::testing::Parse(f, &v), net::ParseError::kOk);
  f.buf[v.l4_offset + 16] ^= 0x5a;
  ASSERT_FALSE(net::VerifyTcpChecksum(v));
}

// Breaks an IPv4 header checksum.
void BreakIpChecksum(Frame& f) {
  net::PacketView v;
  ASSERT_EQ(moat::testing::Parse(f, &v), net::ParseError::kOk);
  f.buf[v.l3_offset + 10] ^= 0x5a;
  ASSERT_FALSE(net::VerifyIpv4HeaderChecksum(v));
}

FrameMeta Rx(HwChecksum ip, HwChecksum l4) {
  FrameMeta m;
  m.rx_ip = ip;
  m.rx_l4 = l4;
  return m;
}

class RxVerdictTest : public FamilyTest {
 protected:
  Harness h_;
};

MOAT_FAMILIES(RxVerdictTest);

// GOOD is believed: a SYN whose TCP checksum is wrong in the bytes is
// answered (the NIC said it was right; the sum is not done again).
TEST_P(RxVerdictTest, GoodSkipsTheSoftwareVerify) {
  Frame f = ClientSyn(MakeConn()).BuildFrame();
  BreakTcpChecksum(f);
  FrameMeta m = Rx(HwChecksum::kGood, HwChecksum::kGood);
  EXPECT_EQ(SendMeta(h_, Side::kClient, f, &m), Verdict::kReflect);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), 1u);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 0u);
}

// BAD drops a SYN whose checksum is right in the bytes, counted as a
// software failure is.
TEST_P(RxVerdictTest, BadL4IsDroppedAndCounted) {
  Frame f = ClientSyn(MakeConn()).BuildFrame();
  FrameMeta m = Rx(HwChecksum::kGood, HwChecksum::kBad);
  EXPECT_EQ(SendMeta(h_, Side::kClient, f, &m), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 1u);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), 0u);
}

// UNKNOWN (no offload, or a frame the NIC could not parse) is summed in
// software: a wrong checksum is dropped, a right one answered.
TEST_P(RxVerdictTest, UnknownFallsBackToSoftware) {
  Frame bad = ClientSyn(MakeConn()).BuildFrame();
  BreakTcpChecksum(bad);
  FrameMeta m = Rx(HwChecksum::kUnknown, HwChecksum::kUnknown);
  EXPECT_EQ(SendMeta(h_, Side::kClient, bad, &m), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 1u);
  Frame good = ClientSyn(MakeConn()).BuildFrame();
  EXPECT_EQ(SendMeta(h_, Side::kClient, good, &m), Verdict::kReflect);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), 1u);
}

// A VLAN-tagged SYN the NIC did not parse (UNKNOWN) with a wrong checksum
// is still caught in software.
TEST_P(RxVerdictTest, AFrameTheNicCouldNotParseIsSummedInSoftware) {
  Frame f = ClientSyn(MakeConn()).Vlan(7).Vlan(9, 0x88a8).BuildFrame();
  BreakTcpChecksum(f);
  FrameMeta m;  // UNKNOWN, UNKNOWN
  EXPECT_EQ(SendMeta(h_, Side::kClient, f, &m), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 1u);
}

// verify_checksums=false judges no checksum, whatever the NIC said.
TEST_P(RxVerdictTest, VerifyOffIgnoresABadVerdict) {
  EngineConfig cfg = DefaultConfig();
  cfg.verify_checksums = false;
  Harness h(cfg);
  Frame f = ClientSyn(MakeConn()).BuildFrame();
  FrameMeta m = Rx(HwChecksum::kBad, HwChecksum::kBad);
  EXPECT_EQ(SendMeta(h, Side::kClient, f, &m), Verdict::kReflect);
  EXPECT_EQ(h.Count(Counter::k_drop_bad_checksum), 0u);
}

// Spliced data is not verified in software (engine.cc, "Checksums."), so a
// BAD verdict on it changes nothing either: the endpoint drops it.
TEST_P(RxVerdictTest, SplicedDataIsNotJudgedByTheVerdictEither) {
  Conn c = MakeConn();
  DriveToEstablished(h_, &c);
  Frame d = c.C()
                .Seq(c.client_isn + 1)
                .Ack(c.cookie_isn + 1)
                .PayloadFill(100, 'd')
                .Flags(kTcpAck)
                .BuildFrame();
  FrameMeta m = Rx(HwChecksum::kGood, HwChecksum::kBad);
  EXPECT_EQ(SendMeta(h_, Side::kClient, d, &m), Verdict::kForward);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 0u);
}

// The IPv4 header verdict is its own: GOOD skips the header sum, BAD drops,
// and the TCP sum is still done when only the header was checked. IPv6 has
// no header checksum, so its IP verdict is never read.
TEST_P(RxVerdictTest, TheIpVerdictCountsOnlyForIpv4) {
  if (v6()) {
    Frame f = ClientSyn(MakeConn()).BuildFrame();
    FrameMeta m = Rx(HwChecksum::kBad, HwChecksum::kGood);
    EXPECT_EQ(SendMeta(h_, Side::kClient, f, &m), Verdict::kReflect);
    EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 0u);
    return;
  }
  Frame wrong_ip = ClientSyn(MakeConn()).BuildFrame();
  BreakIpChecksum(wrong_ip);
  FrameMeta ip_good = Rx(HwChecksum::kGood, HwChecksum::kUnknown);
  EXPECT_EQ(SendMeta(h_, Side::kClient, wrong_ip, &ip_good), Verdict::kReflect);

  Frame right = ClientSyn(MakeConn()).BuildFrame();
  FrameMeta ip_bad = Rx(HwChecksum::kBad, HwChecksum::kGood);
  EXPECT_EQ(SendMeta(h_, Side::kClient, right, &ip_bad), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 1u);

  Frame wrong_tcp = ClientSyn(MakeConn()).BuildFrame();
  BreakTcpChecksum(wrong_tcp);
  EXPECT_EQ(SendMeta(h_, Side::kClient, wrong_tcp, &ip_good), Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 2u);
}

// ProcessBurst takes one verdict per frame, in order.
TEST_P(RxVerdictTest, BurstVerdictsArePerFrame) {
  std::vector<Frame> frames;
  for (uint16_t i = 0; i < 3; ++i) {
    Conn c = MakeConn();
    c.client_port = static_cast<uint16_t>(41000 + i);
    frames.push_back(ClientSyn(c).BuildFrame());
  }
  BreakTcpChecksum(frames[0]);  // GOOD: answered anyway
  BreakTcpChecksum(frames[2]);  // UNKNOWN: caught in software
  FrameMeta meta[3] = {Rx(HwChecksum::kGood, HwChecksum::kGood),
                       Rx(HwChecksum::kGood, HwChecksum::kBad), FrameMeta{}};
  uint8_t* ptrs[3];
  uint16_t lens[3];
  for (int i = 0; i < 3; ++i) {
    ptrs[i] = frames[i].buf;
    lens[i] = frames[i].len;
  }
  Verdict verdicts[3];
  h_.out()->Clear();
  ASSERT_EQ(h_.engine().ProcessBurst(Side::kClient, ptrs, lens, kMaxFrame, 3, h_.now(), verdicts,
                                     h_.out(), meta),
            3);
  EXPECT_EQ(verdicts[0], Verdict::kReflect);
  EXPECT_EQ(verdicts[1], Verdict::kDrop);
  EXPECT_EQ(verdicts[2], Verdict::kDrop);
  EXPECT_EQ(h_.Count(Counter::k_drop_bad_checksum), 2u);
  EXPECT_EQ(h_.Count(Counter::k_synack_sent), 1u);
}

// ---------------------------------------------------------------------------
// TX: frames built for a port that completes checksums.

EngineConfig OffloadConfig() {
  EngineConfig c = DefaultConfig();
  c.tx_checksum_offload[0] = c.tx_checksum_offload[1] = true;
  return c;
}

// A frame left to the NIC: IPv4 header checksum 0, the TCP field holding
// the pseudo-header sum; completed as the NIC would, it verifies.
void ExpectOffloaded(uint8_t* frame, uint16_t len, const TxChecksum& tx, bool v6,
                     size_t l2_len = 14) {
  ASSERT_TRUE(tx.offloaded());
  EXPECT_EQ(tx.l2_len, l2_len);
  EXPECT_EQ(tx.l3_len, v6 ? 40 : 20);
  EXPECT_EQ(tx.ipv6, v6);
  net::PacketView v;
  ASSERT_EQ(net::ParseFrame(frame, len, &v), net::ParseError::kOk);
  ASSERT_TRUE(v.is_tcp);
  EXPECT_EQ(v.l3_offset, tx.l2_len);
  EXPECT_EQ(v.l4_offset, tx.l2_len + tx.l3_len);
  const size_t tcp_len = len - v.l4_offset;
  const uint32_t pseudo =
      net::ChecksumAccumulate(v.src_addr(), v.addr_len(),
                              net::ChecksumAccumulate(v.dst_addr(), v.addr_len())) +
      net::kIpProtoTcp + static_cast<uint32_t>(tcp_len);
  EXPECT_EQ(net::LoadBe16(v.tcp() + 16), static_cast<uint16_t>(~net::ChecksumFinish(pseudo)));
  if (!v6) {
    EXPECT_EQ(net::LoadBe16(v.ip() + 10), 0u);
  }
  EXPECT_FALSE(net::VerifyTcpChecksum(v));
  moat::testing::CompleteChecksumsAsNic(frame, len, tx.l2_len, tx.l3_len, !v6);
  EXPECT_TRUE(net::VerifyTcpChecksum(v));
  if (!v6) {
    EXPECT_TRUE(net::VerifyIpv4HeaderChecksum(v));
  }
}

TEST_P(RxVerdictTest, TheSynAckInPlaceLeavesItsChecksumsToTheNic) {
  Harness h(OffloadConfig());
  Frame f = ClientSyn(MakeConn()).BuildFrame();
  FrameMeta m;
  ASSERT_EQ(SendMeta(h, Side::kClient, f, &m), Verdict::kReflect);
  ExpectOffloaded(f.buf, f.len, m.tx, v6());
  // A tagged one: the tags are part of l2_len.
  Frame t = ClientSyn(MakeConn()).Vlan(7).BuildFrame();
  FrameMeta mt;
  ASSERT_EQ(SendMeta(h, Side::kClient, t, &mt), Verdict::kReflect);
  ExpectOffloaded(t.buf, t.len, mt.tx, v6(), 18);
}

// Without a FrameMeta to say so, a frame answered in place cannot be
// offloaded: its checksums are complete, offload or not.
TEST_P(RxVerdictTest, NoMetaMeansCompleteChecksums) {
  Harness h(OffloadConfig());
  Seen synack;
  EXPECT_EQ(h.Send(Side::kClient, ClientSyn(MakeConn()), &synack), Verdict::kReflect);
  // (ParseSeen checked both checksums.)
  EXPECT_EQ(synack.flags(), kTcpSyn | kTcpAck);
}

// Without offload the checksums are complete and tx says nothing, even when
// the caller's meta came in with junk in it.
TEST_P(RxVerdictTest, WithoutOffloadNothingIsLeftToTheNic) {
  Frame f = ClientSyn(MakeConn()).BuildFrame();
  FrameMeta m;
  m.tx = TxChecksum{14, 20, false};
  ASSERT_EQ(SendMeta(h_, Side::kClient, f, &m), Verdict::kReflect);
  EXPECT_FALSE(m.tx.offloaded());
  net::PacketView v;
  ASSERT_EQ(moat::testing::Parse(f, &v), net::ParseError::kOk);
  EXPECT_TRUE(net::VerifyTcpChecksum(v));
  if (!v6()) {
    EXPECT_TRUE(net::VerifyIpv4HeaderChecksum(v));
  }
}

// Generated frames (the backend SYN here) carry Emitted::tx; a frame moat
// only rewrote (spliced data) never does.
TEST_P(RxVerdictTest, GeneratedFramesSayWhatTheyLeftToTheNic) {
  Harness h(OffloadConfig());
  Conn c = MakeConn();
  DoSyn(h, &c);  // Send(): no meta, complete checksums
  Frame ack = ClientHandshakeAck(c).BuildFrame();
  FrameMeta m;
  ASSERT_EQ(SendMeta(h, Side::kClient, ack, &m), Verdict::kConsumed);
  ASSERT_EQ(h.out()->size(), 1u);
  Emitted e = (*h.out())[0];
  EXPECT_EQ(e.out, Side::kServer);
  std::vector<uint8_t> syn(e.data, e.data + e.len);
  ExpectOffloaded(syn.data(), e.len, e.tx, v6());
  h.out()->Clear();

  Frame sa = BackendSynAck(c).BuildFrame();
  FrameMeta ms;
  ASSERT_EQ(SendMeta(h, Side::kServer, sa, &ms), Verdict::kConsumed);
  ASSERT_EQ(h.out()->size(), 1u);  // the third ACK
  e = (*h.out())[0];
  std::vector<uint8_t> third(e.data, e.data + e.len);
  ExpectOffloaded(third.data(), e.len, e.tx, v6());
  h.out()->Clear();

  Frame d = c.C()
                .Seq(c.client_isn + 1)
                .Ack(c.cookie_isn + 1)
                .PayloadFill(10, 'd')
                .Flags(kTcpAck)
                .BuildFrame();
  FrameMeta md;
  ASSERT_EQ(SendMeta(h, Side::kClient, d, &md), Verdict::kForward);
  EXPECT_FALSE(md.tx.offloaded());
  net::PacketView v;
  ASSERT_EQ(moat::testing::Parse(d, &v), net::ParseError::kOk);
  EXPECT_TRUE(net::VerifyTcpChecksum(v)) << "rewritten frames keep incremental updates";
}

// Offload is per side: towards a port without it the frames are whole.
TEST_P(RxVerdictTest, OffloadIsPerEgressPort) {
  EngineConfig cfg = DefaultConfig();
  cfg.tx_checksum_offload[static_cast<int>(Side::kClient)] = true;  // not towards the server
  Harness h(cfg);
  Conn c = MakeConn();
  DoSyn(h, &c);
  Frame ack = ClientHandshakeAck(c).BuildFrame();
  FrameMeta m;
  ASSERT_EQ(SendMeta(h, Side::kClient, ack, &m), Verdict::kConsumed);
  ASSERT_EQ(h.out()->size(), 1u);
  EXPECT_FALSE((*h.out())[0].tx.offloaded());
  h.Drain();  // parses it: both checksums complete
  ASSERT_EQ(h.emitted().size(), 1u);
}

}  // namespace
}  // namespace moat::proxy::testing
