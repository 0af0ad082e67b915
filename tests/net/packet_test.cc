// ParseFrame: fields of scapy-made frames read back right; every named
// parse error is reachable and reported for exactly its cause; no
// truncation of a valid frame is ever accepted as something it is not.
#include "moat/net/packet.h"

#include <arpa/inet.h>

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/bytes.h"
#include "scapy_vectors.h"
#include "testing/packet_builder.h"

namespace moat::net {
namespace {

using moat::testing::TcpPacket;
using testing::ScapyVectors;

ParseError Parse(std::vector<uint8_t>& f, PacketView* v) {
  return ParseFrame(f.data(), static_cast<uint16_t>(f.size()), v);
}

TEST(Packet, ScapyVectorsReadBack) {
  for (auto sv : ScapyVectors()) {
    SCOPED_TRACE(sv.name);
    PacketView v;
    ASSERT_EQ(Parse(sv.frame, &v), ParseError::kOk);
    EXPECT_EQ(v.l3, sv.ipv6 ? L3::kIpv6 : L3::kIpv4);
    EXPECT_EQ(v.vlan_count, sv.vlans);
    EXPECT_EQ(v.l3_offset, sv.l3_offset);
    ASSERT_TRUE(v.is_tcp);
    EXPECT_FALSE(v.is_fragment);
    EXPECT_EQ(v.l4_offset, sv.l4_offset);
    EXPECT_EQ(v.payload_len, sv.payload_len);
    EXPECT_EQ(v.src_port(), sv.sport);
    EXPECT_EQ(v.dst_port(), sv.dport);
    EXPECT_EQ(v.seq().value(), sv.seq);
    EXPECT_EQ(v.ack().value(), sv.ack);
    EXPECT_EQ(v.tcp_flags(), sv.flags);
    EXPECT_EQ(v.window(), sv.window);
    EXPECT_EQ(v.tcp_checksum(), sv.tcp_checksum);
    EXPECT_TRUE(VerifyTcpChecksum(v));
    if (!sv.ipv6) EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
    EXPECT_EQ(v.addr_len(), sv.ipv6 ? 16 : 4);
  }
}

TEST(Packet, EthernetPaddingIsNotPayload) {
  for (auto sv : ScapyVectors()) {
    if (std::string(sv.name) != "v4_padded") continue;
    PacketView v;
    ASSERT_EQ(Parse(sv.frame, &v), ParseError::kOk);
    EXPECT_EQ(sv.frame.size(), 60u);
    EXPECT_EQ(v.l3_end, 14 + 40);
    EXPECT_EQ(v.payload_len, 0);
    EXPECT_TRUE(VerifyTcpChecksum(v));
  }
}

TEST(Packet, NonIpAndNonTcp) {
  std::vector<uint8_t> arp(60, 0);
  arp[12] = 0x08;
  arp[13] = 0x06;
  PacketView v;
  EXPECT_EQ(Parse(arp, &v), ParseError::kOk);
  EXPECT_EQ(v.l3, L3::kOther);
  EXPECT_FALSE(v.is_tcp);

  auto udp = TcpPacket().Build();
  udp[14 + 9] = 17;  // protocol: UDP (checksums no longer matter here)
  EXPECT_EQ(Parse(udp, &v), ParseError::kOk);
  EXPECT_EQ(v.l3, L3::kIpv4);
  EXPECT_FALSE(v.is_tcp);
  EXPECT_EQ(v.l4_proto, 17);
}

TEST(Packet, FragmentsAreRecognisedNotParsed) {
  auto f = TcpPacket().Build();
  f[14 + 6] |= 0x20;  // MF
  PacketView v;
  ASSERT_EQ(Parse(f, &v), ParseError::kOk);
  EXPECT_TRUE(v.is_fragment);
  EXPECT_FALSE(v.is_tcp);
  EXPECT_EQ(v.l4_proto, 6);

  auto g = TcpPacket().Build();
  g[14 + 6] = 0x00;
  g[14 + 7] = 0x10;  // offset 16*8, DF cleared
  ASSERT_EQ(Parse(g, &v), ParseError::kOk);
  EXPECT_TRUE(v.is_fragment);
}

// One row per parse error: a description, how to break a valid frame, and
// the error it must produce.
struct ErrorCase {
  const char* what;
  ParseError want;
  std::vector<uint8_t> (*make)();
};

std::vector<uint8_t> V4() { return TcpPacket().Payload("hello").Build(); }
std::vector<uint8_t> V6() { return TcpPacket().V6("2001:2::1", "2001:2::2").Build(); }
// A frame whose TCP header carries the given option bytes (dataofs covers
// them exactly).
std::vector<uint8_t> WithOptions(std::initializer_list<uint8_t> o) {
  TcpPacket p;
  p.Opt(o);
  return p.Build();
}
std::vector<uint8_t> V6WithExt(int n, uint8_t last_len = 0) {
  // n destination-options headers of 8 bytes each before TCP.
  auto base = V6();
  std::vector<uint8_t> f(base.begin(), base.begin() + 54);
  const uint16_t tcp_len = static_cast<uint16_t>(base.size() - 54);
  f[20] = 60;  // next header: destination options
  for (int i = 0; i < n; ++i) {
    const uint8_t nh = i + 1 < n ? 60 : 6;
    f.insert(f.end(), {nh, static_cast<uint8_t>(i + 1 < n ? 0 : last_len), 1, 4, 0, 0, 0, 0});
    if (i + 1 == n && last_len) f.insert(f.end(), last_len * 8, 0);
  }
  f.insert(f.end(), base.begin() + 54, base.end());
  StoreBe16(&f[18], static_cast<uint16_t>(f.size() - 54));
  (void)tcp_len;
  return f;
}

const ErrorCase kErrorCases[] = {
    {"frame of 10 bytes", ParseError::kTruncatedEthernet,
     [] { return std::vector<uint8_t>(10, 0); }},
    {"VLAN tag cut short", ParseError::kTruncatedVlan,
     [] {
       auto f = TcpPacket().Vlan(5).Build();
       f.resize(16);
       return f;
     }},
    {"three VLAN tags", ParseError::kTooManyVlans,
     [] {
       auto f = TcpPacket().Vlan(1).Vlan(2).Build();
       // Turn the inner ethertype (IPv4) into a third 802.1Q tag.
       f[20] = 0x81;
       f[21] = 0x00;
       return f;
     }},
    {"IPv4 header cut short", ParseError::kTruncatedIpv4,
     [] {
       auto f = V4();
       f.resize(14 + 12);
       return f;
     }},
    {"IPv4 ethertype, version 6", ParseError::kIpv4BadVersion,
     [] {
       auto f = V4();
       f[14] = 0x65;
       return f;
     }},
    {"IHL 4", ParseError::kIpv4IhlTooSmall,
     [] {
       auto f = V4();
       f[14] = 0x44;
       return f;
     }},
    {"total length beyond the frame", ParseError::kIpv4TotalLengthTooLong,
     [] {
       auto f = V4();
       StoreBe16(&f[16], 1000);
       return f;
     }},
    {"total length below the header", ParseError::kIpv4TotalLengthTooShort,
     [] {
       auto f = V4();
       StoreBe16(&f[16], 12);
       return f;
     }},
    {"IPv6 header cut short", ParseError::kTruncatedIpv6,
     [] {
       auto f = V6();
       f.resize(14 + 30);
       return f;
     }},
    {"IPv6 ethertype, version 4", ParseError::kIpv6BadVersion,
     [] {
       auto f = V6();
       f[14] = 0x45;
       return f;
     }},
    {"IPv6 payload length beyond the frame", ParseError::kIpv6PayloadTooLong,
     [] {
       auto f = V6();
       StoreBe16(&f[18], 2000);
       return f;
     }},
    {"IPv6 extension header runs past the datagram", ParseError::kIpv6ExtHeaderTruncated,
     [] {
       auto f = V6WithExt(1);
       f[14 + 40 + 1] = 200;  // hdr ext len: 201*8 bytes
       return f;
     }},
    {"nine IPv6 extension headers", ParseError::kIpv6TooManyExtHeaders,
     [] { return V6WithExt(9); }},
    {"TCP header cut short", ParseError::kTruncatedTcp,
     [] {
       auto f = V4();
       f.resize(14 + 20 + 12);
       StoreBe16(&f[16], 32);
       return f;
     }},
    {"data offset 4", ParseError::kTcpDataOffsetTooSmall,
     [] {
       auto f = V4();
       f[14 + 20 + 12] = 0x40;
       return f;
     }},
    {"data offset beyond the datagram", ParseError::kTcpDataOffsetBeyondPacket,
     [] {
       auto f = V4();
       f[14 + 20 + 12] = 0xf0;
       return f;
     }},
    {"option kind without a length byte", ParseError::kTcpOptionTruncated,
     [] { return WithOptions({1, 1, 1, 2}); }},
    {"option length 0", ParseError::kTcpOptionLengthTooSmall,
     [] { return WithOptions({8, 0, 0, 0}); }},
    {"option length 1", ParseError::kTcpOptionLengthTooSmall,
     [] { return WithOptions({30, 1, 0, 0}); }},
    {"option runs past the header", ParseError::kTcpOptionPastHeader,
     [] { return WithOptions({8, 10, 0, 0}); }},
    {"MSS of length 3", ParseError::kTcpOptionBadLength,
     [] { return WithOptions({2, 3, 5, 1}); }},
    {"window scale of length 4", ParseError::kTcpOptionBadLength,
     [] { return WithOptions({3, 4, 7, 1}); }},
    {"SACK-permitted of length 3", ParseError::kTcpOptionBadLength,
     [] { return WithOptions({4, 3, 0, 1}); }},
    {"timestamps of length 8", ParseError::kTcpOptionBadLength,
     [] { return WithOptions({8, 8, 0, 0, 0, 0, 0, 0}); }},
    {"SACK of 2+7 bytes", ParseError::kTcpOptionBadLength,
     [] { return WithOptions({5, 9, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1}); }},
};

TEST(Packet, EveryParseErrorHasACase) {
  std::vector<bool> seen(kNumParseErrors, false);
  seen[0] = true;  // kOk
  for (const auto& c : kErrorCases) seen[static_cast<size_t>(c.want)] = true;
  for (size_t i = 0; i < kNumParseErrors; ++i) {
    EXPECT_TRUE(seen[i]) << "no test case for " << ParseErrorName(static_cast<ParseError>(i));
  }
}

TEST(Packet, ErrorTable) {
  for (const auto& c : kErrorCases) {
    SCOPED_TRACE(c.what);
    auto f = c.make();
    PacketView v;
    EXPECT_EQ(Parse(f, &v), c.want) << "got " << ParseErrorName(Parse(f, &v)) << ", want "
                                    << ParseErrorName(c.want);
  }
}

TEST(Packet, ErrorNamesAreSnakeCaseAndDistinct) {
  std::vector<std::string> names;
  for (size_t i = 0; i < kNumParseErrors; ++i) {
    std::string n = ParseErrorName(static_cast<ParseError>(i));
    for (char ch : n) EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_') << n;
    for (const auto& m : names) EXPECT_NE(n, m);
    names.push_back(n);
  }
}

TEST(Packet, EveryTruncationIsSafe) {
  // Each prefix of each vector (exact-size heap copies, so ASan sees any
  // overread) parses to an error or to a view that stays inside it.
  for (const auto& sv : ScapyVectors()) {
    for (size_t n = 0; n <= sv.frame.size(); ++n) {
      std::vector<uint8_t> f(sv.frame.begin(), sv.frame.begin() + n);
      PacketView v;
      if (Parse(f, &v) == ParseError::kOk && v.is_tcp) {
        EXPECT_LE(v.l3_end, n);
        EXPECT_EQ(v.payload_offset + v.payload_len, v.l3_end);
      }
    }
  }
}

}  // namespace
}  // namespace moat::net
