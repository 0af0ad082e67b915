// Backend option learning (include/moat/proxy/backend_table.h,
// lib/proxy/backends.cc; issue "Never the reason a connection breaks",
// item 1): after one SYN-ACK from a backend with timestamps, SACK and ECN
// off and a smaller MSS, moat's SYN-ACKs for that backend offer none of
// them and no larger MSS, and the backend SYN that follows asks for none.

#include "engine_harness.h"
#include "gtest/gtest.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpCwr;
using net::kTcpEce;
using net::kTcpSyn;

EngineConfig LearningConfig() {
  EngineConfig c = DefaultConfig();
  c.learn_backends = true;
  c.ecn = true;
  return c;
}

// A client that asks for everything, on its own port.
Conn Client(bool v6, uint16_t port) {
  Conn c;
  c.v6 = v6;
  c.ecn = true;
  c.client_port = port;
  return c;
}

// The backend of the issue: timestamps, SACK and ECN off, MSS 1360.
TcpPacket PlainBackendSynAck(const Conn& c, uint16_t mss = 1360) {
  return c.S()
      .Seq(c.backend_isn)
      .Ack(c.client_isn + 1)
      .Flags(kTcpSyn | kTcpAck)
      .Window(65160)
      .Mss(mss)
      .WindowScale(7);
}

// One whole handshake through moat with that backend; returns the backend
// SYN moat sent.
Seen Connect(Harness& h, Conn* c, uint16_t backend_mss = 1360) {
  const Seen syn = DriveToSynSent(h, c);
  EXPECT_EQ(h.Send(Side::kServer, PlainBackendSynAck(*c, backend_mss)), Verdict::kConsumed);
  return syn;
}

class BackendLearningTest : public FamilyTest {
 protected:
  uint16_t FlagsMss() const { return v6() ? 1440 : 1460; }
};

MOAT_FAMILIES(BackendLearningTest);

TEST_P(BackendLearningTest, LaterClientsAreOfferedOnlyWhatTheBackendAgreedTo) {
  Harness h(LearningConfig());
  // First client: moat knows nothing yet and offers what the flags allow.
  Conn first = Client(v6(), 40001);
  const Seen synack1 = DoSyn(h, &first);
  EXPECT_TRUE(synack1.opts.has_timestamps);
  EXPECT_TRUE(synack1.opts.sack_permitted);
  EXPECT_EQ(synack1.flags() & kTcpEce, kTcpEce);
  EXPECT_EQ(synack1.opts.mss, FlagsMss());
  const Seen bsyn1 = Connect(h, &first);
  EXPECT_TRUE(bsyn1.opts.has_timestamps);  // moat asked the backend
  EXPECT_EQ(h.Count(Counter::k_backend_learned), 1u);
  EXPECT_EQ(h.Count(Counter::k_synack_narrowed), 0u);
  ASSERT_EQ(h.engine().backends().size(), 1u);

  // Second client of the same backend: no timestamps, no SACK, no ECN,
  // the backend's MSS.
  h.ClearEmitted();
  Conn second = Client(v6(), 40002);
  const Seen synack2 = DoSyn(h, &second);
  EXPECT_FALSE(synack2.opts.has_timestamps);
  EXPECT_FALSE(synack2.opts.sack_permitted);
  EXPECT_EQ(synack2.flags() & (kTcpEce | kTcpCwr), 0);
  EXPECT_EQ(synack2.opts.mss, 1360);
  EXPECT_EQ(h.Count(Counter::k_synack_narrowed), 1u);
  // The client, told no timestamps, sends none; the backend SYN asks for
  // nothing the backend refused, and keeps the client's own MSS (as the
  // cookie carries it): the first client's had 12 bytes kept for a TSopt
  // moat would have had to insert, this one has no timestamps.
  second.ts = false;
  const Seen bsyn2 = DriveToSynSent(h, &second);
  EXPECT_FALSE(bsyn2.opts.has_timestamps);
  EXPECT_FALSE(bsyn2.opts.sack_permitted);
  EXPECT_EQ(bsyn2.flags() & (kTcpEce | kTcpCwr), 0);
  EXPECT_EQ(bsyn2.opts.mss, bsyn1.opts.mss + 12);
  // The same answer again teaches nothing new.
  ASSERT_EQ(h.Send(Side::kServer, PlainBackendSynAck(second)), Verdict::kConsumed);
  EXPECT_EQ(h.Count(Counter::k_backend_learned), 1u);
}

