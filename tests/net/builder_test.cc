// BuildTcpFrame: output parses back with the fields it was given and valid
// checksums, matches scapy byte for byte for the same headers, refuses what
// does not fit without writing past `cap`, and handles VLAN tags, IPv6 and
// payloads that alias the output buffer.
#include "moat/net/builder.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/bytes.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "scapy_vectors.h"
#include "testing/packet_builder.h"

namespace moat::net {
namespace {

using moat::testing::ScapyVector;
using moat::testing::ScapyVectors;
using moat::testing::TcpPacket;

const uint8_t kA4[4] = {198, 18, 0, 1};
const uint8_t kB4[4] = {198, 18, 0, 2};
const uint8_t kA6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const uint8_t kB6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

// The spec that reproduces a scapy vector (IPv4 with DF or not, no IP
// options), taken from the vector's own bytes.
TcpFrameSpec SpecFromVector(const ScapyVector& sv) {
  const uint8_t* f = sv.frame.data();
  const uint8_t* ip = f + sv.l3_offset;
  const uint8_t* tcp = f + sv.l4_offset;
  TcpFrameSpec s;
  std::memcpy(s.dst_mac.b, f, 6);
  std::memcpy(s.src_mac.b, f + 6, 6);
  s.vlan_count = static_cast<uint8_t>(sv.vlans);
  for (int i = 0; i < sv.vlans; ++i) {
    s.vlan_tpid[i] = LoadBe16(f + 12 + 4 * i);
    s.vlan_tci[i] = sv.vlan_tci[i];
  }
  s.ipv6 = sv.l3 == L3::kIpv6;
  if (s.ipv6) {
    s.src_addr = ip + 8;
    s.dst_addr = ip + 24;
    s.ttl = ip[7];
    s.tos_tclass = static_cast<uint8_t>(LoadBe16(ip) >> 4);
  } else {
    s.src_addr = ip + 12;
    s.dst_addr = ip + 16;
    s.ttl = ip[8];
    s.tos_tclass = ip[1];
    s.ip_id = LoadBe16(ip + 4);
  }
  s.src_port = sv.sport;
  s.dst_port = sv.dport;
  s.seq = sv.seq;
  s.ack = sv.ack;
  s.flags = sv.flags;
  s.window = sv.window;
  s.options = tcp + 20;
  s.options_len = static_cast<uint8_t>(sv.tcp_header_len - 20);
  s.payload = tcp + sv.tcp_header_len;
  s.payload_len = sv.payload_len;
  return s;
}

TEST(BuildTcpFrame, MatchesScapyByteForByte) {
  // Vectors without IP options or extension headers, whose IPv4 header
  // has DF set the way BuildTcpFrame always does. The others differ only in
  // what the builder never writes, so compare them from L4 on.
  int exact = 0, tcp_only = 0;
  for (const auto& sv : ScapyVectors()) {
    if (!sv.is_tcp) continue;
    SCOPED_TRACE(sv.name);
    const TcpFrameSpec s = SpecFromVector(sv);
    std::vector<uint8_t> out(2048);
    out.resize(BuildTcpFrame(out.data(), out.size(), s));
    ASSERT_FALSE(out.empty());
    const std::vector<uint8_t> datagram(sv.frame.begin(), sv.frame.begin() + sv.l3_end);
    const uint8_t* ip = sv.frame.data() + sv.l3_offset;
    const bool plain_v4 = sv.l3 == L3::kIpv4 && (ip[0] & 0xf) == 5 && LoadBe16(ip + 6) == 0x4000;
    const bool plain_v6 = sv.l3 == L3::kIpv6 && sv.l4_offset == sv.l3_offset + 40 &&
                          (LoadBe32(ip) & 0xfffff) == 0;  // no flow label
    if (plain_v4 || plain_v6) {
      EXPECT_EQ(out, datagram);
      ++exact;
    } else {
      // Same TCP segment, checksum included (the pseudo-header is the same).
      PacketView v;
      ASSERT_EQ(moat::testing::Parse(out, &v), ParseError::kOk);
      const std::vector<uint8_t> want(sv.frame.begin() + sv.l4_offset,
                                      sv.frame.begin() + sv.l3_end);
      EXPECT_EQ(std::vector<uint8_t>(v.tcp(), v.tcp() + v.tcp_len()), want);
      ++tcp_only;
    }
  }
  EXPECT_GE(exact, 3);
  EXPECT_GE(tcp_only, 5);
}

TEST(BuildTcpFrame, ParsesBackWithEveryField) {
  std::mt19937 rng(1191);
  for (int trial = 0; trial < 2000; ++trial) {
    SCOPED_TRACE(trial);
    TcpFrameSpec s;
    for (auto& b : s.src_mac.b) b = static_cast<uint8_t>(rng());
    for (auto& b : s.dst_mac.b) b = static_cast<uint8_t>(rng());
    s.vlan_count = static_cast<uint8_t>(rng() % 3);
    for (int i = 0; i < 2; ++i) {
      s.vlan_tci[i] = static_cast<uint16_t>(rng());
      s.vlan_tpid[i] = rng() % 2 ? kEtherTypeVlan : kEtherTypeQinQ;
    }
    s.ipv6 = rng() % 2;
    uint8_t src[16], dst[16];
    for (auto& b : src) b = static_cast<uint8_t>(rng());
    for (auto& b : dst) b = static_cast<uint8_t>(rng());
    s.src_addr = src;
    s.dst_addr = dst;
    s.ttl = static_cast<uint8_t>(rng());
    s.tos_tclass = static_cast<uint8_t>(rng());
    s.ip_id = static_cast<uint16_t>(rng());
    s.src_port = static_cast<uint16_t>(rng());
    s.dst_port = static_cast<uint16_t>(rng());
    s.seq = static_cast<uint32_t>(rng());
    s.ack = static_cast<uint32_t>(rng());
    s.flags = static_cast<uint8_t>(rng());
    s.window = static_cast<uint16_t>(rng());
    uint8_t opts[40];
    TcpOptionWriter w(opts, sizeof(opts));
    if (rng() % 2) w.Mss(static_cast<uint16_t>(rng()));
    if (rng() % 2) w.SackPermitted();
    if (rng() % 2) w.Timestamps(static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()));
    if (rng() % 2) w.Nop().WindowScale(static_cast<uint8_t>(rng() % 15));
    s.options_len = static_cast<uint8_t>(w.Finish());
    s.options = s.options_len ? opts : nullptr;
    std::vector<uint8_t> payload(rng() % 1500);
    for (auto& b : payload) b = static_cast<uint8_t>(rng());
    s.payload = payload.empty() ? nullptr : payload.data();
    s.payload_len = static_cast<uint16_t>(payload.size());

    const size_t want_len =
        14 + 4 * s.vlan_count + (s.ipv6 ? 40 : 20) + 20 + s.options_len + payload.size();
    std::vector<uint8_t> f(want_len);  // exactly enough
    ASSERT_EQ(BuildTcpFrame(f.data(), f.size(), s), want_len);

    PacketView v;
    ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
    ASSERT_TRUE(v.is_tcp);
    EXPECT_EQ(std::memcmp(v.src_mac(), s.src_mac.b, 6), 0);
    EXPECT_EQ(std::memcmp(v.dst_mac(), s.dst_mac.b, 6), 0);
    ASSERT_EQ(v.vlan_count, s.vlan_count);
    for (int i = 0; i < s.vlan_count; ++i) {
      EXPECT_EQ(v.vlan_tci[i], s.vlan_tci[i]);
      EXPECT_EQ(v.vlan_tpid[i], s.vlan_tpid[i]);
    }
    EXPECT_EQ(v.l3, s.ipv6 ? L3::kIpv6 : L3::kIpv4);
    EXPECT_EQ(v.l3_end, f.size());
    EXPECT_EQ(std::memcmp(v.src_addr(), src, v.addr_len()), 0);
    EXPECT_EQ(std::memcmp(v.dst_addr(), dst, v.addr_len()), 0);
    if (s.ipv6) {
      EXPECT_EQ(v.ip()[0] >> 4, 6);
      EXPECT_EQ(static_cast<uint8_t>(LoadBe16(v.ip()) >> 4), s.tos_tclass);
      EXPECT_EQ(LoadBe32(v.ip()) & 0xfffff, 0u) << "flow label";
      EXPECT_EQ(v.ip()[7], s.ttl);
    } else {
      EXPECT_EQ(v.ip()[0], 0x45);
      EXPECT_EQ(v.ip()[1], s.tos_tclass);
      EXPECT_EQ(LoadBe16(v.ip() + 4), s.ip_id);
      EXPECT_EQ(LoadBe16(v.ip() + 6), 0x4000) << "DF, not a fragment";
      EXPECT_EQ(v.ip()[8], s.ttl);
      EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
    }
    EXPECT_FALSE(v.is_fragment);
    EXPECT_EQ(v.src_port(), s.src_port);
    EXPECT_EQ(v.dst_port(), s.dst_port);
    EXPECT_EQ(v.seq().value(), s.seq);
    EXPECT_EQ(v.ack().value(), s.ack);
    EXPECT_EQ(v.tcp_flags(), s.flags);
    EXPECT_EQ(v.window(), s.window);
    EXPECT_EQ(v.tcp()[12] & 0x0f, 0) << "reserved bits";
    EXPECT_EQ(LoadBe16(v.tcp() + 18), 0) << "urgent pointer";
    EXPECT_EQ(v.tcp_header_len, 20 + s.options_len);
    if (s.options_len) {
      EXPECT_EQ(std::memcmp(v.tcp() + 20, opts, s.options_len), 0);
    }
    ASSERT_EQ(v.payload_len, payload.size());
    if (!payload.empty()) {
      EXPECT_EQ(std::memcmp(v.payload(), payload.data(), payload.size()), 0);
    }
    EXPECT_TRUE(VerifyTcpChecksum(v));
    if (::testing::Test::HasFailure()) break;
  }
}

TcpFrameSpec SmallSpec(bool v6, const uint8_t* payload, uint16_t payload_len) {
  TcpFrameSpec s;
  s.ipv6 = v6;
  s.src_addr = v6 ? kA6 : kA4;
  s.dst_addr = v6 ? kB6 : kB4;
  s.src_port = 40000;
  s.dst_port = 80;
  s.seq = 1;
  s.flags = kTcpSyn;
  s.window = 65535;
  s.payload = payload;
  s.payload_len = payload_len;
  return s;
}

TEST(BuildTcpFrame, CapTooSmallReturnsZeroAndWritesNothing) {
  static const uint8_t kOpts[8] = {2, 4, 5, 0xb4, 1, 3, 3, 7};
  const uint8_t payload[7] = {'p', 'a', 'y', 'l', 'o', 'a', 'd'};
  for (bool v6 : {false, true}) {
    for (int vlans = 0; vlans <= 2; ++vlans) {
      SCOPED_TRACE(::testing::Message() << "v6 " << v6 << " vlans " << vlans);
      TcpFrameSpec s = SmallSpec(v6, payload, sizeof(payload));
      s.vlan_count = static_cast<uint8_t>(vlans);
      s.options = kOpts;
      s.options_len = sizeof(kOpts);
      const size_t need = 14 + 4 * vlans + (v6 ? 40 : 20) + 20 + 8 + 7;
      std::vector<uint8_t> exact(need);
      ASSERT_EQ(BuildTcpFrame(exact.data(), exact.size(), s), need);
      for (size_t cap = 0; cap < need; ++cap) {
        std::vector<uint8_t> buf(need + 16, 0xa5);
        ASSERT_EQ(BuildTcpFrame(buf.data(), cap, s), 0u) << cap;
        for (uint8_t b : buf) ASSERT_EQ(b, 0xa5) << "cap " << cap << ": wrote on failure";
      }
    }
  }
}

TEST(BuildTcpFrame, InvalidSpecsReturnZero) {
  std::vector<uint8_t> buf(512);
  TcpFrameSpec s = SmallSpec(false, nullptr, 0);
  const uint8_t opts[44] = {};
  s.options = opts;
  for (uint8_t bad : {uint8_t{1}, uint8_t{3}, uint8_t{6}, uint8_t{39}, uint8_t{44}}) {
    s.options_len = bad;
    EXPECT_EQ(BuildTcpFrame(buf.data(), buf.size(), s), 0u) << int{bad};
  }
  s.options_len = 40;
  EXPECT_EQ(BuildTcpFrame(buf.data(), buf.size(), s), 14u + 20 + 60) << "40 is the maximum";
  s.options_len = 0;
  s.vlan_count = 3;
  EXPECT_EQ(BuildTcpFrame(buf.data(), buf.size(), s), 0u) << "more than two tags";
}

TEST(BuildTcpFrame, LargestDatagram) {
  // An IPv4 total length is 16 bits: 65535 - 40 bytes of payload fit,
  // one more does not.
  std::vector<uint8_t> payload(65535 - 40, 'x');
  std::vector<uint8_t> buf(14 + 65536);
  TcpFrameSpec s = SmallSpec(false, payload.data(), static_cast<uint16_t>(payload.size()));
  ASSERT_EQ(BuildTcpFrame(buf.data(), buf.size(), s), 14u + 65535);
  PacketView v;
  ASSERT_EQ(ParseFrame(buf.data(), static_cast<uint16_t>(14 + 65535 - 14), &v),
            ParseError::kIpv4TotalLengthTooLong)
      << "a frame_len is 16 bits too; the parser sees it cut short";
  payload.push_back('y');
  s.payload = payload.data();
  s.payload_len = static_cast<uint16_t>(payload.size());
  EXPECT_EQ(BuildTcpFrame(buf.data(), buf.size(), s), 0u);
  // IPv6: the payload length excludes the 40-byte header.
  s.ipv6 = true;
  s.src_addr = kA6;
  s.dst_addr = kB6;
  payload.resize(65535 - 60);
  s.payload_len = static_cast<uint16_t>(payload.size());
  EXPECT_EQ(BuildTcpFrame(buf.data(), buf.size(), s), 14u + 40 + 20 + payload.size());
}

TEST(BuildTcpFrame, VlanTagsAndTpids) {
  const uint8_t payload[5] = {'h', 'e', 'l', 'l', 'o'};
  TcpFrameSpec s = SmallSpec(false, payload, 5);
  s.vlan_count = 2;
  s.vlan_tpid[0] = kEtherTypeQinQ;
  s.vlan_tci[0] = 0xe00a;  // PCP 7, VID 10
  s.vlan_tci[1] = 20;
  std::vector<uint8_t> out(256);
  const size_t n = BuildTcpFrame(out.data(), out.size(), s);
  ASSERT_EQ(n, 14u + 8 + 20 + 20 + 5);
  out.resize(n);
  EXPECT_EQ(LoadBe16(&out[12]), kEtherTypeQinQ);
  EXPECT_EQ(LoadBe16(&out[14]), 0xe00a);
  EXPECT_EQ(LoadBe16(&out[16]), kEtherTypeVlan);
  EXPECT_EQ(LoadBe16(&out[18]), 20);
  EXPECT_EQ(LoadBe16(&out[20]), kEtherTypeIpv4);
  PacketView v;
  ASSERT_EQ(moat::testing::Parse(out, &v), ParseError::kOk);
  EXPECT_EQ(v.vlan_count, 2);
  EXPECT_EQ(v.l3_offset, 22);
  EXPECT_EQ(v.payload_len, 5);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
}

TEST(BuildTcpFrame, Ipv6WithOptionsAndOddPayload) {
  const uint8_t payload[3] = {1, 2, 3};
  TcpFrameSpec s = SmallSpec(true, payload, 3);
  uint8_t opts[40];
  TcpOptionWriter w(opts, sizeof(opts));
  w.Mss(1440).SackPermitted().Timestamps(1, 0).Nop().WindowScale(7);
  s.options_len = static_cast<uint8_t>(w.Finish());
  s.options = opts;
  s.vlan_count = 1;
  s.vlan_tci[0] = 100;
  s.tos_tclass = 0xb8;
  std::vector<uint8_t> out(256);
  out.resize(BuildTcpFrame(out.data(), out.size(), s));
  ASSERT_EQ(out.size(), 14u + 4 + 40 + 40 + 3);
  EXPECT_EQ(LoadBe32(&out[18]), 0x6b800000u) << "version 6, traffic class 0xb8, no flow label";
  EXPECT_EQ(LoadBe16(&out[18 + 4]), 43) << "payload length";
  EXPECT_EQ(out[18 + 6], kIpProtoTcp);
  PacketView v;
  ASSERT_EQ(moat::testing::Parse(out, &v), ParseError::kOk);
  EXPECT_TRUE(v.ipv6());
  EXPECT_EQ(v.payload_len, 3);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  TcpOptions o;
  ASSERT_EQ(ParseTcpOptions(v.tcp(), v.tcp_header_len, &o), ParseError::kOk);
  EXPECT_EQ(o.mss, 1440);
  EXPECT_EQ(o.wscale, 7);
}

TEST(BuildTcpFrame, PayloadMayAliasTheOutputBuffer) {
  // The engine builds a reply in the buffer that holds the data it answers:
  // the payload already sits where it will end up, or further on.
  for (bool v6 : {false, true}) {
    for (size_t extra : {size_t{0}, size_t{1}, size_t{13}, size_t{100}}) {
      SCOPED_TRACE(::testing::Message() << "v6 " << v6 << " extra " << extra);
      const size_t hdr = 14 + (v6 ? 40 : 20) + 20;
      std::vector<uint8_t> buf(hdr + extra + 64);
      // Addresses in the buffer, in the header area that gets overwritten.
      const uint8_t* a = v6 ? kA6 : kA4;
      const uint8_t* b = v6 ? kB6 : kB4;
      std::memcpy(&buf[0], a, v6 ? 16 : 4);
      std::memcpy(&buf[20], b, v6 ? 16 : 4);
      for (size_t i = 0; i < 50; ++i) buf[hdr + extra + i] = static_cast<uint8_t>(i * 3);
      TcpFrameSpec s = SmallSpec(v6, &buf[hdr + extra], 50);
      s.src_addr = &buf[0];
      s.dst_addr = &buf[20];
      const size_t n = BuildTcpFrame(buf.data(), buf.size(), s);
      ASSERT_EQ(n, hdr + 50);
      buf.resize(n);
      PacketView v;
      ASSERT_EQ(moat::testing::Parse(buf, &v), ParseError::kOk);
      EXPECT_EQ(std::memcmp(v.src_addr(), a, v.addr_len()), 0);
      EXPECT_EQ(std::memcmp(v.dst_addr(), b, v.addr_len()), 0);
      for (size_t i = 0; i < 50; ++i) ASSERT_EQ(v.payload()[i], static_cast<uint8_t>(i * 3)) << i;
      EXPECT_TRUE(VerifyTcpChecksum(v));
    }
  }
}

TEST(TestingTcpPacket, BuildsWhatItIsTold) {
  // The shared fluent builder other suites rely on.
  auto f = TcpPacket()
               .V4("10.0.0.1", "10.0.0.2")
               .Ports(40000, 80)
               .Seq(100)
               .Ack(200)
               .Flags(kTcpSyn | kTcpAck)
               .Window(29200)
               .Mss(1460)
               .WindowScale(7)
               .SackPermitted()
               .Timestamps(11, 22)
               .Payload("odd")
               .Vlan(100)
               .Ttl(9)
               .Build();
  ASSERT_FALSE(f.empty());
  PacketView v;
  ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
  EXPECT_EQ(v.vlan_count, 1);
  EXPECT_EQ(v.vlan_tci[0], 100);
  EXPECT_EQ(v.ip()[8], 9);
  EXPECT_EQ(v.src_addr()[0], 10);
  EXPECT_EQ(v.dst_addr()[3], 2);
  EXPECT_EQ(v.src_port(), 40000);
  EXPECT_EQ(v.seq().value(), 100u);
  EXPECT_EQ(v.ack().value(), 200u);
  EXPECT_EQ(v.tcp_flags(), kTcpSyn | kTcpAck);
  EXPECT_EQ(v.window(), 29200);
  EXPECT_EQ(v.payload_len, 3);
  EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
  EXPECT_TRUE(VerifyTcpChecksum(v));
  TcpOptions o;
  ASSERT_EQ(ParseTcpOptions(v.tcp(), v.tcp_header_len, &o), ParseError::kOk);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_EQ(o.tsval, 11u);
  EXPECT_EQ(o.tsecr, 22u);
  EXPECT_EQ(v.tcp_header_len, 20 + 20) << "4 + 3 + 2 + 10 = 19, NOP-padded";

  auto g = TcpPacket().V6("2001:db8::1", "2001:db8::2").SackBlocks({1, 2, 3, 4}).Build();
  ASSERT_EQ(moat::testing::Parse(g, &v), ParseError::kOk);
  EXPECT_TRUE(v.ipv6());
  EXPECT_TRUE(VerifyTcpChecksum(v));
  ASSERT_EQ(ParseTcpOptions(v.tcp(), v.tcp_header_len, &o), ParseError::kOk);
  EXPECT_EQ(o.sack_blocks, 2);

  EXPECT_EQ(TcpPacket()
                .Timestamps(1, 2)
                .Timestamps(3, 4)
                .Timestamps(5, 6)
                .Timestamps(7, 8)
                .Build()
                .size(),
            14u + 20 + 60)
      << "40 option bytes is the maximum";
  EXPECT_TRUE(TcpPacket()
                  .Timestamps(1, 2)
                  .Timestamps(3, 4)
                  .Timestamps(5, 6)
                  .Timestamps(7, 8)
                  .Nop()
                  .Build()
                  .empty())
      << "41 option bytes (44 padded) cannot be built";
  EXPECT_TRUE(TcpPacket().Vlan(1).Vlan(2).Vlan(3).Build().empty());

  // Refresh() puts checksums right after a test edits a frame.
  auto h = TcpPacket().Payload("abc").Build();
  h[14 + 8] = 1;
  h[h.size() - 1] = 'z';
  ASSERT_EQ(moat::testing::Parse(h, &v), ParseError::kOk);
  EXPECT_FALSE(VerifyIpv4HeaderChecksum(v));
  EXPECT_FALSE(VerifyTcpChecksum(v));
  ASSERT_TRUE(moat::testing::Refresh(h));
  EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
  EXPECT_TRUE(VerifyTcpChecksum(v));
}

// Options may alias the output after the headers' end (builder.h); with no
// payload their checksum contribution must come from before the copy.
TEST(Builder, OptionsAliasingTheOutputWithoutPayload) {
  uint8_t buf[256] = {};
  uint8_t* src_opts = buf + 14 + 20 + 20 + 4;  // inside where options will go
  const uint8_t opts[8] = {2, 4, 0x05, 0xb4, 1, 3, 3, 7};
  std::memcpy(src_opts, opts, sizeof(opts));
  const uint8_t a[4] = {198, 18, 0, 1}, b[4] = {198, 18, 0, 2};
  TcpFrameSpec s;
  s.src_addr = a;
  s.dst_addr = b;
  s.src_port = 1;
  s.dst_port = 2;
  s.flags = kTcpSyn;
  s.options = src_opts;
  s.options_len = sizeof(opts);
  const size_t n = BuildTcpFrame(buf, sizeof(buf), s);
  ASSERT_NE(n, 0u);
  PacketView v;
  ASSERT_EQ(ParseFrame(buf, static_cast<uint16_t>(n), &v), ParseError::kOk);
  EXPECT_EQ(std::memcmp(v.tcp() + 20, opts, sizeof(opts)), 0);
  EXPECT_TRUE(VerifyTcpChecksum(v));
}


// The reference BuildReplyInPlace must match: the reply BuildTcpFrame makes
// from the swapped headers of `v`.
std::vector<uint8_t> ReplyByBuilder(const PacketView& v, const TcpReplySpec& r) {
  TcpFrameSpec s;
  std::memcpy(s.src_mac.b, v.dst_mac(), 6);
  std::memcpy(s.dst_mac.b, v.src_mac(), 6);
  s.vlan_count = v.vlan_count;
  for (int i = 0; i < v.vlan_count; ++i) {
    s.vlan_tci[i] = v.vlan_tci[i];
    s.vlan_tpid[i] = v.vlan_tpid[i];
  }
  s.ipv6 = v.ipv6();
  s.src_addr = v.dst_addr();
  s.dst_addr = v.src_addr();
  s.src_port = v.dst_port();
  s.dst_port = v.src_port();
  s.seq = r.seq;
  s.ack = r.ack;
  s.flags = r.flags;
  s.window = r.window;
  s.options = r.options;
  s.options_len = r.options_len;
  std::vector<uint8_t> out(256);
  out.resize(BuildTcpFrame(out.data(), out.size(), s));
  return out;
}

// In place, the SYN becomes byte for byte the SYN-ACK the builder makes,
// whatever the received frame held: either family, 0-2 VLAN tags, any TTL,
// TOS, IP ID, flow label, options and payload.
TEST(BuildReplyInPlace, MatchesTheBuilderByteForByte) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 2000; ++trial) {
    moat::testing::TcpPacket p;
    if (rng() % 2) {
      p.V6("2001:2::1", "2001:2::2");
    } else {
      p.V4("198.18.0.1", "198.18.0.2");
    }
    p.Ports(static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng()))
        .Seq(rng()).Ack(rng()).Flags(static_cast<uint8_t>(rng()))
        .Window(static_cast<uint16_t>(rng())).Ttl(static_cast<uint8_t>(rng()))
        .Tos(static_cast<uint8_t>(rng())).IpId(static_cast<uint16_t>(rng()));
    for (uint32_t i = 0, n = rng() % 3; i < n; ++i) p.Vlan(static_cast<uint16_t>(rng() & 0xfff));
    if (rng() % 2) p.Mss(1460).SackPermitted().Timestamps(rng(), rng()).Nop().WindowScale(7);
    p.PayloadSize(rng() % 3 == 0 ? rng() % 100 : 0);
    std::vector<uint8_t> f = p.Build();
    ASSERT_FALSE(f.empty());
    f.resize(f.size() + 64);  // room for a reply longer than the segment
    PacketView v;
    ASSERT_EQ(ParseFrame(f.data(), static_cast<uint16_t>(f.size() - 64), &v), ParseError::kOk);
    uint8_t opts[40];
    const uint8_t opt_len = static_cast<uint8_t>(4 * (rng() % 11));
    for (uint8_t i = 0; i < opt_len; ++i) opts[i] = static_cast<uint8_t>(rng());
    TcpReplySpec r;
    r.seq = rng();
    r.ack = rng();
    r.flags = static_cast<uint8_t>(rng());
    r.window = static_cast<uint16_t>(rng());
    r.options = opts;
    r.options_len = opt_len;
    const std::vector<uint8_t> want = ReplyByBuilder(v, r);
    ASSERT_FALSE(want.empty());
    const size_t n = BuildReplyInPlace(v, f.size(), r);
    ASSERT_EQ(n, want.size()) << "trial " << trial;
    EXPECT_EQ(std::memcmp(f.data(), want.data(), n), 0) << "trial " << trial;
  }
}

