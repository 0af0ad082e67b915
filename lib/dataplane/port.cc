#include "moat/dataplane/port.h"

#include <net/if.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_format.h"
#include "moat/dataplane/log.h"
#include "moat/proxy/held_pool.h"

namespace moat::dataplane {

std::vector<uint8_t> SymmetricRssKey(size_t size) {
  std::vector<uint8_t> key(size);
  for (size_t i = 0; i < size; ++i) key[i] = (i % 2 == 0) ? 0x6d : 0x5a;
  return key;
}

absl::Status DescribePort(uint16_t id, const char* role, Port* port) {
  port->id = id;
  port->role = role;
  if (!rte_eth_dev_is_valid_port(id)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--%s_port=%u: no such port (EAL probed %u port(s); add a device with -a or "
        "--vdev, ports are numbered in probe order)",
        role, id, rte_eth_dev_count_avail()));
  }
  char name[RTE_ETH_NAME_MAX_LEN] = {};
  rte_eth_dev_get_name_by_port(id, name);
  port->name = name;
  rte_eth_dev_info info;
  int rc = rte_eth_dev_info_get(id, &info);
  if (rc != 0) {
    return absl::InternalError(absl::StrFormat("port %u (%s): cannot read device info: %s", id,
                                               name, rte_strerror(-rc)));
  }
  port->driver = info.driver_name ? info.driver_name : "?";
  int socket = rte_eth_dev_socket_id(id);
  port->socket = socket < 0 ? 0 : socket;
  rte_ether_addr mac;
  if (rte_eth_macaddr_get(id, &mac) == 0) std::memcpy(port->mac, mac.addr_bytes, 6);
  return absl::OkStatus();
}

absl::Status CheckQueues(const Port& port, uint16_t queues) {
  rte_eth_dev_info info;
  int rc = rte_eth_dev_info_get(port.id, &info);
  if (rc != 0) {
    return absl::InternalError(absl::StrFormat("port %u (%s): cannot read device info: %s",
                                               port.id, port.name, rte_strerror(-rc)));
  }
  if (queues > info.max_rx_queues || queues > info.max_tx_queues) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--queues=%u: %s port %u (%s) supports at most %u RX and %u TX queues "
        "(net_af_packet: add qpairs=N to the --vdev)",
        queues, port.role, port.id, port.name, info.max_rx_queues, info.max_tx_queues));
  }
  return absl::OkStatus();
}

namespace {

// net_af_packet (TPACKET_V2): a frame's data starts this far into its ring
// frame (the 32-byte header and a sockaddr_ll, 16-aligned, with the MAC
// header ending on the alignment), and the PMD copies framesz - 32 bytes
// into an mbuf.
constexpr uint32_t kAfPacketFrameOffset = 66;
constexpr uint32_t kAfPacketMbufSlack = 32;
constexpr uint32_t kAfPacketDefaultFrameSize = 2048;  // the PMD's default framesz

// The start-up log's word for a port's RX checksum verdicts.
const char* RxCksumText(const Port& p) {
  if (p.rx_ip_cksum && p.rx_tcp_cksum) return "ipv4+tcp";
  if (p.rx_tcp_cksum) return "tcp";
  if (p.rx_ip_cksum) return "ipv4";
  return "none";
}

uint32_t RoundUp(uint32_t v, uint32_t to) { return (v + to - 1) / to * to; }

// "framesz=N" among a --vdev's arguments (comma-separated key=value).
uint32_t VdevArg(const char* args, const char* key, uint32_t dflt) {
  if (args == nullptr) return dflt;
  const size_t klen = std::strlen(key);
  for (const char* p = args; *p != '\0';) {
    if (std::strncmp(p, key, klen) == 0 && p[klen] == '=') {
      return static_cast<uint32_t>(std::strtoul(p + klen + 1, nullptr, 10));
    }
    const char* comma = std::strchr(p, ',');
    if (comma == nullptr) break;
    p = comma + 1;
  }
  return dflt;
}

}  // namespace

