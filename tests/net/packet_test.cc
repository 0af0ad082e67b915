// ParseFrame: the fields of scapy-made frames read back right; every named
// parse error is reachable, one table row (or more) per error; IPv6
// extension header chains, fragments, non-IP and Ethernet padding; and no
// truncation or mutation of a valid frame makes the parser read outside it
// (every parse runs on an exact-size heap copy, so ASan sees any overread).
#include "moat/net/packet.h"

#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/bytes.h"
#include "moat/net/tcp_options.h"
#include "scapy_vectors.h"
#include "testing/packet_builder.h"

namespace moat::net {
namespace {

using moat::testing::Parse;
using moat::testing::ScapyVectors;
using moat::testing::TcpPacket;

constexpr char kSrc6[] = "2001:2::1";
constexpr char kDst6[] = "2001:2::2";

// Checks what must hold for every successfully parsed view of an n-byte
// frame: all offsets inside the frame and consistent with each other.
void ExpectViewInvariants(const PacketView& v, size_t n) {
  EXPECT_EQ(v.frame_len, n);
  EXPECT_LE(v.vlan_count, 2);
  EXPECT_EQ(v.l3_offset, kEthernetHeaderLen + kVlanTagLen * v.vlan_count);
  if (v.l3 == L3::kOther) {
    EXPECT_FALSE(v.is_tcp);
    return;
  }
  EXPECT_LE(v.l3_end, n);
  EXPECT_GE(v.l3_end, v.l3_offset + (v.ipv6() ? kIpv6HeaderLen : kIpv4HeaderLen));
  EXPECT_LE(v.l4_offset, v.l3_end);
  if (v.is_tcp) {
    EXPECT_FALSE(v.is_fragment);
    EXPECT_EQ(v.l4_proto, kIpProtoTcp);
    EXPECT_GE(v.tcp_header_len, kTcpHeaderLen);
    EXPECT_LE(v.tcp_header_len, kTcpMaxHeaderLen);
    EXPECT_EQ(v.tcp_header_len % 4, 0);
    EXPECT_EQ(v.l4_offset + v.tcp_header_len, v.payload_offset);
    EXPECT_EQ(v.payload_offset + v.payload_len, v.l3_end);
    EXPECT_EQ(v.tcp_len(), v.l3_end - v.l4_offset);
    // A kOk TCP view never carries a malformed option list.
    TcpOptions o;
    EXPECT_EQ(ParseTcpOptions(v.tcp(), v.tcp_header_len, &o), ParseError::kOk);
  }
}

TEST(ParseFrame, ScapyVectorsReadBack) {
  for (const auto& sv : ScapyVectors()) {
    SCOPED_TRACE(sv.name);
    std::vector<uint8_t> f = sv.frame;
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    ExpectViewInvariants(v, f.size());
    EXPECT_EQ(v.frame, f.data());
    EXPECT_EQ(v.l3, sv.l3);
    EXPECT_EQ(v.vlan_count, sv.vlans);
    for (int i = 0; i < sv.vlans; ++i) EXPECT_EQ(v.vlan_tci[i], sv.vlan_tci[i]) << i;
    EXPECT_EQ(v.l3_offset, sv.l3_offset);
    if (sv.l3 == L3::kOther) continue;
    EXPECT_EQ(v.ethertype, sv.l3 == L3::kIpv6 ? kEtherTypeIpv6 : kEtherTypeIpv4);
    EXPECT_EQ(v.l3_end, sv.l3_end);
    EXPECT_EQ(v.l4_proto, sv.l4_proto);
    EXPECT_EQ(v.is_fragment, sv.is_fragment);
    EXPECT_EQ(v.is_tcp, sv.is_tcp);
    EXPECT_EQ(v.l4_offset, sv.l4_offset);
    EXPECT_EQ(v.addr_len(), sv.l3 == L3::kIpv6 ? 16 : 4);
    if (sv.l3 == L3::kIpv4) {
      const uint8_t src[4] = {198, 18, 0, 1}, dst[4] = {198, 18, 0, 2};
      EXPECT_EQ(std::memcmp(v.src_addr(), src, 4), 0);
      EXPECT_EQ(std::memcmp(v.dst_addr(), dst, 4), 0);
      EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
    } else {
      EXPECT_EQ(v.src_addr()[0], 0x20);
      EXPECT_EQ(v.src_addr()[15], 1);
      EXPECT_EQ(v.dst_addr()[15], 2);
    }
    if (!sv.is_tcp) continue;
    EXPECT_EQ(v.tcp_header_len, sv.tcp_header_len);
    EXPECT_EQ(v.payload_len, sv.payload_len);
    EXPECT_EQ(v.payload_offset, sv.l4_offset + sv.tcp_header_len);
    EXPECT_EQ(v.src_port(), sv.sport);
    EXPECT_EQ(v.dst_port(), sv.dport);
    EXPECT_EQ(v.seq().value(), sv.seq);
    EXPECT_EQ(v.ack().value(), sv.ack);
    EXPECT_EQ(v.tcp_flags(), sv.flags);
    EXPECT_EQ(v.window(), sv.window);
    EXPECT_EQ(v.tcp_checksum(), sv.tcp_checksum);
    EXPECT_TRUE(VerifyTcpChecksum(v));
    const uint32_t syn_fin = ((sv.flags & kTcpSyn) ? 1 : 0) + ((sv.flags & kTcpFin) ? 1 : 0);
    EXPECT_EQ(v.seg_len(), sv.payload_len + syn_fin);
  }
}

TEST(ParseFrame, EthernetPaddingAndTrailersAreNotPayload) {
  int seen = 0;
  for (const auto& sv : ScapyVectors()) {
    const std::string name = sv.name;
    if (name != "v4_padded" && name != "v6_trailer") continue;
    SCOPED_TRACE(name);
    ++seen;
    std::vector<uint8_t> f = sv.frame;
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_LT(v.l3_end, f.size());
    EXPECT_EQ(v.l3_end, sv.l3_end);
    EXPECT_EQ(v.payload_offset + v.payload_len, v.l3_end);
    EXPECT_TRUE(VerifyTcpChecksum(v)) << "the checksum covers the datagram only";
  }
  EXPECT_EQ(seen, 2);

  // Built frames with padding, both families, and with VLAN tags.
  for (bool v6 : {false, true}) {
    TcpPacket p;
    if (v6) p.V6(kSrc6, kDst6);
    p.Vlan(7).Payload("ab");
    auto f = p.BuildPadded(9);
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_EQ(v.l3_end, f.size() - 9);
    EXPECT_EQ(v.payload_len, 2);
    EXPECT_TRUE(VerifyTcpChecksum(v));
  }
}

TEST(ParseFrame, NonIpIsOther) {
  for (uint16_t type : {kEtherTypeArp, uint16_t{0x88cc} /* LLDP */, uint16_t{0x8906} /* FCoE */,
                        uint16_t{0x0600}}) {
    std::vector<uint8_t> f(60, 0xee);
    StoreBe16(&f[12], type);
    PacketView v;
    EXPECT_EQ(Parse(f, &v), ParseError::kOk) << type;
    EXPECT_EQ(v.l3, L3::kOther);
    EXPECT_EQ(v.ethertype, type);
    EXPECT_FALSE(v.is_tcp);
  }
  // Exactly an Ethernet header: nothing more is needed for non-IP.
  std::vector<uint8_t> bare(14, 0);
  StoreBe16(&bare[12], kEtherTypeArp);
  PacketView v;
  EXPECT_EQ(Parse(bare, &v), ParseError::kOk);
  EXPECT_EQ(v.l3, L3::kOther);
  // A VLAN-tagged ARP: tags are read, then kOther.
  std::vector<uint8_t> tagged(64, 0);
  StoreBe16(&tagged[12], kEtherTypeVlan);
  StoreBe16(&tagged[14], 0x2064);
  StoreBe16(&tagged[16], kEtherTypeArp);
  EXPECT_EQ(Parse(tagged, &v), ParseError::kOk);
  EXPECT_EQ(v.l3, L3::kOther);
  EXPECT_EQ(v.vlan_count, 1);
  EXPECT_EQ(v.vlan_tci[0], 0x2064);
  EXPECT_EQ(v.vlan_tpid[0], kEtherTypeVlan);
}

TEST(ParseFrame, IpButNotTcp) {
  for (uint8_t proto : {kIpProtoUdp, kIpProtoIcmp, uint8_t{47} /* GRE */, uint8_t{132}}) {
    auto f = TcpPacket().Payload("0123456789").Build();
    f[14 + 9] = proto;
    PacketView v;
    EXPECT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_EQ(v.l3, L3::kIpv4);
    EXPECT_FALSE(v.is_tcp);
    EXPECT_EQ(v.l4_proto, proto);
    EXPECT_EQ(v.l4_offset, 34);
  }
  // IPv6: ICMPv6, and "no next header" (59), which is not an extension
  // header to walk.
  for (uint8_t nh : {kIpProtoIcmpv6, uint8_t{59}, kIpProtoUdp}) {
    auto f = TcpPacket().V6(kSrc6, kDst6).Build();
    f[14 + 6] = nh;
    PacketView v;
    EXPECT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_EQ(v.l3, L3::kIpv6);
    EXPECT_FALSE(v.is_tcp);
    EXPECT_EQ(v.l4_proto, nh);
    EXPECT_EQ(v.l4_offset, 54);
  }
  // Not-TCP is not checked for TCP-sized room: a 0-byte UDP "datagram".
  auto g = TcpPacket().Build();
  g[14 + 9] = kIpProtoUdp;
  StoreBe16(&g[16], 20);
  g.resize(34);
  PacketView v;
  EXPECT_EQ(Parse(g, &v), ParseError::kOk);
  EXPECT_EQ(v.l3_end, 34);
}

TEST(ParseFrame, Ipv4FragmentsAreRecognisedNotParsed) {
  struct Case {
    uint16_t flags_frag;
    bool fragment;
  };
  // RFC 791 §3.1: DF is 0x4000, MF 0x2000, offset the low 13 bits.
  for (const Case c : {Case{0x0000, false}, Case{0x4000, false}, Case{0x2000, true},
                       Case{0x0001, true}, Case{0x1fff, true}, Case{0x6000, true},
                       Case{0x8000, false} /* reserved bit is not a fragment */}) {
    SCOPED_TRACE(c.flags_frag);
    auto f = TcpPacket().Payload("abc").Build();
    StoreBe16(&f[14 + 6], c.flags_frag);
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_EQ(v.is_fragment, c.fragment);
    EXPECT_EQ(v.is_tcp, !c.fragment);
    EXPECT_EQ(v.l4_proto, kIpProtoTcp);
  }
  // A later fragment's bytes are not a TCP header, even a malformed one:
  // no TCP error can come out of a fragment.
  auto f = TcpPacket().Build();
  StoreBe16(&f[14 + 6], 0x0003);
  f[34 + 12] = 0x10;  // "data offset 1" if it were parsed
  PacketView v;
  EXPECT_EQ(Parse(f, &v), ParseError::kOk);
  EXPECT_TRUE(v.is_fragment);
  EXPECT_FALSE(v.is_tcp);
}

// --- IPv6 extension header chains ---------------------------------------

constexpr uint8_t kHopByHop = 0, kRouting = 43, kFragment = 44, kDestOpts = 60;

// An IPv6 TCP frame with `chain` (type, total length in bytes) between the
// IPv6 header and TCP. Payload length and next-header fields are fixed up;
// the TCP checksum stays valid (extension headers are not in it).
std::vector<uint8_t> V6WithExts(const std::vector<std::pair<uint8_t, size_t>>& chain,
                                uint8_t last_nh = kIpProtoTcp) {
  const auto base = TcpPacket().V6(kSrc6, kDst6).Payload("ext!").Build();
  const size_t l4 = 14 + 40;
  std::vector<uint8_t> f(base.begin(), base.begin() + l4);
  size_t nh_at = 14 + 6;
  for (const auto& [type, len] : chain) {
    f[nh_at] = type;
    const size_t at = f.size();
    f.resize(at + len, 0);  // zero options are Pad1s; a zero routing header is type 0
    if (type != kFragment) f[at + 1] = static_cast<uint8_t>(len / 8 - 1);
    nh_at = at;
  }
  f[nh_at] = last_nh;
  f.insert(f.end(), base.begin() + l4, base.end());
  StoreBe16(&f[14 + 4], static_cast<uint16_t>(f.size() - l4));
  return f;
}

TEST(ParseFrame, Ipv6ExtensionChainsAreWalked) {
  const std::vector<std::vector<std::pair<uint8_t, size_t>>> chains = {
      {},
      {{kHopByHop, 8}},
      {{kHopByHop, 8}, {kRouting, 24}, {kDestOpts, 16}},
      {{kDestOpts, 8 * 256}},  // the largest one header can be
      {{kHopByHop, 8},
       {kDestOpts, 8},
       {kRouting, 8},
       {kDestOpts, 8},
       {kDestOpts, 8},
       {kDestOpts, 8},
       {kDestOpts, 8},
       {kDestOpts, 8}},  // exactly 8: the limit
  };
  for (const auto& chain : chains) {
    SCOPED_TRACE(chain.size());
    auto f = V6WithExts(chain);
    size_t ext_bytes = 0;
    for (const auto& e : chain) ext_bytes += e.second;
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    ExpectViewInvariants(v, f.size());
    EXPECT_TRUE(v.is_tcp);
    EXPECT_FALSE(v.is_fragment);
    EXPECT_EQ(v.l4_offset, 54 + ext_bytes);
    EXPECT_EQ(v.payload_len, 4);
    EXPECT_EQ(v.src_port(), 40000);
    EXPECT_TRUE(VerifyTcpChecksum(v));
  }
}

TEST(ParseFrame, Ipv6FragmentHeader) {
  // Any fragment header, even an atomic one (offset 0, M=0), marks a
  // fragment; the next header behind it is reported, TCP is not parsed.
  for (uint16_t off_m : {uint16_t{0x0000}, uint16_t{0x0001}, uint16_t{0x0008}}) {
    auto f = V6WithExts({{kHopByHop, 8}, {kFragment, 8}});
    StoreBe16(&f[54 + 8 + 2], off_m);
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_TRUE(v.is_fragment);
    EXPECT_FALSE(v.is_tcp);
    EXPECT_EQ(v.l4_proto, kIpProtoTcp);
    EXPECT_EQ(v.l4_offset, 54 + 16);
  }
  // Headers after the fragment header are not walked (they belong to the
  // fragmentable part); the walk stops and no chain limit applies.
  std::vector<std::pair<uint8_t, size_t>> chain = {{kFragment, 8}};
  for (int i = 0; i < 9; ++i) chain.push_back({kDestOpts, 8});
  auto f = V6WithExts(chain);
  PacketView v;
  ASSERT_EQ(Parse(f, &v), ParseError::kOk);
  EXPECT_TRUE(v.is_fragment);
  EXPECT_EQ(v.l4_proto, kDestOpts);
}

TEST(ParseFrame, Ipv6UnknownNextHeaderIsUpperLayer) {
  // ESP (50), AH (51) and Mobility (135) are not walked: "not TCP", not
  // guessed at.
  for (uint8_t nh : {uint8_t{50}, uint8_t{51}, uint8_t{135}}) {
    auto f = V6WithExts({{kHopByHop, 8}}, nh);
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_FALSE(v.is_tcp);
    EXPECT_EQ(v.l4_proto, nh);
    EXPECT_EQ(v.l4_offset, 62);
  }
}

// --- One row per parse error ---------------------------------------------

struct ErrorCase {
  const char* what;
  ParseError want;
  std::function<std::vector<uint8_t>()> make;
};

std::vector<uint8_t> V4() { return TcpPacket().Payload("hello").Build(); }
std::vector<uint8_t> V6() { return TcpPacket().V6(kSrc6, kDst6).Payload("hello").Build(); }
std::vector<uint8_t> Resized(std::vector<uint8_t> f, size_t n) {
  f.resize(n);
  return f;
}
// A frame whose TCP header carries exactly the given option bytes (a
// multiple of 4, so no padding is added).
std::vector<uint8_t> WithOptions(std::vector<uint8_t> o, bool v6 = false) {
  TcpPacket p;
  if (v6) p.V6(kSrc6, kDst6);
  auto f = p.Opt(o).Payload("data").Build();
  return f;
}
// Options after a SYN's usual ones, to show that position does not matter.
std::vector<uint8_t> AfterMss(std::vector<uint8_t> o) {
  std::vector<uint8_t> all = {2, 4, 5, 0xb4};
  all.insert(all.end(), o.begin(), o.end());
  return WithOptions(all);
}

const std::vector<ErrorCase>& ErrorCases() {
  static const std::vector<ErrorCase> cases = {
      {"empty frame", ParseError::kTruncatedEthernet, [] { return std::vector<uint8_t>(); }},
      {"13-byte frame", ParseError::kTruncatedEthernet, [] { return Resized(V4(), 13); }},
      {"VLAN tag without its ethertype", ParseError::kTruncatedVlan,
       [] { return Resized(TcpPacket().Vlan(5).Build(), 17); }},
      {"VLAN tpid only", ParseError::kTruncatedVlan,
       [] { return Resized(TcpPacket().Vlan(5).Build(), 14); }},
      {"second tag cut short", ParseError::kTruncatedVlan,
       [] { return Resized(TcpPacket().Vlan(10, kEtherTypeQinQ).Vlan(20).Build(), 20); }},
      {"three VLAN tags", ParseError::kTooManyVlans,
       [] {
         auto f = TcpPacket().Vlan(1).Vlan(2).Build();
         StoreBe16(&f[20], kEtherTypeVlan);  // inner ethertype -> a third tag
         return f;
       }},
      {"three 802.1ad tags", ParseError::kTooManyVlans,
       [] {
         auto f = TcpPacket().Vlan(1, kEtherTypeQinQ).Vlan(2, kEtherTypeQinQ).Build();
         StoreBe16(&f[20], kEtherTypeQinQ);
         return f;
       }},
      {"IPv4 header cut short", ParseError::kTruncatedIpv4, [] { return Resized(V4(), 14 + 19); }},
      {"IPv4 header cut short behind a tag", ParseError::kTruncatedIpv4,
       [] { return Resized(TcpPacket().Vlan(3).Build(), 18 + 12); }},
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
      {"IHL 0", ParseError::kIpv4IhlTooSmall,
       [] {
         auto f = V4();
         f[14] = 0x40;
         return f;
       }},
      {"total length one beyond the frame", ParseError::kIpv4TotalLengthTooLong,
       [] {
         auto f = V4();
         StoreBe16(&f[16], static_cast<uint16_t>(f.size() - 14 + 1));
         return f;
       }},
      {"total length 0xffff", ParseError::kIpv4TotalLengthTooLong,
       [] {
         auto f = V4();
         StoreBe16(&f[16], 0xffff);
         return f;
       }},
      {"total length below the header", ParseError::kIpv4TotalLengthTooShort,
       [] {
         auto f = V4();
         StoreBe16(&f[16], 19);
         return f;
       }},
      {"total length below IHL with IP options", ParseError::kIpv4TotalLengthTooShort,
       [] {
         auto f = V4();
         f[14] = 0x47;  // 28-byte header claimed
         StoreBe16(&f[16], 24);
         return f;
       }},
      {"IPv6 header cut short", ParseError::kTruncatedIpv6, [] { return Resized(V6(), 14 + 39); }},
      {"IPv6 ethertype, version 4", ParseError::kIpv6BadVersion,
       [] {
         auto f = V6();
         f[14] = 0x45;
         return f;
       }},
      {"IPv6 payload length one beyond the frame", ParseError::kIpv6PayloadTooLong,
       [] {
         auto f = V6();
         StoreBe16(&f[18], static_cast<uint16_t>(f.size() - 54 + 1));
         return f;
       }},
      {"extension header with no room for its first 8 bytes", ParseError::kIpv6ExtHeaderTruncated,
       [] {
         auto f = V6();
         f[20] = kHopByHop;
         StoreBe16(&f[18], 4);  // datagram ends 4 bytes in; the frame goes on
         return f;
       }},
      {"extension header length past the datagram", ParseError::kIpv6ExtHeaderTruncated,
       [] {
         auto f = V6WithExts({{kDestOpts, 8}});
         f[54 + 1] = 200;  // (200 + 1) * 8 bytes
         return f;
       }},
      {"second extension header past the datagram", ParseError::kIpv6ExtHeaderTruncated,
       [] {
         auto f = V6WithExts({{kHopByHop, 8}, {kRouting, 16}});
         f[62 + 1] = 4;  // 40 bytes; only 16 + TCP remain
         StoreBe16(&f[18], 8 + 16);
         return f;
       }},
      {"fragment header cut short", ParseError::kIpv6ExtHeaderTruncated,
       [] {
         auto f = V6WithExts({{kFragment, 8}});
         StoreBe16(&f[18], 6);
         return f;
       }},
      {"nine extension headers", ParseError::kIpv6TooManyExtHeaders,
       [] {
         return V6WithExts(std::vector<std::pair<uint8_t, size_t>>(9, {kDestOpts, 8}));
       }},
      {"TCP header cut short by the frame", ParseError::kTruncatedTcp,
       [] {
         auto f = Resized(V4(), 14 + 20 + 19);
         StoreBe16(&f[16], 20 + 19);
         return f;
       }},
      {"TCP header cut short by IPv4 total length (padding follows)", ParseError::kTruncatedTcp,
       [] {
         auto f = V4();
         StoreBe16(&f[16], 20 + 12);
         return f;
       }},
      {"TCP header cut short, IPv6", ParseError::kTruncatedTcp,
       [] {
         auto f = V6();
         StoreBe16(&f[18], 10);
         return f;
       }},
      {"TCP header cut short after extension headers", ParseError::kTruncatedTcp,
       [] {
         auto f = V6WithExts({{kHopByHop, 8}});
         StoreBe16(&f[18], 8 + 19);
         return f;
       }},
      {"data offset 4", ParseError::kTcpDataOffsetTooSmall,
       [] {
         auto f = V4();
         f[34 + 12] = 0x40;
         return f;
       }},
      {"data offset 0", ParseError::kTcpDataOffsetTooSmall,
       [] {
         auto f = V6();
         f[54 + 12] = 0x00;
         return f;
       }},
      {"data offset 15 on a 25-byte segment", ParseError::kTcpDataOffsetBeyondPacket,
       [] {
         auto f = V4();
         f[34 + 12] = 0xf0;
         return f;
       }},
      {"data offset covers the Ethernet padding only", ParseError::kTcpDataOffsetBeyondPacket,
       [] {
         auto f = TcpPacket().BuildPadded(20);
         f[34 + 12] = 0x60;  // 24 bytes: inside the frame, past the datagram
         return f;
       }},
      {"option kind in the last byte", ParseError::kTcpOptionTruncated,
       [] {
         return WithOptions({1, 1, 1, 2});
       }},
      {"unknown kind in the last byte", ParseError::kTcpOptionTruncated,
       [] {
         return AfterMss({1, 1, 1, 200});
       }},
      {"option length 0", ParseError::kTcpOptionLengthTooSmall,
       [] {
         return WithOptions({8, 0, 0, 0});
       }},
      {"option length 1", ParseError::kTcpOptionLengthTooSmall,
       [] {
         return WithOptions({30, 1, 0, 0});
       }},
      {"MSS length 1 after NOPs", ParseError::kTcpOptionLengthTooSmall,
       [] {
         return AfterMss({1, 1, 2, 1});
       }},
      {"timestamps run past the header", ParseError::kTcpOptionPastHeader,
       [] {
         return WithOptions({8, 10, 0, 0});
       }},
      {"unknown option runs past the header", ParseError::kTcpOptionPastHeader,
       [] {
         return AfterMss({1, 99, 4, 0});
       }},
      {"option runs into the payload by one byte", ParseError::kTcpOptionPastHeader,
       [] {
         return WithOptions({1, 1, 77, 3}, true);
       }},
      {"MSS of length 3", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({2, 3, 5, 1});
       }},
      {"MSS of length 8", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({2, 8, 5, 0xb4, 0, 0, 0, 0});
       }},
      {"window scale of length 4", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({3, 4, 7, 1});
       }},
      {"window scale of length 2", ParseError::kTcpOptionBadLength,
       [] {
         return AfterMss({3, 2, 1, 1});
       }},
      {"SACK-permitted of length 3", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({4, 3, 0, 1});
       }},
      {"SACK-permitted of length 4", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({4, 4, 0, 0});
       }},
      {"timestamps of length 8", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({8, 8, 0, 0, 0, 0, 0, 0});
       }},
      {"timestamps of length 12", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
       }},
      {"SACK of 2+7 bytes", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({5, 9, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1});
       }},
      {"SACK with no blocks", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({1, 1, 5, 2});
       }},
      {"SACK of 2+12 bytes", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({5, 14, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 1});
       }},
      {"Fast Open cookie of 1 byte", ParseError::kTcpOptionBadLength,
       [] {
         return WithOptions({34, 3, 0xaa, 1});
       }},
      {"Fast Open cookie of 17 bytes", ParseError::kTcpOptionBadLength,
       [] {
         std::vector<uint8_t> o = {34, 19};
         o.resize(20, 0x5a);
         return WithOptions(o);
       }},
  };
  return cases;
}

