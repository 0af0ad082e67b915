#pragma once
// Writes whole Ethernet/IP/TCP frames: the engine's generated packets
// (SYN-ACK, backend SYN and ACK, RST) and the tests' inputs.

#include <cstddef>
#include <cstdint>

#include "moat/net/packet.h"

namespace moat::net {

struct MacAddr {
  uint8_t b[6] = {};
};

// Who completes a built frame's checksums.
enum class Checksums : uint8_t {
  kFull,  // moat: every checksum is filled
  // The NIC (TX checksum offload): the IPv4 header checksum is left 0 and
  // the TCP checksum field holds the pseudo-header sum (addresses, protocol,
  // TCP length; folded, not complemented), as DPDK's TX_IP_CKSUM and
  // TX_TCP_CKSUM expect. The header and option words are not summed.
  kOffload,
};

struct TcpFrameSpec {
  MacAddr src_mac, dst_mac;
  uint8_t vlan_count = 0;
  uint16_t vlan_tci[2] = {};
  uint16_t vlan_tpid[2] = {0x8100, 0x8100};
  bool ipv6 = false;
  const uint8_t* src_addr = nullptr;  // 4 or 16 bytes
  const uint8_t* dst_addr = nullptr;
  uint8_t ttl = 64;
  uint8_t tos_tclass = 0;
  uint16_t ip_id = 0;
  uint16_t src_port = 0, dst_port = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  const uint8_t* options = nullptr;
  uint8_t options_len = 0;  // multiple of 4, at most 40
  const uint8_t* payload = nullptr;
  uint16_t payload_len = 0;
};

// Returns the frame length, or 0 if it does not fit in `cap` or the spec is
// invalid (options not a multiple of 4 or over 40 bytes). IPv4 gets DF set
// (moat's segments are sized by MSS, RFC 1191). All checksums are filled.
// `buf` may alias spec.payload/options only if they lie after the headers'
// end in the output; addresses are read before anything is written.
size_t BuildTcpFrame(uint8_t* buf, size_t cap, const TcpFrameSpec& spec,
                     Checksums checksums = Checksums::kFull);

// The TCP fields of a reply built by BuildReplyInPlace.
struct TcpReplySpec {
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  const uint8_t* options = nullptr;  // must not point into the frame
  uint8_t options_len = 0;           // multiple of 4, at most 40
};

// Turns the received TCP segment `v` into a reply to its sender, in place:
// MACs, addresses and ports swapped, VLAN tags and EtherType kept, the
// given TCP fields and options, no payload; the IP fields as BuildTcpFrame
// writes them (TTL/hop limit 64, IPv4 DF and ID 0, TOS/traffic class and
// flow label 0). All checksums are filled; the address sum is the same
// swapped, so it is computed once. The result is byte for byte what
// BuildTcpFrame makes from the swapped headers, without copying the headers
// that are already in place.
// Returns the frame length, or 0 when the reply cannot be made in place:
// `v` carries IPv4 options or IPv6 extension headers (the reply has
// neither), the options are invalid, or `cap` is too small. `v` describes
// the old frame afterwards; parse again to use it.
size_t BuildReplyInPlace(PacketView& v, size_t cap, const TcpReplySpec& r,
                         Checksums checksums = Checksums::kFull);

}  // namespace moat::net