uint32_t AfPacketFrameSize(uint32_t mtu) {
  return RoundUp(mtu + proxy::kMaxL2Header + kAfPacketFrameOffset, 128);
}

uint32_t RxDataRoom(const MtuFacts& facts, uint32_t mtu) {
  uint32_t room = proxy::FrameRoom(mtu);
  if (facts.driver == "net_af_packet" && facts.af_packet_framesz > kAfPacketMbufSlack) {
    room = std::max(room, RoundUp(facts.af_packet_framesz - kAfPacketMbufSlack, 64));
  }
  return room;
}

absl::StatusOr<MtuFacts> GetMtuFacts(const Port& port) {
  rte_eth_dev_info info;
  const int rc = rte_eth_dev_info_get(port.id, &info);
  if (rc != 0) {
    return absl::InternalError(absl::StrFormat("port %u (%s): cannot read device info: %s",
                                               port.id, port.name, rte_strerror(-rc)));
  }
  MtuFacts f;
  f.driver = info.driver_name != nullptr ? info.driver_name : "?";
  f.max_rx_pktlen = info.max_rx_pktlen;
  // As rte_eth_dev_configure validates rxmode.mtu: the device's max_mtu,
  // and its max_rx_pktlen less the L2 overhead (the difference between the
  // two when the device gives both, else Ethernet header and CRC).
  const uint32_t overhead = info.max_mtu != UINT16_MAX && info.max_rx_pktlen > info.max_mtu
                                ? info.max_rx_pktlen - info.max_mtu
                                : RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
  f.max_mtu = info.max_mtu;
  if (info.max_rx_pktlen > overhead) f.max_mtu = std::min(f.max_mtu, info.max_rx_pktlen - overhead);
  char ifname[IF_NAMESIZE] = {};
  if (info.if_index > 0 && if_indextoname(info.if_index, ifname) != nullptr) {
    f.kernel_iface = ifname;
    const int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock >= 0) {
      ifreq ifr;
      std::memset(&ifr, 0, sizeof(ifr));
      std::memcpy(ifr.ifr_name, ifname, sizeof(ifname) < IFNAMSIZ ? sizeof(ifname) : IFNAMSIZ);
      if (ioctl(sock, SIOCGIFMTU, &ifr) == 0) f.kernel_mtu = static_cast<uint32_t>(ifr.ifr_mtu);
      close(sock);
    }
  }
  if (f.driver == "net_af_packet") {
    const rte_devargs* da = info.device != nullptr ? rte_dev_devargs(info.device) : nullptr;
    f.af_packet_framesz =
        VdevArg(da != nullptr ? da->args : nullptr, "framesz", kAfPacketDefaultFrameSize);
  }
  return f;
}