// Checksums::kOffload leaves the IPv4 header checksum 0 and the
// pseudo-header sum in the TCP field; completed as a NIC does
// (TX_IP_CKSUM, TX_TCP_CKSUM), the frame is byte for byte the fully
// summed one. Both builders, IPv4 and IPv6, VLAN tags, options, payloads.
TEST(Checksums, OffloadCompletedByTheNicIsTheFullFrame) {
  std::mt19937 rng(23);
  for (int trial = 0; trial < 2000; ++trial) {
    const bool v6 = rng() % 2;
    moat::testing::TcpPacket p;
    if (v6) {
      p.V6("2001:2::1", "2001:2::2");
    } else {
      p.V4("198.18.0.1", "198.18.0.2");
    }
    p.Ports(static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng()))
        .Seq(rng()).Ack(rng()).Flags(static_cast<uint8_t>(rng()))
        .Window(static_cast<uint16_t>(rng()));
    const uint32_t vlans = rng() % 3;
    for (uint32_t i = 0; i < vlans; ++i) p.Vlan(static_cast<uint16_t>(rng() & 0xfff));
    std::vector<uint8_t> f = p.Build();
    f.resize(f.size() + 64);
    PacketView v;
    ASSERT_EQ(ParseFrame(f.data(), static_cast<uint16_t>(f.size() - 64), &v), ParseError::kOk);
    uint8_t opts[40];
    const uint8_t opt_len = static_cast<uint8_t>(4 * (rng() % 11));
    for (uint8_t i = 0; i < opt_len; ++i) opts[i] = static_cast<uint8_t>(rng());
    uint8_t payload[101];
    const uint16_t payload_len = rng() % 2 ? static_cast<uint16_t>(rng() % 101) : 0;
    for (uint16_t i = 0; i < payload_len; ++i) payload[i] = static_cast<uint8_t>(rng());
    const size_t l2 = kEthernetHeaderLen + kVlanTagLen * vlans;
    const size_t l3 = v6 ? kIpv6HeaderLen : kIpv4HeaderLen;

    // BuildTcpFrame.
    TcpFrameSpec s;
    s.vlan_count = static_cast<uint8_t>(vlans);
    for (uint32_t i = 0; i < vlans; ++i) s.vlan_tci[i] = v.vlan_tci[i];
    s.ipv6 = v6;
    s.src_addr = v.src_addr();
    s.dst_addr = v.dst_addr();
    s.ttl = static_cast<uint8_t>(rng());
    s.tos_tclass = static_cast<uint8_t>(rng());
    s.ip_id = static_cast<uint16_t>(rng());
    s.src_port = static_cast<uint16_t>(rng());
    s.dst_port = static_cast<uint16_t>(rng());
    s.seq = rng();
    s.ack = rng();
    s.flags = static_cast<uint8_t>(rng());
    s.window = static_cast<uint16_t>(rng());
    s.options = opts;
    s.options_len = opt_len;
    s.payload = payload;
    s.payload_len = payload_len;
    uint8_t full[512], off[512];
    const size_t nf = BuildTcpFrame(full, sizeof(full), s);
    const size_t no = BuildTcpFrame(off, sizeof(off), s, Checksums::kOffload);
    ASSERT_NE(nf, 0u);
    ASSERT_EQ(no, nf);
    if (!v6) {
      EXPECT_EQ(LoadBe16(off + l2 + 10), 0u) << "trial " << trial;
    }
    moat::testing::CompleteChecksumsAsNic(off, no, l2, l3, !v6);
    EXPECT_EQ(std::memcmp(full, off, nf), 0) << "BuildTcpFrame, trial " << trial;

    // BuildReplyInPlace, on two copies of the same segment.
    TcpReplySpec r;
    r.seq = rng();
    r.ack = rng();
    r.flags = static_cast<uint8_t>(rng());
    r.window = static_cast<uint16_t>(rng());
    r.options = opts;
    r.options_len = opt_len;
    std::vector<uint8_t> g = f;
    PacketView vg;
    ASSERT_EQ(ParseFrame(g.data(), static_cast<uint16_t>(g.size() - 64), &vg), ParseError::kOk);
    const size_t rf = BuildReplyInPlace(v, f.size(), r);
    const size_t ro = BuildReplyInPlace(vg, g.size(), r, Checksums::kOffload);
    ASSERT_NE(rf, 0u);
    ASSERT_EQ(ro, rf);
    moat::testing::CompleteChecksumsAsNic(g.data(), ro, l2, l3, !v6);
    EXPECT_EQ(std::memcmp(f.data(), g.data(), rf), 0) << "BuildReplyInPlace, trial " << trial;
  }
}