TEST(ParseFrame, EveryParseErrorHasACase) {
  std::set<ParseError> seen = {ParseError::kOk};
  for (const auto& c : ErrorCases()) seen.insert(c.want);
  for (size_t i = 0; i < kNumParseErrors; ++i) {
    EXPECT_TRUE(seen.count(static_cast<ParseError>(i)))
        << "no test case for " << ParseErrorName(static_cast<ParseError>(i));
  }
}

TEST(ParseFrame, ErrorTable) {
  for (const auto& c : ErrorCases()) {
    SCOPED_TRACE(c.what);
    const std::vector<uint8_t> made = c.make();
    // Exact-size heap copy: any read past the end is an ASan report.
    std::vector<uint8_t> f(made);
    PacketView v;
    const ParseError got = Parse(f, &v);
    EXPECT_EQ(got, c.want) << "got " << ParseErrorName(got) << ", want " << ParseErrorName(c.want);
    EXPECT_FALSE(v.is_tcp) << "a failed parse never claims TCP";
  }
}

TEST(ParseFrame, ErrorTableFramesAreOtherwiseValid) {
  // Each row's frame differs from a good one only by its defect: the
  // TCP-option rows' frames, with the options replaced by NOPs, parse.
  for (const auto& c : ErrorCases()) {
    if (c.want < ParseError::kTcpOptionTruncated) continue;
    SCOPED_TRACE(c.what);
    auto f = c.make();
    PacketView v;
    ASSERT_NE(Parse(f, &v), ParseError::kOk);
    const uint16_t l4 = v.l4_offset;
    const uint16_t doff = static_cast<uint16_t>((f[l4 + 12] >> 4) * 4);
    for (uint16_t i = l4 + 20; i < l4 + doff; ++i) f[i] = kOptNop;
    EXPECT_EQ(Parse(f, &v), ParseError::kOk);
    EXPECT_TRUE(v.is_tcp);
  }
}