absl::StatusOr<MtuPlan> PlanMtu(const Port& port, const MtuFacts& f, uint32_t mtu) {
  MtuPlan plan;
  plan.mtu = static_cast<uint16_t>(mtu);
  const std::string who = absl::StrFormat("--mtu=%u: %s port %u (%s, %s)", mtu, port.role, port.id,
                                          port.name, f.driver);
  const uint32_t framesz = AfPacketFrameSize(mtu);
  if (f.driver == "net_af_packet") {
    const uint32_t frame = mtu + proxy::kMaxL2Header;
    const uint32_t holds =
        f.af_packet_framesz > kAfPacketFrameOffset ? f.af_packet_framesz - kAfPacketFrameOffset : 0;
    if (holds < frame) {
      // The kernel would truncate longer frames to the ring frame.
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: its ring frames (framesz=%u) hold frames of up to %u bytes, a %u-byte MTU needs "
          "%u (two VLAN tags): add framesz=%u,blocksz=%u to its --vdev",
          who, f.af_packet_framesz, holds, mtu, frame, framesz, 32 * framesz));
    }
    if (mtu <= f.max_mtu) {
      plan.conf_mtu = static_cast<uint16_t>(mtu);
    } else {
      // ethdev would refuse it: leave the PMD's default and rely on the
      // kernel interface (checked below) and the ring (checked above).
      plan.note = absl::StrFormat(
          "%s port %u (%s): the PMD reports a %u-byte frame limit; MTU %u is carried by the "
          "kernel interface %s (MTU %u) and ring frames of %u bytes",
          port.role, port.id, port.name, f.max_rx_pktlen, mtu, f.kernel_iface, f.kernel_mtu,
          f.af_packet_framesz);
    }
  } else if (mtu > f.max_mtu) {
    std::string hint;
    if (f.driver == "net_af_xdp") {
      hint = absl::StrFormat(
          " (DPDK 22.11's AF_XDP keeps a frame in one page, without multi-buffer; for jumbo "
          "frames use --vdev=net_af_packetN,iface=%s,framesz=%u,blocksz=%u)",
          f.kernel_iface.empty() ? "IFACE" : f.kernel_iface, framesz, 32 * framesz);
    }
    return absl::InvalidArgumentError(
        absl::StrFormat("%s carries at most MTU %u%s", who, f.max_mtu, hint));
  } else {
    plan.conf_mtu = static_cast<uint16_t>(mtu);
  }
  if (!f.kernel_iface.empty() && f.kernel_mtu != 0) {
    if (f.kernel_mtu < mtu) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: its kernel interface %s has MTU %u, so the kernel drops longer frames: `ip link "
          "set dev %s mtu %u` first (moat does not change kernel interfaces)",
          who, f.kernel_iface, f.kernel_mtu, f.kernel_iface, mtu));
    }
    if (f.kernel_mtu > mtu) {
      plan.warning = absl::StrFormat(
          "%s port %u (%s): kernel interface %s has MTU %u, above --mtu=%u: longer frames "
          "will not pass moat whole; set --mtu=%u or lower the interface's MTU",
          port.role, port.id, port.name, f.kernel_iface, f.kernel_mtu, mtu, f.kernel_mtu);
    }
  }
  return plan;
}

