// --mtu on the ports (port.h): PlanMtu's decision for each PMD from the
// facts it reads, and a ring-backed port configured with a jumbo MTU in
// the in-process EAL that frame_path_test.cc's main() starts.

#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moat/dataplane/port.h"
#include "moat/proxy/held_pool.h"

namespace moat::dataplane {
namespace {

Port NamedPort(const char* name) {
  Port p;
  p.id = 0;
  p.role = "client";
  p.name = name;
  return p;
}

MtuFacts AfPacket(uint32_t framesz, uint32_t kernel_mtu) {
  MtuFacts f;
  f.driver = "net_af_packet";
  f.max_rx_pktlen = 1518;  // what the PMD reports, whatever the interface
  f.max_mtu = 1500;
  f.kernel_iface = "vethc";
  f.kernel_mtu = kernel_mtu;
  f.af_packet_framesz = framesz;
  return f;
}

MtuFacts AfXdp(uint32_t kernel_mtu) {
  MtuFacts f;
  f.driver = "net_af_xdp";
  f.max_rx_pktlen = 3560;  // one 4 KiB page less the mbuf and XDP headroom
  f.max_mtu = 3542;
  f.kernel_iface = "vethc";
  f.kernel_mtu = kernel_mtu;
  return f;
}

MtuFacts Unlimited(const char* driver) {
  MtuFacts f;
  f.driver = driver;
  f.max_rx_pktlen = UINT32_MAX;
  f.max_mtu = 65535;
  return f;
}

std::string Error(const absl::StatusOr<MtuPlan>& p) {
  return p.ok() ? "(ok)" : std::string(p.status().message());
}

TEST(PlanMtuTest, RingAndPcapTakeAnyMtuAtConfigure) {
  for (const char* driver : {"net_ring", "net_pcap"}) {
    auto p = PlanMtu(NamedPort("x0"), Unlimited(driver), 9000);
    ASSERT_TRUE(p.ok()) << Error(p);
    EXPECT_EQ(p->conf_mtu, 9000);
    EXPECT_EQ(p->mtu, 9000);
    EXPECT_TRUE(p->warning.empty());
  }
}

TEST(PlanMtuTest, AfPacketJumboNeedsTheRingFrameAndTheKernelMtu) {
  // The PMD's default ring frame (2048) would truncate jumbo frames.
  auto p = PlanMtu(NamedPort("net_af_packet0"), AfPacket(2048, 9000), 9000);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(Error(p),
            "--mtu=9000: client port 0 (net_af_packet0, net_af_packet): its ring frames "
            "(framesz=2048) hold frames of up to 1982 bytes, a 9000-byte MTU needs 9022 (two VLAN "
            "tags): add framesz=9088,blocksz=290816 to its --vdev");
  // With the frame size, ethdev's 1518-byte limit is not what decides:
  // configured with the PMD's default, carried by the interface.
  p = PlanMtu(NamedPort("net_af_packet0"), AfPacket(9088, 9000), 9000);
  ASSERT_TRUE(p.ok()) << Error(p);
  EXPECT_EQ(p->conf_mtu, 0);
  EXPECT_EQ(p->mtu, 9000);
  EXPECT_NE(p->note.find("kernel interface vethc (MTU 9000)"), std::string::npos) << p->note;
  // An interface still at 1500 would drop the jumbo frames.
  p = PlanMtu(NamedPort("net_af_packet0"), AfPacket(9088, 1500), 9000);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(Error(p).find("kernel interface vethc has MTU 1500"), std::string::npos) << Error(p);
  EXPECT_NE(Error(p).find("ip link set dev vethc mtu 9000"), std::string::npos) << Error(p);
}

TEST(PlanMtuTest, AfPacketAtTheDefaultMtuIsConfiguredAsBefore) {
  auto p = PlanMtu(NamedPort("net_af_packet0"), AfPacket(2048, 1500), 1500);
  ASSERT_TRUE(p.ok()) << Error(p);
  EXPECT_EQ(p->conf_mtu, 1500);
  EXPECT_TRUE(p->note.empty());
  EXPECT_TRUE(p->warning.empty());
  // An interface whose MTU is above --mtu passes longer frames moat does
  // not expect: said at start-up.
  p = PlanMtu(NamedPort("net_af_packet0"), AfPacket(2048, 9000), 1500);
  ASSERT_TRUE(p.ok()) << Error(p);
  EXPECT_NE(p->warning.find("has MTU 9000, above --mtu=1500"), std::string::npos) << p->warning;
}

TEST(PlanMtuTest, AfXdpRefusesJumboFramesAndNamesWhatWorks) {
  auto p = PlanMtu(NamedPort("net_af_xdp0"), AfXdp(9000), 9000);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(Error(p),
            "--mtu=9000: client port 0 (net_af_xdp0, net_af_xdp) carries at most MTU 3542 (DPDK "
            "22.11's AF_XDP keeps a frame in one page, without multi-buffer; for jumbo frames use "
            "--vdev=net_af_packetN,iface=vethc,framesz=9088,blocksz=290816)");
  p = PlanMtu(NamedPort("net_af_xdp0"), AfXdp(1500), 1500);
  ASSERT_TRUE(p.ok()) << Error(p);
  EXPECT_EQ(p->conf_mtu, 1500);
  // Within its page, but the interface must carry it too.
  p = PlanMtu(NamedPort("net_af_xdp0"), AfXdp(1500), 3000);
  EXPECT_FALSE(p.ok());
}

TEST(PlanMtuTest, ANicBelowTheMtuIsRefused) {
  MtuFacts f = Unlimited("net_e1000_igb");
  f.max_rx_pktlen = 9728;
  f.max_mtu = 9710;
  EXPECT_TRUE(PlanMtu(NamedPort("0000:3b:00.0"), f, 9000).ok());
  f.max_mtu = 1500;
  auto p = PlanMtu(NamedPort("0000:3b:00.0"), f, 9000);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(Error(p),
            "--mtu=9000: client port 0 (0000:3b:00.0, net_e1000_igb) carries at most MTU 1500");
}

TEST(PlanMtuTest, DataRoomHoldsWhatTheRxPathWrites) {
  // net_af_packet copies framesz - 32 bytes into an mbuf; with the frame
  // size its error message asks for, that fits, as does a whole frame.
  EXPECT_EQ(AfPacketFrameSize(9000), 9088u);
  EXPECT_EQ(32 * AfPacketFrameSize(9000) % 4096, 0u);
  EXPECT_GE(RxDataRoom(AfPacket(9088, 9000), 9000), 9088u - 32);
  EXPECT_GE(RxDataRoom(AfPacket(9088, 9000), 9000), proxy::FrameRoom(9000));
  EXPECT_EQ(RxDataRoom(AfPacket(2048, 1500), 1500), 2048u);
  EXPECT_EQ(RxDataRoom(Unlimited("net_ring"), 9000), proxy::FrameRoom(9000));
  EXPECT_EQ(RxDataRoom(Unlimited("net_ring"), 1500), 2048u);
}

// A ring-backed port started as the Dataplane starts one: its MTU is the
// configured 9000 and a 9014-byte frame comes back as one mbuf.
TEST(StartPortMtuTest, ARingPortRunsAtAJumboMtu) {
  rte_mempool* pool = rte_pktmbuf_pool_create(
      "mtu_test_pool", 511, 0, 0, RTE_PKTMBUF_HEADROOM + proxy::FrameRoom(9000), SOCKET_ID_ANY);
  ASSERT_NE(pool, nullptr);
  rte_ring* rx = rte_ring_create("mtu_ring_rx", 64, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
  rte_ring* tx = rte_ring_create("mtu_ring_tx", 64, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
  ASSERT_NE(rx, nullptr);
  ASSERT_NE(tx, nullptr);
  const int id = rte_eth_from_rings("net_ring_mtu", &rx, 1, &tx, 1, SOCKET_ID_ANY);
  ASSERT_GE(id, 0);
  Port port;
  ASSERT_TRUE(DescribePort(static_cast<uint16_t>(id), "client", &port).ok());
  auto facts = GetMtuFacts(port);
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->driver, "net_ring");
  EXPECT_TRUE(facts->kernel_iface.empty());
  EXPECT_GE(facts->max_mtu, 9000u);
  auto plan = PlanMtu(port, *facts, 9000);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(StartPort(&port, 1, 64, 64, {pool}, *plan).ok());
  uint16_t mtu = 0;
  ASSERT_EQ(rte_eth_dev_get_mtu(port.id, &mtu), 0);
  EXPECT_EQ(mtu, 9000);
  EXPECT_EQ(port.mtu, 9000);

  rte_mbuf* m = rte_pktmbuf_alloc(pool);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(rte_pktmbuf_append(m, 9014), nullptr);  // fits one mbuf
  ASSERT_EQ(rte_ring_enqueue(rx, m), 0);
  rte_mbuf* got[4];
  ASSERT_EQ(rte_eth_rx_burst(port.id, 0, got, 4), 1);
  EXPECT_EQ(got[0]->nb_segs, 1);
  EXPECT_EQ(got[0]->pkt_len, 9014u);
  rte_pktmbuf_free(got[0]);
  StopPort(&port);
  rte_ring_free(rx);
  rte_ring_free(tx);
  rte_mempool_free(pool);
}

}  // namespace
}  // namespace moat::dataplane
