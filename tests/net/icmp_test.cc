// ICMP errors quoting TCP (ParseIcmpTcpQuote, RewriteIcmpQuotedSeq) and
// the IP that may hide a TCP segment (MayHideTcp), against scapy-made
// frames (icmp_vectors.h, from make_icmp_vectors.py): each error type of
// both families is read back right and everything else is refused; a
// rewritten quote equals scapy's frame with that seq, byte for byte,
// including the one's-complement corners; and MayHideTcp's answer for
// fragments, AH, IPv6 extension headers and what cannot hide TCP. Hand-built
// cases add every cut of an accepted quote, byte mutations, a -0 checksum
// and sweeps over every IP protocol number.
#include "moat/net/icmp.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "icmp_vectors.h"
#include "moat/net/bytes.h"
#include "moat/net/checksum.h"
#include "moat/net/packet.h"
#include "testing/packet_builder.h"

namespace moat::net {
namespace {

using moat::testing::IcmpQuoteVectors;
using moat::testing::IcmpRewriteVectors;
using moat::testing::MayHideTcpVectors;
using moat::testing::Parse;
using moat::testing::TcpPacket;

constexpr uint8_t kIpProtoAh = 51;

// Whether the ICMP message's checksum is right: ICMPv4 over the message
// only (RFC 792), ICMPv6 over a pseudo-header too (RFC 4443 §2.3, RFC 8200
// §8.1). A one's-complement sum over a valid message, checksum included,
// is 0xFFFF, whichever of its two zeros the checksum field holds.
bool IcmpChecksumOk(const PacketView& v) {
  const uint16_t n = static_cast<uint16_t>(v.l3_end - v.l4_offset);
  uint32_t sum = 0;
  if (v.ipv6()) {
    sum = ChecksumAccumulate(v.src_addr(), 32) + n + kIpProtoIcmpv6;
  }
  return ChecksumFinish(ChecksumAccumulate(v.frame + v.l4_offset, n, sum)) == 0;
}

uint16_t IcmpChecksumField(const PacketView& v) { return LoadBe16(v.frame + v.l4_offset + 2); }

// The first `len` bytes of `frame`, in a buffer of exactly that size, so
// that a read past the frame is a heap overflow ASan reports. (The vectors'
// frame() copies are exact-size too.)
std::vector<uint8_t> Cut(const std::vector<uint8_t>& frame, size_t len) {
  return std::vector<uint8_t>(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(len));
}

TEST(IcmpTcpQuote, ScapyVectors) {
  int accepted = 0, refused = 0;
  for (const auto& t : IcmpQuoteVectors()) {
    SCOPED_TRACE(t.name);
    std::vector<uint8_t> f = t.frame();
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    IcmpTcpQuote q;
    ASSERT_EQ(ParseIcmpTcpQuote(v, &q), t.ok);
    if (!t.ok) {
      ++refused;
      continue;
    }
    ++accepted;
    EXPECT_EQ(q.type, t.type);
    EXPECT_EQ(q.addr_len, t.addr_len);
    EXPECT_EQ(q.addr_len, v.addr_len());
    EXPECT_EQ(std::memcmp(q.src_addr, t.src_addr, t.addr_len), 0);
    EXPECT_EQ(std::memcmp(q.dst_addr, t.dst_addr, t.addr_len), 0);
    // Pointers into the frame, not copies.
    EXPECT_GE(q.src_addr, f.data());
    EXPECT_LE(q.dst_addr + q.addr_len, f.data() + v.l3_end);
    EXPECT_EQ(q.src_port, t.src_port);
    EXPECT_EQ(q.dst_port, t.dst_port);
    EXPECT_EQ(q.seq_offset, t.seq_offset);
    EXPECT_LE(q.seq_offset + 4u, v.l3_end);
    EXPECT_EQ(LoadBe32(f.data() + q.seq_offset), t.seq);
    // The error is addressed to the quoted segment's source.
    EXPECT_EQ(std::memcmp(v.dst_addr(), q.src_addr, q.addr_len), 0);
    EXPECT_TRUE(IcmpChecksumOk(v)) << "scapy's checksum";
    // An ICMP error is not something MayHideTcp should drop.
    EXPECT_FALSE(MayHideTcp(v));
  }
  // Not a silently empty table.
  EXPECT_GE(accepted, 17);
  EXPECT_GE(refused, 28);
}

// Every length of an accepted message, from the full quote down to nothing
// after the ICMP header, with the IP length and the frame cut to match:
// accepted exactly while the quoted seq is inside the datagram (RFC 792's
// "first 64 bits of the original datagram's data"), never read past it.
TEST(IcmpTcpQuote, EveryCutOfAnAcceptedQuote) {
  for (const auto& t : IcmpQuoteVectors()) {
    if (!t.ok) continue;
    SCOPED_TRACE(t.name);
    std::vector<uint8_t> full = t.frame();
    PacketView fv;
    ASSERT_EQ(Parse(full, &fv), ParseError::kOk);
    for (uint16_t end = fv.l3_end; end >= fv.l4_offset; --end) {
      SCOPED_TRACE(end);
      std::vector<uint8_t> f = Cut(full, end);
      uint8_t* ip = f.data() + fv.l3_offset;
      if (fv.ipv6()) {
        StoreBe16(ip + 4, static_cast<uint16_t>(end - fv.l3_offset - kIpv6HeaderLen));
      } else {
        StoreBe16(ip + 2, static_cast<uint16_t>(end - fv.l3_offset));
      }
      PacketView v;
      ASSERT_EQ(Parse(f, &v), ParseError::kOk);
      ASSERT_EQ(v.l3_end, end);
      IcmpTcpQuote q;
      EXPECT_EQ(ParseIcmpTcpQuote(v, &q), end >= t.seq_offset + 4);
    }
  }
}

// Any value in any byte of the ICMP header and the quoted headers: no read
// outside the datagram, and whatever is accepted has its seq inside it.
TEST(IcmpTcpQuote, ByteMutationsStayInside) {
  for (const auto& t : IcmpQuoteVectors()) {
    if (!t.ok) continue;
    SCOPED_TRACE(t.name);
    std::vector<uint8_t> f = t.frame();
    PacketView v0;
    ASSERT_EQ(Parse(f, &v0), ParseError::kOk);
    for (uint16_t at = v0.l4_offset; at < t.seq_offset + 4; ++at) {
      const uint8_t saved = f[at];
      for (int b = 0; b < 256; ++b) {
        f[at] = static_cast<uint8_t>(b);
        PacketView v;
        ASSERT_EQ(Parse(f, &v), ParseError::kOk);
        IcmpTcpQuote q;
        if (ParseIcmpTcpQuote(v, &q)) {
          EXPECT_LE(q.seq_offset + 4u, v.l3_end) << at << "=" << b;
        }
      }
      f[at] = saved;
    }
  }
}

TEST(IcmpTcpQuote, RefusesWhatIsNotIcmp) {
  for (const auto& t : MayHideTcpVectors()) {
    SCOPED_TRACE(t.name);
    std::vector<uint8_t> f = t.frame();
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    IcmpTcpQuote q;
    EXPECT_FALSE(ParseIcmpTcpQuote(v, &q));
  }
  // Not IP at all.
  std::vector<uint8_t> arp(60, 0);
  StoreBe16(&arp[12], kEtherTypeArp);
  PacketView v;
  ASSERT_EQ(Parse(arp, &v), ParseError::kOk);
  IcmpTcpQuote q;
  EXPECT_FALSE(ParseIcmpTcpQuote(v, &q));
  EXPECT_FALSE(MayHideTcp(v));
}

TEST(RewriteIcmpQuotedSeq, MatchesScapyByteForByte) {
  int zero_after = 0, zero_before = 0;
  std::set<size_t> lengths;
  for (const auto& t : IcmpRewriteVectors()) {
    SCOPED_TRACE(t.name);
    const std::vector<uint8_t> after = t.after();
    ASSERT_EQ(t.before_len, t.after_len);
    std::vector<uint8_t> f = t.before();
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    ASSERT_TRUE(IcmpChecksumOk(v));
    if (IcmpChecksumField(v) == 0) ++zero_before;
    IcmpTcpQuote q;
    ASSERT_TRUE(ParseIcmpTcpQuote(v, &q));
    RewriteIcmpQuotedSeq(v, q, t.new_seq);
    EXPECT_EQ(LoadBe32(f.data() + q.seq_offset), t.new_seq);
    EXPECT_TRUE(IcmpChecksumOk(v));
    if (IcmpChecksumField(v) == 0) ++zero_after;
    EXPECT_EQ(IcmpChecksumField(v), LoadBe16(after.data() + v.l4_offset + 2));
    EXPECT_EQ(f, after);
    lengths.insert(f.size());
  }
  // The corners are really in the table: ICMP checksums of 0x0000 before
  // and after a rewrite, on every base frame.
  EXPECT_GE(zero_before, 6);
  EXPECT_GE(zero_after, 6);
  EXPECT_GE(lengths.size(), 6u);
}

// Rewriting to a value and back restores the frame exactly (RFC 1624 eqn. 3
// never turns 0x0000 into 0xFFFF), and every step verifies in full.
TEST(RewriteIcmpQuotedSeq, RandomSeqsRoundTrip) {
  std::mt19937 rng(1624);
  for (const auto& t : IcmpQuoteVectors()) {
    if (!t.ok) continue;
    SCOPED_TRACE(t.name);
    std::vector<uint8_t> f = t.frame();
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    IcmpTcpQuote q;
    ASSERT_TRUE(ParseIcmpTcpQuote(v, &q));
    for (int i = 0; i < 200; ++i) {
      const uint32_t seq = static_cast<uint32_t>(rng());
      RewriteIcmpQuotedSeq(v, q, seq);
      ASSERT_EQ(LoadBe32(f.data() + q.seq_offset), seq);
      ASSERT_TRUE(IcmpChecksumOk(v)) << seq;
    }
    RewriteIcmpQuotedSeq(v, q, t.seq);
    EXPECT_EQ(f, t.frame());
  }
}

// A sender may store 0xFFFF where a full computation gives 0x0000 (the
// other zero, RFC 1624 §3). The update must start from it and still give a
// checksum that verifies, with the seq and nothing else changed.
TEST(RewriteIcmpQuotedSeq, FromNegativeZeroChecksum) {
  int seen = 0;
  for (const auto& t : IcmpRewriteVectors()) {
    std::vector<uint8_t> f = t.before();
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    if (IcmpChecksumField(v) != 0) continue;
    SCOPED_TRACE(t.name);
    ++seen;
    StoreBe16(f.data() + v.l4_offset + 2, 0xffff);
    ASSERT_TRUE(IcmpChecksumOk(v));
    IcmpTcpQuote q;
    ASSERT_TRUE(ParseIcmpTcpQuote(v, &q));
    for (uint32_t seq : {t.new_seq, 0u, 0xffffffffu, 0x0000ffffu, 0xffff0000u}) {
      RewriteIcmpQuotedSeq(v, q, seq);
      EXPECT_TRUE(IcmpChecksumOk(v)) << seq;
      EXPECT_EQ(LoadBe32(f.data() + q.seq_offset), seq);
    }
    // Apart from the seq and the checksum, the frame is scapy's.
    RewriteIcmpQuotedSeq(v, q, t.new_seq);
    std::vector<uint8_t> expect = t.after();
    StoreBe16(expect.data() + v.l4_offset + 2, IcmpChecksumField(v));
    EXPECT_EQ(f, expect);
  }
  EXPECT_GE(seen, 6);
}

TEST(MayHideTcp, ScapyVectors) {
  int hides = 0, not_hides = 0;
  for (const auto& t : MayHideTcpVectors()) {
    SCOPED_TRACE(t.name);
    std::vector<uint8_t> f = t.frame();
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_EQ(v.l3, t.l3);
    EXPECT_EQ(v.l4_proto, t.l4_proto);
    EXPECT_EQ(v.is_fragment, t.is_fragment);
    EXPECT_EQ(v.is_tcp, t.is_tcp);
    EXPECT_EQ(MayHideTcp(v), t.may_hide_tcp);
    (t.may_hide_tcp ? hides : not_hides)++;
  }
  EXPECT_GE(hides, 25);
  EXPECT_GE(not_hides, 18);
}

// Every IPv4 protocol number behind an otherwise valid TCP frame, whole and
// as a first fragment: only TCP and AH may hide TCP. IPv6's extension
// header numbers mean nothing in IPv4.
TEST(MayHideTcp, EveryIpv4Protocol) {
  const std::vector<uint8_t> base = TcpPacket().Flags(kTcpSyn).Build();
  for (bool fragment : {false, true}) {
    for (int p = 0; p < 256; ++p) {
      SCOPED_TRACE(p);
      std::vector<uint8_t> f = base;
      f[kEthernetHeaderLen + 9] = static_cast<uint8_t>(p);
      if (fragment) StoreBe16(&f[kEthernetHeaderLen + 6], 0x2000);  // MF
      PacketView v;
      ASSERT_EQ(Parse(f, &v), ParseError::kOk);
      EXPECT_EQ(v.l4_proto, p);
      EXPECT_EQ(v.is_fragment, fragment);
      EXPECT_EQ(MayHideTcp(v), p == kIpProtoTcp || p == kIpProtoAh);
    }
  }
}

// Every IPv6 next header the parser does not walk itself: TCP, AH and the
// extension headers of IANA's list that it does not skip (RFC 8200 §4:
// mobility 135, HIP 139, shim6 140, experiments 253 and 254) may hide TCP;
// ESP 50 and everything else may not. Hop-by-hop, routing, fragment and
// destination options are walked (their scapy vectors above).
TEST(MayHideTcp, EveryIpv6NextHeader) {
  const std::vector<uint8_t> base = TcpPacket().V6("2001:2::1", "2001:2::2").Flags(kTcpSyn).Build();
  const std::set<int> hides = {kIpProtoTcp, kIpProtoAh, 135, 139, 140, 253, 254};
  for (int nh = 0; nh < 256; ++nh) {
    if (nh == 0 || nh == 43 || nh == 44 || nh == 60) continue;
    SCOPED_TRACE(nh);
    std::vector<uint8_t> f = base;
    f[kEthernetHeaderLen + 6] = static_cast<uint8_t>(nh);
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_EQ(v.l4_proto, nh);
    EXPECT_EQ(MayHideTcp(v), hides.count(nh) == 1);
  }
}

}  // namespace
}  // namespace moat::net
