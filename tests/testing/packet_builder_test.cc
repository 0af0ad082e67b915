// The shared packet builder's own contract, beyond what tests/net's
// builder tests check against scapy: the NOP-aligned option layout, the
// three build forms agreeing (and BuildInto not allocating), Endpoints
// mirroring a connection, and the payload forms.

#include "testing/packet_builder.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "testing/alloc_counter.h"

namespace moat::testing {
namespace {

TEST(TcpPacketTest, OptionsArePaddedOnlyAtTheEndByDefault) {
  const auto o =
      TcpPacket().Mss(1460).SackPermitted().Timestamps(1, 2).WindowScale(7).OptionBytes();
  EXPECT_EQ(
      o, (std::vector<uint8_t>{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 3, 3, 7, 1}));
}

TEST(TcpPacketTest, AlignOptionsPutsNopsBeforeEachTypedOption) {
  const auto o = TcpPacket()
                     .AlignOptions()
                     .Mss(1460)
                     .SackPermitted()
                     .Timestamps(1, 2)
                     .WindowScale(7)
                     .SackBlocks({5, 6})
                     .OptionBytes();
  // clang-format off
  EXPECT_EQ(o, (std::vector<uint8_t>{2, 4, 0x05, 0xb4,                          // MSS
                                     1, 1, 4, 2,                                // SACK-permitted
                                     1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2,      // timestamps
                                     1, 3, 3, 7,                                // window scale
                                     1, 1, 5, 10, 0, 0, 0, 5, 0, 0, 0, 6}));  // SACK
  // clang-format on
  // Raw bytes, NOPs and the Fast Open request are never aligned.
  EXPECT_EQ(TcpPacket().AlignOptions().FastOpenRequest().Nop().Opt({254, 2}).OptionBytes(),
            (std::vector<uint8_t>{34, 2, 1, 254, 2, 1, 1, 1}));
  // Switching it off again.
  EXPECT_EQ(
      TcpPacket().AlignOptions().SackPermitted().AlignOptions(false).SackPermitted().OptionBytes(),
      (std::vector<uint8_t>{1, 1, 4, 2, 4, 2, 1, 1}));
}

TEST(TcpPacketTest, BuildFormsAgree) {
  const TcpPacket p = TcpPacket()
                          .V6("2001:2::1", "2001:2::2")
                          .Seq(7)
                          .Flags(net::kTcpSyn)
                          .Mss(1440)
                          .Timestamps(3, 0)
                          .Vlan(5, net::kEtherTypeQinQ)
                          .Vlan(6)
                          .PayloadSize(33);
  const std::vector<uint8_t> v = p.Build();
  ASSERT_FALSE(v.empty());
  const Frame f = p.BuildFrame();
  ASSERT_EQ(f.len, v.size());
  EXPECT_EQ(std::memcmp(f.buf, v.data(), v.size()), 0);
  uint8_t buf[256];
  ASSERT_EQ(p.BuildInto(buf, sizeof(buf)), v.size());
  EXPECT_EQ(std::memcmp(buf, v.data(), v.size()), 0);
  EXPECT_EQ(p.BuildInto(buf, v.size() - 1), 0u) << "does not fit";
}

TEST(TcpPacketTest, BuildIntoDoesNotAllocate) {
  const TcpPacket p = TcpPacket().Mss(1460).SackBlocks({1, 2}).PayloadFill(100, 'x');
  uint8_t buf[kFrameCapacity];
  size_t n = 0;
  size_t allocations;
  {
    AllocationScope counting;
    for (int i = 0; i < 10; ++i) n += p.BuildInto(buf, sizeof(buf));
    allocations = counting.count();
  }
  EXPECT_GT(n, 0u);
  EXPECT_EQ(allocations, 0u);
  // The counter is live in this binary: Build() allocates its vector.
  {
    AllocationScope counting;
    const std::vector<uint8_t> v = p.Build();
    EXPECT_GT(counting.count(), 0u);
  }
}

TEST(TcpPacketDeathTest, BuildFrameAbortsOnASpecThatCannotBeBuilt) {
  EXPECT_DEATH(TcpPacket().Vlan(1).Vlan(2).Vlan(3).BuildFrame(), "cannot be built");
  EXPECT_DEATH(TcpPacket().PayloadFill(kFrameCapacity, 0).BuildFrame(), "cannot be built");
}

TEST(TcpPacketTest, PayloadForms) {
  const uint8_t bytes[4] = {9, 8, 7, 6};
  net::PacketView v;
  std::vector<uint8_t> f = TcpPacket().Payload(bytes, 3).Build();
  ASSERT_EQ(Parse(f, &v), net::ParseError::kOk);
  ASSERT_EQ(v.payload_len, 3);
  EXPECT_EQ(std::memcmp(v.frame + v.frame_len - 3, bytes, 3), 0);
  f = TcpPacket().PayloadFill(5, 'x').Build();
  ASSERT_EQ(Parse(f, &v), net::ParseError::kOk);
  EXPECT_EQ(std::vector<uint8_t>(v.frame + v.frame_len - 5, v.frame + v.frame_len),
            std::vector<uint8_t>(5, 'x'));
  EXPECT_TRUE(net::VerifyTcpChecksum(v));
}

TEST(EndpointsTest, FromClientAndFromServerMirrorEachOther) {
  for (bool v6 : {false, true}) {
    SCOPED_TRACE(v6 ? "IPv6" : "IPv4");
    const uint8_t client[16] = {0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
    const uint8_t server[16] = {0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8};
    Endpoints e = Endpoints::Make(v6, client, 1234, server, 443);
    e.client_mac = net::MacAddr{{2, 0, 0, 0, 0, 9}};
    e.server_mac = net::MacAddr{{2, 0, 0, 0, 0, 8}};
    Frame c = e.FromClient().BuildFrame();
    Frame s = e.FromServer().BuildFrame();
    net::PacketView cv, sv;
    ASSERT_EQ(Parse(c, &cv), net::ParseError::kOk);
    ASSERT_EQ(Parse(s, &sv), net::ParseError::kOk);
    EXPECT_EQ(cv.ipv6(), v6);
    EXPECT_EQ(sv.ipv6(), v6);
    const size_t n = v6 ? 16 : 4;
    EXPECT_EQ(std::memcmp(cv.src_addr(), client, n), 0);
    EXPECT_EQ(std::memcmp(cv.dst_addr(), server, n), 0);
    EXPECT_EQ(std::memcmp(sv.src_addr(), server, n), 0);
    EXPECT_EQ(std::memcmp(sv.dst_addr(), client, n), 0);
    EXPECT_EQ(cv.src_port(), 1234);
    EXPECT_EQ(cv.dst_port(), 443);
    EXPECT_EQ(sv.src_port(), 443);
    EXPECT_EQ(sv.dst_port(), 1234);
    EXPECT_EQ(cv.src_mac()[5], 9);
    EXPECT_EQ(cv.dst_mac()[5], 8);
    EXPECT_EQ(sv.src_mac()[5], 8);
    EXPECT_EQ(sv.dst_mac()[5], 9);
  }
}

TEST(RefreshTest, PutsChecksumsRightAfterAnEdit) {
  Frame f = TcpPacket().PayloadFill(10, 'a').BuildFrame();
  f.buf[f.len - 1] = 'b';
  net::PacketView v;
  ASSERT_EQ(Parse(f, &v), net::ParseError::kOk);
  EXPECT_FALSE(net::VerifyTcpChecksum(v));
  ASSERT_TRUE(Refresh(f));
  EXPECT_TRUE(net::VerifyTcpChecksum(v));
  Frame runt;
  runt.len = 10;
  EXPECT_FALSE(Refresh(runt));
}

}  // namespace
}  // namespace moat::testing
