#pragma once
// ICMP errors that quote a TCP segment (RFC 792 for ICMPv4, RFC 4443 §2.4
// for ICMPv6): which segment they are about, and how to edit the quote.

#include <cstdint>

#include "moat/net/packet.h"

namespace moat::net {

// The quoted (offending) datagram's addresses and ports, and where its
// sequence number sits in the frame.
struct IcmpTcpQuote {
  uint8_t type = 0;
  uint8_t addr_len = 0;                // 4 or 16, the outer packet's family
  const uint8_t* src_addr = nullptr;  // the offending segment's source
  const uint8_t* dst_addr = nullptr;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint16_t seq_offset = 0;  // of the quoted seq field, from the frame start
};

// True when `v` (an IP packet that parsed with l4_proto ICMP or ICMPv6, not
// a fragment) is an ICMP error whose quote holds an IP header of the same
// family naming TCP, and at least the first 8 bytes of the TCP header
// (ports and seq): ICMPv4 destination unreachable (3), time exceeded (11),
// parameter problem (12); ICMPv6 types 1-4. A quote of a non-first
// fragment has no ports and is refused. Fills *q.
bool ParseIcmpTcpQuote(const PacketView& v, IcmpTcpQuote* q);

// Rewrites the quoted sequence number and updates the ICMP checksum
// incrementally (RFC 1624). The quoted TCP checksum is left alone: nobody
// checks it in an error quote, and the quote is usually truncated anyway.
void RewriteIcmpQuotedSeq(PacketView& v, const IcmpTcpQuote& q, uint32_t seq);

// Whether an IP packet that did not parse as TCP may still carry a TCP
// segment behind its next header: TCP itself (a fragment), AH (RFC 4302,
// either family), or any IPv6 extension header the parser does not skip
// (RFC 8200 §4; IANA's list). UDP, ICMP, ESP and the rest cannot open a TCP
// connection to a backend.
bool MayHideTcp(const PacketView& v);

}  // namespace moat::net
