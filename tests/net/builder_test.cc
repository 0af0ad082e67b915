// BuildTcpFrame produces byte-for-byte what scapy produces for the same
// headers, parses back, and refuses what does not fit.
#include "moat/net/builder.h"

#include <arpa/inet.h>

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/bytes.h"
#include "moat/net/packet.h"
#include "scapy_vectors.h"

namespace moat::net {
namespace {

using testing::ScapyVectors;

TEST(Builder, MatchesScapyLinuxSyn) {
  // scapy: Ether/IP(flags=DF, ttl=64, id=1)/TCP(S, seq 0xfffffff0, Linux options).
  const auto& sv = ScapyVectors()[0];
  ASSERT_EQ(std::string(sv.name), "v4_syn_linux");
  const uint8_t* ip = sv.frame.data() + 14;
  const uint8_t* tcp = sv.frame.data() + sv.l4_offset;
  const size_t opt_len = (tcp[12] >> 4) * 4 - 20;
  TcpFrameSpec s;
  std::memcpy(s.src_mac.b, sv.frame.data() + 6, 6);
  std::memcpy(s.dst_mac.b, sv.frame.data(), 6);
  s.src_addr = ip + 12;
  s.dst_addr = ip + 16;
  s.ttl = ip[8];
  s.ip_id = LoadBe16(ip + 4);
  s.src_port = sv.sport;
  s.dst_port = sv.dport;
  s.seq = sv.seq;
  s.ack = sv.ack;
  s.flags = sv.flags;
  s.window = sv.window;
  s.options = tcp + 20;
  s.options_len = static_cast<uint8_t>(opt_len);
  std::vector<uint8_t> out(256);
  out.resize(BuildTcpFrame(out.data(), out.size(), s));
  EXPECT_EQ(out, sv.frame);
}

TEST(Builder, MatchesScapyIpv6) {
  for (const auto& sv : ScapyVectors()) {
    if (std::string(sv.name) != "v6_syn_linux") continue;
    const uint8_t* ip = sv.frame.data() + 14;
    const uint8_t* tcp = sv.frame.data() + sv.l4_offset;
    TcpFrameSpec s;
    std::memcpy(s.src_mac.b, sv.frame.data() + 6, 6);
    std::memcpy(s.dst_mac.b, sv.frame.data(), 6);
    s.ipv6 = true;
    s.src_addr = ip + 8;
    s.dst_addr = ip + 24;
    s.ttl = ip[7];
    s.src_port = sv.sport;
    s.dst_port = sv.dport;
    s.seq = sv.seq;
    s.flags = sv.flags;
    s.window = sv.window;
    s.options = tcp + 20;
    s.options_len = static_cast<uint8_t>((tcp[12] >> 4) * 4 - 20);
    std::vector<uint8_t> out(256);
    out.resize(BuildTcpFrame(out.data(), out.size(), s));
    EXPECT_EQ(out, sv.frame);
  }
}

TEST(Builder, VlanPayloadAndTooSmall) {
  const uint8_t a[4] = {198, 18, 0, 1}, b[4] = {198, 18, 0, 2};
  const uint8_t payload[5] = {'h', 'e', 'l', 'l', 'o'};
  TcpFrameSpec s;
  s.vlan_count = 2;
  s.vlan_tci[0] = 10;
  s.vlan_tci[1] = 20;
  s.src_addr = a;
  s.dst_addr = b;
  s.src_port = 1;
  s.dst_port = 2;
  s.flags = kTcpAck;
  s.payload = payload;
  s.payload_len = 5;
  std::vector<uint8_t> out(256);
  const size_t n = BuildTcpFrame(out.data(), out.size(), s);
  ASSERT_EQ(n, 14u + 8 + 20 + 20 + 5);
  PacketView v;
  ASSERT_EQ(ParseFrame(out.data(), static_cast<uint16_t>(n), &v), ParseError::kOk);
  EXPECT_EQ(v.vlan_count, 2);
  EXPECT_EQ(v.vlan_tci[0], 10);
  EXPECT_EQ(v.vlan_tci[1], 20);
  EXPECT_EQ(v.payload_len, 5);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
  EXPECT_EQ(BuildTcpFrame(out.data(), n - 1, s), 0u) << "one byte short";
  s.options_len = 3;  // not a multiple of 4
  EXPECT_EQ(BuildTcpFrame(out.data(), out.size(), s), 0u);
}

}  // namespace
}  // namespace moat::net