TEST(ParseErrorNames, SnakeCaseDistinctAndDescribed) {
  EXPECT_STREQ(ParseErrorName(ParseError::kOk), "ok");
  EXPECT_STREQ(ParseErrorName(ParseError::kTruncatedEthernet), "truncated_ethernet");
  EXPECT_STREQ(ParseErrorName(ParseError::kIpv4IhlTooSmall), "ipv4_ihl_too_small");
  EXPECT_STREQ(ParseErrorName(ParseError::kTcpOptionBadLength), "tcp_option_bad_length");
  std::set<std::string> names, texts;
  for (size_t i = 0; i < kNumParseErrors; ++i) {
    const std::string n = ParseErrorName(static_cast<ParseError>(i));
    const std::string t = ParseErrorText(static_cast<ParseError>(i));
    EXPECT_FALSE(n.empty());
    EXPECT_FALSE(t.empty());
    for (char ch : n) {
      EXPECT_TRUE((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_') << n;
    }
    EXPECT_NE(n.front(), '_');
    EXPECT_NE(n.back(), '_');
    EXPECT_TRUE(names.insert(n).second) << "duplicate name " << n;
    EXPECT_TRUE(texts.insert(t).second) << "duplicate text " << t;
  }
  EXPECT_STREQ(ParseErrorName(static_cast<ParseError>(kNumParseErrors)), "unknown");
  EXPECT_STREQ(ParseErrorText(static_cast<ParseError>(200)), "unknown");
}

// --- Robustness ------------------------------------------------------------

TEST(ParseFrame, EveryTruncationOfEveryVectorIsSafe) {
  size_t parses = 0;
  for (const auto& sv : ScapyVectors()) {
    SCOPED_TRACE(sv.name);
    for (size_t n = 0; n <= sv.frame.size(); ++n) {
      std::vector<uint8_t> f(sv.frame.begin(), sv.frame.begin() + n);
      PacketView v;
      const ParseError e = ParseFrame(f.data(), static_cast<uint16_t>(n), &v);
      ++parses;
      if (n < kEthernetHeaderLen) {
        EXPECT_EQ(e, ParseError::kTruncatedEthernet) << n;
        continue;
      }
      if (sv.l3 != L3::kOther && n < sv.l3_end) {
        // Cutting into the datagram is always caught: the IP length fields
        // no longer fit.
        EXPECT_NE(e, ParseError::kOk) << n;
      } else {
        // Cutting only padding or trailer away changes nothing.
        ASSERT_EQ(e, ParseError::kOk) << n;
        EXPECT_EQ(v.is_tcp, sv.is_tcp);
        EXPECT_EQ(v.payload_len, sv.payload_len);
      }
      if (e == ParseError::kOk) ExpectViewInvariants(v, n);
    }
  }
  EXPECT_GT(parses, 2000u);
}

TEST(ParseFrame, TruncatingTheLengthFieldsToo) {
  // A capture cut short with the IP lengths rewritten to match: whatever the
  // cut, the parser reports an error or a consistent view, never a header
  // that is not all there.
  for (const auto& sv : ScapyVectors()) {
    if (sv.l3 == L3::kOther) continue;
    SCOPED_TRACE(sv.name);
    for (size_t n = sv.l3_offset + (sv.l3 == L3::kIpv6 ? 40 : 20); n <= sv.l3_end; ++n) {
      std::vector<uint8_t> f(sv.frame.begin(), sv.frame.begin() + n);
      if (sv.l3 == L3::kIpv6) {
        StoreBe16(&f[sv.l3_offset + 4], static_cast<uint16_t>(n - sv.l3_offset - 40));
      } else {
        StoreBe16(&f[sv.l3_offset + 2], static_cast<uint16_t>(n - sv.l3_offset));
      }
      PacketView v;
      if (Parse(f, &v) == ParseError::kOk) {
        ExpectViewInvariants(v, n);
        if (v.is_tcp) {
          EXPECT_GE(n, static_cast<size_t>(sv.l4_offset + sv.tcp_header_len));
        }
      }
    }
  }
}

TEST(ParseFrame, RandomMutationsAreSafe) {
  // Not a fuzzer (tests/fuzz has those), but a fixed-seed sweep that runs in
  // every unit test run, sanitizers included.
  std::mt19937 rng(0x5eed);
  const auto& vectors = ScapyVectors();
  int ok = 0, tcp = 0;
  for (int i = 0; i < 40000; ++i) {
    const auto& sv = vectors[rng() % vectors.size()];
    std::vector<uint8_t> f = sv.frame;
    const int flips = 1 + rng() % 4;
    for (int k = 0; k < flips; ++k) {
      // Favour the headers, where the length fields are.
      const size_t at = rng() % std::min<size_t>(f.size(), rng() % 2 ? 80 : f.size());
      f[at] = rng() % 3 ? static_cast<uint8_t>(rng())
                        : static_cast<uint8_t>(f[at] ^ (1u << (rng() % 8)));
    }
    if (rng() % 3 == 0) f.resize(rng() % (f.size() + 1));
    std::vector<uint8_t> exact(f);  // exact-size allocation
    PacketView v;
    if (Parse(exact, &v) == ParseError::kOk) {
      ++ok;
      tcp += v.is_tcp;
      ExpectViewInvariants(v, exact.size());
      if (v.is_tcp) {
        // Touch everything the accessors can reach.
        volatile uint32_t sink = v.src_port() + v.dst_port() + v.seq().value() + v.ack().value() +
                                 v.tcp_flags() + v.window() + v.tcp_checksum() +
                                 v.src_addr()[v.addr_len() - 1] + v.dst_addr()[v.addr_len() - 1];
        (void)sink;
        if (v.payload_len) {
          volatile uint8_t last = v.payload()[v.payload_len - 1];
          (void)last;
        }
        (void)VerifyTcpChecksum(v);
        if (v.l3 == L3::kIpv4) (void)VerifyIpv4HeaderChecksum(v);
      }
    }
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_GT(ok, 1000);
  EXPECT_GT(tcp, 1000);
}

// --- Accessors and helpers -----------------------------------------------

TEST(PacketView, AccessorsAndSegLen) {
  auto f = TcpPacket()
               .Macs({{2, 0, 0, 0, 0, 0xaa}}, {{2, 0, 0, 0, 0, 0xbb}})
               .Ports(1234, 443)
               .Seq(0xfffffffe)
               .Ack(77)
               .Flags(kTcpSyn | kTcpFin | kTcpAck)
               .Window(0x1234)
               .Payload("12345")
               .Build();
  PacketView v;
  ASSERT_EQ(Parse(f, &v), ParseError::kOk);
  EXPECT_EQ(v.src_mac()[5], 0xaa);
  EXPECT_EQ(v.dst_mac()[5], 0xbb);
  EXPECT_EQ(v.ip(), f.data() + 14);
  EXPECT_EQ(v.tcp(), f.data() + 34);
  EXPECT_EQ(v.payload(), f.data() + 54);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.payload()), v.payload_len), "12345");
  EXPECT_EQ(v.src_port(), 1234);
  EXPECT_EQ(v.dst_port(), 443);
  EXPECT_EQ(v.seq(), SeqNum(0xfffffffe));
  EXPECT_EQ(v.ack(), SeqNum(77));
  EXPECT_EQ(v.window(), 0x1234);
  EXPECT_EQ(v.seg_len(), 5u + 2u) << "SYN and FIN each take one";
  EXPECT_EQ(v.seq().Add(v.seg_len()), SeqNum(5));
}

