#pragma once
// Port setup: queues, descriptor rings, symmetric RSS and what the device
// can offload. Control plane only.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

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
  bool tx_cksum_offload = false;
  bool started = false;
};

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
absl::Status StartPort(Port* port, uint16_t queues, uint16_t rx_desc, uint16_t tx_desc,
                       const std::vector<rte_mempool*>& pools);

void StopPort(Port* port);

}  // namespace moat::dataplane