// Headers the reply does not carry cannot stay in place: refused (the
// engine then builds the frame whole), and the frame is left untouched.
TEST(BuildReplyInPlace, RefusesWhatItCannotDoAndTouchesNothing) {
  std::vector<uint8_t> f = moat::testing::TcpPacket().Flags(kTcpSyn).Mss(1460).Build();
  // An IPv4 header with 4 bytes of options (a NOP and an EOL padded).
  std::vector<uint8_t> opt = f;
  opt.insert(opt.begin() + 14 + 20, {1, 1, 1, 0});
  opt[14] = 0x46;
  StoreBe16(opt.data() + 14 + 2, static_cast<uint16_t>(LoadBe16(opt.data() + 16) + 4));
  PacketView v;
  ASSERT_EQ(ParseFrame(opt.data(), static_cast<uint16_t>(opt.size()), &v), ParseError::kOk);
  TcpReplySpec r;
  std::vector<uint8_t> before = opt;
  EXPECT_EQ(BuildReplyInPlace(v, opt.size() + 64, r), 0u);
  EXPECT_EQ(opt, before);
  // Too little room, and invalid option lengths.
  ASSERT_EQ(ParseFrame(f.data(), static_cast<uint16_t>(f.size()), &v), ParseError::kOk);
  const uint8_t opts[40] = {};
  r.options = opts;
  r.options_len = 40;
  before = f;
  EXPECT_EQ(BuildReplyInPlace(v, f.size(), r), 0u);
  r.options_len = 6;
  EXPECT_EQ(BuildReplyInPlace(v, 256, r), 0u);
  EXPECT_EQ(f, before);
}

}  // namespace
}  // namespace moat::net