absl::Status StartPort(Port* port, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
                       const std::vector<rte_mempool*>& pools, const MtuPlan& plan) {
  const uint16_t id = port->id;
  auto fail = [&](const char* what, int rc) {
    return absl::InternalError(absl::StrFormat("%s port %u (%s): %s failed: %s", port->role, id,
                                               port->name, what, rte_strerror(-rc)));
  };
  rte_eth_dev_info info;
  int rc = rte_eth_dev_info_get(id, &info);
  if (rc != 0) return fail("rte_eth_dev_info_get", rc);

  rte_eth_conf conf;
  std::memset(&conf, 0, sizeof(conf));
  std::vector<uint8_t> key;
  // RSS only matters with several queues; a device that hashes but has no
  // programmable key (hash_key_size 0) keeps its own, which may not be
  // symmetric: we say so at start-up rather than silently split flows.
  if (queues > 1 && info.flow_type_rss_offloads != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf =
        (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    if (info.hash_key_size > 0) {
      key = SymmetricRssKey(info.hash_key_size);
      conf.rx_adv_conf.rss_conf.rss_key = key.data();
      conf.rx_adv_conf.rss_conf.rss_key_len = info.hash_key_size;
      port->symmetric_key = true;
    }
    port->rss = true;
  }
  // Checksum offloads, whichever the device has. RX: the NIC's verdict
  // stands in for the engine's software verify (frame_meta.h); each of the
  // two is used on its own. TX: the frames moat builds (SYN-ACKs, backend
  // SYN and ACK, RSTs, probes) carry only the pseudo-header sum and the NIC
  // completes them; both are needed, IPv4 frames need the header checksum
  // too. Frames moat rewrites keep their RFC 1624 incremental updates (two
  // adds per field, cheaper than offload metadata, right on any port).
  const uint64_t rx_cksum =
      info.rx_offload_capa & (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM);
  conf.rxmode.offloads |= rx_cksum;
  port->rx_ip_cksum = (rx_cksum & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) != 0;
  port->rx_tcp_cksum = (rx_cksum & RTE_ETH_RX_OFFLOAD_TCP_CKSUM) != 0;
  constexpr uint64_t kTxCksum = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
  port->tx_cksum_offload = (info.tx_offload_capa & kTxCksum) == kTxCksum;
  if (port->tx_cksum_offload) conf.txmode.offloads |= kTxCksum;
  if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE) {
    // Safe here: every mbuf moat sends comes from one pool per socket,
    // with refcnt 1.
    conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
  }

  // DPDK 22.11 takes the MTU at configure (rxmode.mtu, validated against
  // the device's limits) and RX queue setup then checks that the mbufs'
  // data room holds such a frame; RX scatter stays off, so every frame is
  // one mbuf (the Dataplane sized the data room for it).
  conf.rxmode.mtu = plan.conf_mtu;
  rc = rte_eth_dev_configure(id, queues, queues, &conf);
  if (rc != 0) return fail("rte_eth_dev_configure", rc);
  if (!plan.note.empty()) MOAT_LOG(INFO, "%s", plan.note.c_str());
  if (!plan.warning.empty()) MOAT_LOG(WARNING, "%s", plan.warning.c_str());
  rc = rte_eth_dev_adjust_nb_rx_tx_desc(id, &rx_desc, &tx_desc);
  if (rc != 0) return fail("rte_eth_dev_adjust_nb_rx_tx_desc", rc);

  for (uint16_t q = 0; q < queues; ++q) {
    rte_eth_rxconf rxconf = info.default_rxconf;
    rc = rte_eth_rx_queue_setup(id, q, rx_desc, port->socket, &rxconf, pools[q]);
    if (rc != 0) return fail("rte_eth_rx_queue_setup", rc);
    rte_eth_txconf txconf = info.default_txconf;
    txconf.offloads = conf.txmode.offloads;
    rc = rte_eth_tx_queue_setup(id, q, tx_desc, port->socket, &txconf);
    if (rc != 0) return fail("rte_eth_tx_queue_setup", rc);
  }
  rc = rte_eth_dev_start(id);
  if (rc != 0) return fail("rte_eth_dev_start", rc);
  port->started = true;
  port->queues = queues;
  port->mtu = plan.mtu;
  rc = rte_eth_promiscuous_enable(id);
  if (rc != 0 && rc != -ENOTSUP) {
    return fail("rte_eth_promiscuous_enable", rc);
  }
  MOAT_LOG(INFO,
           "%s port %u (%s, %s): %u queue pair(s), %u/%u descriptors, MTU %u, RSS %s, "
           "checksum offload RX %s TX %s, MAC %02x:%02x:%02x:%02x:%02x:%02x",
           port->role, id, port->name.c_str(), port->driver.c_str(), queues, rx_desc, tx_desc,
           port->mtu,
           !port->rss ? "off" : port->symmetric_key ? "symmetric" : "device key (not symmetric)",
           RxCksumText(*port), port->tx_cksum_offload ? "ipv4+tcp" : "none", port->mac[0],
           port->mac[1], port->mac[2], port->mac[3], port->mac[4], port->mac[5]);
  if (queues > 1 && !port->rss) {
    MOAT_LOG(INFO,
             "%s port %u has no RSS: the device must spread flows itself, symmetrically "
             "(net_af_packet qpairs use the kernel's symmetric fanout hash)",
             port->role, id);
  }
  return absl::OkStatus();
}

void StopPort(Port* port) {
  if (!port->started) return;
  rte_eth_dev_stop(port->id);
  rte_eth_dev_close(port->id);
  port->started = false;
}

}  // namespace moat::dataplane