TEST_P(BackendLearningTest, OtherBackendsAreNotAffected) {
  Harness h(LearningConfig());
  Conn first = Client(v6(), 40001);
  Connect(h, &first);
  // The other family's service is another backend.
  h.ClearEmitted();
  Conn other = Client(!v6(), 40002);
  const Seen synack = DoSyn(h, &other);
  EXPECT_TRUE(synack.opts.has_timestamps);
  EXPECT_TRUE(synack.opts.sack_permitted);
  EXPECT_EQ(synack.opts.mss, v6() ? 1460 : 1440);
  EXPECT_EQ(h.Count(Counter::k_synack_narrowed), 0u);
}

TEST_P(BackendLearningTest, AChangedAnswerUpdatesTheRecordAndRecordsAgeOut) {
  Harness h(LearningConfig());
  Conn first = Client(v6(), 40001);
  Connect(h, &first, /*backend_mss=*/1360);
  // The backend's MSS grows (its route changed): the next answer says so.
  Conn second = Client(v6(), 40002);
  second.ts = false;  // as the narrowed SYN-ACK told it
  Connect(h, &second, /*backend_mss=*/1400);
  EXPECT_EQ(h.Count(Counter::k_backend_learned), 2u);
  h.ClearEmitted();
  Conn third = Client(v6(), 40003);
  EXPECT_EQ(DoSyn(h, &third).opts.mss, 1400);
  // moat no longer asks for timestamps, so only age tells it the backend
  // may have turned them on: after the TTL the flags apply again.
  h.Advance(BackendTable::kTtlNs);
  Conn fourth = Client(v6(), 40004);
  const Seen synack = DoSyn(h, &fourth);
  EXPECT_TRUE(synack.opts.has_timestamps);
  EXPECT_EQ(synack.opts.mss, FlagsMss());
}

TEST_P(BackendLearningTest, ABackendThatAgreesToEverythingChangesNothing) {
  Harness h(LearningConfig());
  Conn first = Client(v6(), 40001);
  first.ecn = false;  // moat does not ask, so learns nothing about ECN
  first.backend_mss = 1460;
  DriveToEstablished(h, &first);
  EXPECT_EQ(h.Count(Counter::k_backend_learned), 1u);
  h.ClearEmitted();
  Conn second = Client(v6(), 40002);
  const Seen synack = DoSyn(h, &second);
  EXPECT_TRUE(synack.opts.has_timestamps);
  EXPECT_TRUE(synack.opts.sack_permitted);
  EXPECT_EQ(synack.opts.mss, FlagsMss());
  EXPECT_EQ(h.Count(Counter::k_synack_narrowed), 0u);
}

TEST_P(BackendLearningTest, OffByFlag) {
  EngineConfig c = LearningConfig();
  c.learn_backends = false;
  Harness h(c);
  Conn first = Client(v6(), 40001);
  Connect(h, &first);
  h.ClearEmitted();
  Conn second = Client(v6(), 40002);
  const Seen synack = DoSyn(h, &second);
  EXPECT_TRUE(synack.opts.has_timestamps);
  EXPECT_EQ(synack.opts.mss, FlagsMss());
  EXPECT_EQ(h.Count(Counter::k_backend_learned), 0u);
  EXPECT_EQ(h.engine().backends().size(), 0u);
}

TEST(BackendTableTest, BoundedWithOldestFirstEviction) {
  BackendTable t;
  uint8_t addr[4] = {198, 18, 1, 0};
  // Far more backends than entries: the table never grows past capacity.
  for (uint32_t i = 0; i < 4 * BackendTable::capacity(); ++i) {
    addr[3] = static_cast<uint8_t>(i);
    t.Learn(4, addr, static_cast<uint16_t>(1000 + i / 256), BackendInfo::kTs, 0, 1400, i + 1);
  }
  EXPECT_LE(t.size(), BackendTable::capacity());
  // The most recent one is there; the first one was evicted.
  addr[3] = static_cast<uint8_t>(4 * BackendTable::capacity() - 1);
  const uint64_t now = 4 * BackendTable::capacity();
  const BackendInfo* b =
      t.Find(4, addr, static_cast<uint16_t>(1000 + (4 * BackendTable::capacity() - 1) / 256), now);
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(b->Allows(BackendInfo::kTs));
  EXPECT_TRUE(b->Allows(BackendInfo::kSack));  // never asked
  addr[3] = 0;
  EXPECT_EQ(t.Find(4, addr, 1000, now), nullptr);
}

}  // namespace
}  // namespace moat::proxy::testing