TEST(PacketView, FillIpLengthAfterResize) {
  for (bool v6 : {false, true}) {
    TcpPacket p;
    if (v6) p.V6(kSrc6, kDst6);
    auto f = p.Payload("0123456789").Build();
    PacketView v;
    ASSERT_EQ(Parse(f, &v), ParseError::kOk);
    // Drop 4 payload bytes the way the engine trims a frame.
    f.resize(f.size() - 4);
    v.frame_len = static_cast<uint16_t>(f.size());
    v.l3_end = static_cast<uint16_t>(v.l3_end - 4);
    FillIpLength(v);
    if (!v6) FillIpv4HeaderChecksum(v);
    FillTcpChecksum(v);
    PacketView w;
    ASSERT_EQ(Parse(f, &w), ParseError::kOk);
    EXPECT_EQ(w.payload_len, 6);
    EXPECT_TRUE(VerifyTcpChecksum(w));
    if (!v6) {
      EXPECT_TRUE(VerifyIpv4HeaderChecksum(w));
    }
  }
}

TEST(PacketView, ReparsingIsIdempotentAndResetsTheView) {
  auto good = TcpPacket().Vlan(9).Payload("x").Build();
  std::vector<uint8_t> arp(60, 0);
  StoreBe16(&arp[12], kEtherTypeArp);
  PacketView v;
  ASSERT_EQ(Parse(good, &v), ParseError::kOk);
  ASSERT_TRUE(v.is_tcp);
  ASSERT_EQ(Parse(arp, &v), ParseError::kOk);
  EXPECT_FALSE(v.is_tcp) << "nothing left over from the previous frame";
  EXPECT_EQ(v.vlan_count, 0);
  EXPECT_EQ(v.payload_len, 0);
}

