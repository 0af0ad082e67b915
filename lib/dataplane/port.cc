#include "moat/dataplane/port.h"

#include <rte_errno.h>
#include <rte_ethdev.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "moat/dataplane/log.h"

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

absl::Status StartPort(Port* port, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
                       const std::vector<rte_mempool*>& pools) {
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
  // The engine keeps checksums right itself (RFC 1624 incremental updates
  // cost two adds, cheaper than filling offload metadata), so offloads are
  // only recorded here for the start-up report.
  port->tx_cksum_offload =
      (info.tx_offload_capa & (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM)) ==
      (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
  if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE) {
    // Safe here: every mbuf moat sends comes from one pool per socket,
    // with refcnt 1.
    conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
  }

  rc = rte_eth_dev_configure(id, queues, queues, &conf);
  if (rc != 0) return fail("rte_eth_dev_configure", rc);
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
  rc = rte_eth_promiscuous_enable(id);
  if (rc != 0 && rc != -ENOTSUP) {
    return fail("rte_eth_promiscuous_enable", rc);
  }
  MOAT_LOG(INFO,
           "%s port %u (%s, %s): %u queue pair(s), %u/%u descriptors, RSS %s, TX checksum "
           "offload %s, MAC %02x:%02x:%02x:%02x:%02x:%02x",
           port->role, id, port->name.c_str(), port->driver.c_str(), queues, rx_desc, tx_desc,
           !port->rss ? "off" : port->symmetric_key ? "symmetric" : "device key (not symmetric)",
           port->tx_cksum_offload ? "available (unused)" : "none", port->mac[0], port->mac[1],
           port->mac[2], port->mac[3], port->mac[4], port->mac[5]);
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
