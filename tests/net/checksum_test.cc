// Checksums against scapy's (an independent implementation), and RFC 1624
// incremental updates against full recomputation.
#include "moat/net/checksum.h"

#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/bytes.h"
#include "moat/net/packet.h"
#include "scapy_vectors.h"
#include "testing/packet_builder.h"

namespace moat::net {
namespace {

using testing::ScapyVectors;

TEST(Checksum, MatchesScapy) {
  for (const auto& sv : ScapyVectors()) {
    SCOPED_TRACE(sv.name);
    const uint8_t* ip = sv.frame.data() + sv.l3_offset;
    const uint8_t* tcp = sv.frame.data() + sv.l4_offset;
    if (sv.ipv6) {
      const size_t tcp_len = LoadBe16(ip + 4) - (sv.l4_offset - sv.l3_offset - 40);
      EXPECT_EQ(TcpChecksumV6(ip + 8, ip + 24, tcp, tcp_len), sv.tcp_checksum);
    } else {
      const size_t ihl = (ip[0] & 0xf) * 4;
      EXPECT_EQ(Ipv4HeaderChecksum(ip, ihl), sv.ip_checksum);
      const size_t tcp_len = LoadBe16(ip + 2) - ihl;
      EXPECT_EQ(TcpChecksumV4(ip + 12, ip + 16, tcp, tcp_len), sv.tcp_checksum);
    }
  }
}

TEST(Checksum, AccumulateIsIndependentOfSplitPoints) {
  std::mt19937 rng(1);
  std::vector<uint8_t> data(301);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const uint16_t whole = ChecksumFinish(ChecksumAccumulate(data.data(), data.size()));
  // Splitting at even offsets must not change the sum (odd splits change
  // the byte lanes, which callers never do).
  for (size_t cut = 0; cut <= data.size(); cut += 2) {
    uint32_t s = ChecksumAccumulate(data.data(), cut);
    s = ChecksumAccumulate(data.data() + cut, data.size() - cut, s);
    EXPECT_EQ(ChecksumFinish(s), whole) << cut;
  }
}

TEST(Checksum, IncrementalUpdateEqualsRecompute) {
  std::mt19937 rng(1624);
  for (int trial = 0; trial < 5000; ++trial) {
    std::vector<uint8_t> data(64);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    const size_t at = (rng() % 15) * 4;
    uint16_t csum = ChecksumFinish(ChecksumAccumulate(data.data(), data.size()));
    if (trial % 2 == 0) {
      const uint16_t old = LoadBe16(&data[at]);
      const uint16_t neu = trial % 10 == 0 ? 0 : static_cast<uint16_t>(rng());
      StoreBe16(&data[at], neu);
      csum = ChecksumUpdate16(csum, old, neu);
    } else {
      const uint32_t old = LoadBe32(&data[at]);
      const uint32_t neu = trial % 11 == 1 ? 0xffffffffu : static_cast<uint32_t>(rng());
      StoreBe32(&data[at], neu);
      csum = ChecksumUpdate32(csum, old, neu);
    }
    const uint16_t full = ChecksumFinish(ChecksumAccumulate(data.data(), data.size()));
    // 0x0000 and 0xffff are the same one's-complement value (RFC 1624 §3
    // is about exactly this); everything else must match bit for bit.
    if (!((csum == 0 || csum == 0xffff) && (full == 0 || full == 0xffff))) {
      ASSERT_EQ(csum, full) << "trial " << trial;
    }
  }
}

TEST(Checksum, FieldRewritesKeepTheTcpChecksumValid) {
  std::mt19937 rng(9293);
  for (int trial = 0; trial < 2000; ++trial) {
    auto p = moat::testing::TcpPacket()
                 .Seq(static_cast<uint32_t>(rng()))
                 .Ack(static_cast<uint32_t>(rng()))
                 .Timestamps(static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()))
                 .Payload(std::string(rng() % 40, 'q'));
    if (trial % 2) p.V6("2001:2::1", "2001:2::2");
    auto f = p.Build();
    PacketView v;
    ASSERT_EQ(ParseFrame(f.data(), static_cast<uint16_t>(f.size()), &v), ParseError::kOk);
    v.SetSeq(SeqNum(static_cast<uint32_t>(rng())));
    v.SetAck(SeqNum(static_cast<uint32_t>(rng())));
    v.SetWindow(static_cast<uint16_t>(rng()));
    v.RewriteTcp32(24, static_cast<uint32_t>(rng()));  // TSval (after two NOPs)
    v.RewriteTcp32(28, static_cast<uint32_t>(rng()));  // TSecr
    ASSERT_TRUE(VerifyTcpChecksum(v)) << "trial " << trial;
  }
}

TEST(Checksum, OddOffsetRewrites) {
  // A 16-bit field at an odd offset straddles two checksum words.
  auto f = moat::testing::TcpPacket().Opt({1, 1, 1, 1, 1, 1, 1, 1}).Build();
  PacketView v;
  ASSERT_EQ(ParseFrame(f.data(), static_cast<uint16_t>(f.size()), &v), ParseError::kOk);
  v.RewriteTcp16(21, 0xbeef);
  EXPECT_EQ(LoadBe16(v.tcp() + 21), 0xbeef);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  v.RewriteTcp32(23, 0xdeadbeef);
  EXPECT_EQ(LoadBe32(v.tcp() + 23), 0xdeadbeefu);
  EXPECT_TRUE(VerifyTcpChecksum(v));
}

}  // namespace
}  // namespace moat::net