// RFC 3168 §5: the ECN field is the low two bits of the IPv4 TOS byte and
// of the IPv6 traffic class; clearing it keeps the DSCP and, for IPv4, a
// valid header checksum.
TEST(PacketView, IpEcnReadAndClearedKeepingDscpAndChecksum) {
  for (bool v6 : {false, true}) {
    for (uint8_t ecn : {kEcnNotEct, kEcnEct1, kEcnEct0, kEcnCe}) {
      SCOPED_TRACE(std::to_string(v6) + "/" + std::to_string(ecn));
      TcpPacket b;
      if (v6) b.V6("2001:2::1", "2001:2::2");
      std::vector<uint8_t> f = b.Tos(static_cast<uint8_t>(0xb8 | ecn)).Build();
      PacketView v;
      ASSERT_EQ(Parse(f, &v), ParseError::kOk);
      EXPECT_EQ(IpEcn(v), ecn);
      ClearIpEcn(v);
      EXPECT_EQ(IpEcn(v), kEcnNotEct);
      if (v6) {
        EXPECT_EQ(LoadBe32(v.ip()) >> 20, 0x6b8u);  // version 6, DSCP EF, Not-ECT
      } else {
        EXPECT_EQ(v.ip()[1], 0xb8);
        EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
      }
      EXPECT_TRUE(VerifyTcpChecksum(v));
    }
  }
}

