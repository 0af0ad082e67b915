#pragma once
// Port setup: queues, descriptor rings, symmetric RSS and what the device
// can offload. Control plane only.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct rte_mempool;

namespace moat::dataplane {

struct Port {
  uint16_t id = 0;
  const char* role = "";    // "client" or "server", for messages
  std::string name;         // ethdev name, e.g. net_af_packet0
  std::string driver;
  uint8_t mac[6] = {};
  uint16_t queues = 0;
  int socket = 0;           // NUMA socket (0 when the device has none)
  bool rss = false;         // RSS spreads flows over the queues
  bool symmetric_key = false;  // we installed the 0x6d5a key
  // Checksum offloads, enabled at StartPort when the device offers them:
  // RX verdicts in the mbufs (IPv4 header, TCP), and TX completion of the
  // IPv4 header and TCP checksums of the frames moat builds.
  bool rx_ip_cksum = false;
  bool rx_tcp_cksum = false;
  bool tx_cksum_offload = false;
  bool started = false;
  uint16_t mtu = 0;  // what the port was configured with (--mtu)
};

// What decides the largest frame a port carries (--mtu), gathered by
// GetMtuFacts from the device, its --vdev arguments and, for vdevs on a
// kernel interface, that interface.
struct MtuFacts {
  std::string driver;              // e.g. "net_af_packet"
  uint32_t max_mtu = 65535;        // the largest MTU ethdev lets the device configure
  uint32_t max_rx_pktlen = 0;      // the largest frame it says it receives
  std::string kernel_iface;        // net_af_packet / net_af_xdp: the interface, else empty
  uint32_t kernel_mtu = 0;         // its MTU (0: none, or unreadable)
  uint32_t af_packet_framesz = 0;  // net_af_packet: the ring's frame size (framesz=, 2048)
};

// How a port gets --mtu: the rxmode.mtu to configure (0 leaves the
// device's default) and what to log.
struct MtuPlan {
  uint16_t mtu = 1500;  // the MTU the port carries (--mtu)
  uint16_t conf_mtu = 0;
  std::string note;     // logged at INFO when not empty
  std::string warning;  // logged at WARNING when not empty
};

// Decides, without touching the device, whether `port` can carry IP
// packets of `mtu` bytes, one frame per mbuf, and how to set it; the
// error names the port and what to change. Per PMD (docs/dpdk-notes.md):
//   - NICs and most PMDs: ethdev's limit (max_mtu, max_rx_pktlen) is the
//     device's; the MTU is set with rxmode.mtu at configure (DPDK 22.11).
//   - net_af_packet reports a 1518-byte frame whatever the interface does,
//     so ethdev refuses any MTU above 1500; what passes is decided by the
//     kernel interface's MTU and the ring's frame size, which are checked
//     instead (the ring frame holds the frame 66 bytes in: TPACKET_V2
//     header and sockaddr_ll, aligned).
//   - net_af_xdp (DPDK 22.11) keeps a frame in one page, without
//     multi-buffer: at most ~3500 bytes. Above that, refused with the
//     net_af_packet arguments that do carry it.
//   - net_ring, net_pcap, net_null have no limit; net_pcap reads longer
//     frames into chained mbufs, which the data room avoids.
// A kernel interface whose MTU is below `mtu` is refused (its frames
// would be dropped by the kernel); one above is a warning.
absl::StatusOr<MtuPlan> PlanMtu(const Port& port, const MtuFacts& facts, uint32_t mtu);

// The ring frame size net_af_packet needs for `mtu` (a multiple of 128,
// so 32 frames fill whole pages: blocksz = 32 x framesz).
uint32_t AfPacketFrameSize(uint32_t mtu);

// Bytes of mbuf data room after the headroom that the port's RX needs for
// `mtu`: FrameRoom(mtu), and for net_af_packet what its ring frames hold.
uint32_t RxDataRoom(const MtuFacts& facts, uint32_t mtu);

absl::StatusOr<MtuFacts> GetMtuFacts(const Port& port);

// The 40-byte (or hash_key_size-byte) RSS key made of repeated 0x6d,0x5a.
// With it, Toeplitz gives the same hash when source and destination
// addresses and ports are swapped, so both directions of a flow land on the
// same queue and therefore the same worker (Woo & Park, "Scalable TCP
// Session Monitoring with Symmetric Receive-side Scaling", 2012).
std::vector<uint8_t> SymmetricRssKey(size_t size);

// Checks that `id` is a probed port and fills name/driver/socket.
absl::Status DescribePort(uint16_t id, const char* role, Port* port);

// Upper bound on queues the device supports for RX and TX.
absl::Status CheckQueues(const Port& port, uint16_t queues);

// Configures `queues` RX/TX queue pairs (queue i takes its mbufs from
// pools[i]), installs the symmetric RSS key where the device hashes, turns
// promiscuous mode on (a bump in the wire receives frames for other MACs),
// and starts the port.
// The MTU follows `plan` (PlanMtu).
absl::Status StartPort(Port* port, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
                       const std::vector<rte_mempool*>& pools, const MtuPlan& plan = {});

void StopPort(Port* port);

}  // namespace moat::dataplane
