#pragma once
// What the NIC knows about a frame, passed between the dataplane and the
// engine without the engine seeing an mbuf (lib/proxy is DPDK-free):
//   in:  the NIC's RX checksum verdict (RX checksum offload), so a frame
//        the hardware already checked is not summed again in software;
//   out: for a frame the engine answered in place, whether it left the
//        checksums to the NIC (TX checksum offload) and where the headers
//        are, which is what the NIC needs to complete them.
// A caller that passes no FrameMeta gets software checksums both ways.

#include <cstdint>

namespace moat::proxy {

// One checksum's verdict from the NIC (DPDK: RTE_MBUF_F_RX_*_CKSUM_*).
enum class HwChecksum : uint8_t {
  kUnknown = 0,  // not checked (no offload, or a frame the NIC could not
                 // parse: stacked VLANs, IPv6 extension headers, ...):
                 // verify in software. DPDK's NONE maps here too.
  kGood,         // checked and correct: the software verify is skipped
  kBad,          // checked and wrong: dropped like a software failure
};

// Checksums a frame leaves for the NIC to fill (DPDK: RTE_MBUF_F_TX_*).
// l3_len == 0: the frame's checksums are complete, nothing to offload.
// Otherwise the IPv4 header checksum is 0 and the TCP checksum field holds
// the pseudo-header sum, folded and not complemented (what DPDK's
// rte_ipv4_phdr_cksum/rte_ipv6_phdr_cksum give).
struct TxChecksum {
  uint8_t l2_len = 0;  // Ethernet header and VLAN tags
  uint8_t l3_len = 0;  // IP header (moat's own: 20 or 40)
  bool ipv6 = false;

  bool offloaded() const { return l3_len != 0; }
};

struct FrameMeta {
  HwChecksum rx_ip = HwChecksum::kUnknown;  // IPv4 header checksum (IPv6 has none)
  HwChecksum rx_l4 = HwChecksum::kUnknown;  // TCP checksum
  TxChecksum tx;                            // set by the engine
};

}  // namespace moat::proxy