// What the parser got to, also on errors: the engine passes on malformed
// frames that concern no protected service, so it must learn the addresses
// and ports whenever they are there.
TEST(ParseFrame, ReachSaysWhatIsKnownEvenOnErrors) {
  const auto third_tag = [](std::vector<uint8_t> f) {
    const uint8_t tag[4] = {0x81, 0x00, 0x00, 0x03};
    f.insert(f.begin() + 12, tag, tag + 4);
    return f;
  };
  {
    SCOPED_TRACE("three VLAN tags, TCP");
    auto f = third_tag(TcpPacket().Ports(1234, 22).Vlan(1).Vlan(2).Build());
    PacketView v;
    EXPECT_EQ(Parse(f, &v), ParseError::kTooManyVlans);
    EXPECT_EQ(v.reach, Reach::kPorts);
    EXPECT_FALSE(v.is_tcp);
    EXPECT_EQ(v.vlan_count, 2);  // the first two are recorded
    EXPECT_EQ(v.src_port(), 1234);
    EXPECT_EQ(v.dst_port(), 22);
    EXPECT_EQ(v.dst_addr()[3], 2);  // 198.18.0.2
  }
  {
    SCOPED_TRACE("three VLAN tags, ARP");
    auto f = third_tag(TcpPacket().Vlan(1).Vlan(2).Build());
    StoreBe16(f.data() + 24, kEtherTypeArp);
    PacketView v;
    EXPECT_EQ(Parse(f, &v), ParseError::kTooManyVlans);
    EXPECT_EQ(v.reach, Reach::kNotIp);
  }
  {
    SCOPED_TRACE("bad TCP option");
    auto f = TcpPacket().Ports(1234, 22).Opt({2, 3, 5, 1}).Build();
    PacketView v;
    EXPECT_EQ(Parse(f, &v), ParseError::kTcpOptionBadLength);
    EXPECT_EQ(v.reach, Reach::kPorts);
    EXPECT_EQ(v.dst_port(), 22);
  }
  {
    SCOPED_TRACE("IPv4 total length beyond the frame");
    auto f = TcpPacket().Build();
    StoreBe16(f.data() + 16, 1400);
    PacketView v;
    EXPECT_EQ(Parse(f, &v), ParseError::kIpv4TotalLengthTooLong);
    EXPECT_EQ(v.reach, Reach::kAddresses);
    EXPECT_EQ(v.l3, L3::kIpv4);
    EXPECT_EQ(v.dst_addr()[3], 2);
  }
  {
    SCOPED_TRACE("truncated Ethernet");
    std::vector<uint8_t> f(10, 0);
    PacketView v;
    EXPECT_EQ(Parse(f, &v), ParseError::kTruncatedEthernet);
    EXPECT_EQ(v.reach, Reach::kNone);
  }
  {
    SCOPED_TRACE("good frames");
    auto tcp = TcpPacket().Build();
    PacketView v;
    ASSERT_EQ(Parse(tcp, &v), ParseError::kOk);
    EXPECT_EQ(v.reach, Reach::kPorts);
    auto arp = TcpPacket().Build();
    StoreBe16(arp.data() + 12, kEtherTypeArp);
    ASSERT_EQ(Parse(arp, &v), ParseError::kOk);
    EXPECT_EQ(v.reach, Reach::kNotIp);
  }
  // Every row of the error table: an error never reaches further than the
  // layer it was found in.
  for (const auto& c : ErrorCases()) {
    SCOPED_TRACE(c.what);
    auto f = c.make();
    PacketView v;
    const ParseError e = Parse(f, &v);
    if (e >= ParseError::kTcpDataOffsetTooSmall && e != ParseError::kTooManyVlans) {
      EXPECT_EQ(v.reach, Reach::kPorts);
    } else if (e >= ParseError::kIpv4IhlTooSmall && e <= ParseError::kTruncatedTcp &&
               e != ParseError::kTruncatedIpv6 && e != ParseError::kIpv6BadVersion) {
      EXPECT_EQ(v.reach, Reach::kAddresses);
    } else if (e != ParseError::kTooManyVlans) {
      EXPECT_EQ(v.reach, Reach::kNone) << ParseErrorName(e);
    }
  }
}

}  // namespace
}  // namespace moat::net
