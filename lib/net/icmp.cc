#include "moat/net/icmp.h"

#include "moat/net/bytes.h"
#include "moat/net/checksum.h"

namespace moat::net {

namespace {

constexpr uint8_t kIpProtoAh = 51;

}  // namespace

bool ParseIcmpTcpQuote(const PacketView& v, IcmpTcpQuote* q) {
  if (v.l3 == L3::kOther || v.is_fragment || v.l4_offset > v.l3_end) return false;
  const bool ipv6 = v.ipv6();
  if (v.l4_proto != (ipv6 ? kIpProtoIcmpv6 : kIpProtoIcmp)) return false;
  const uint8_t* icmp = v.frame + v.l4_offset;
  const uint16_t room = static_cast<uint16_t>(v.l3_end - v.l4_offset);
  if (room < 8) return false;
  const uint8_t type = icmp[0];
  // ICMPv4 errors: destination unreachable 3, time exceeded 11, parameter
  // problem 12. ICMPv6 errors: 1..4 (RFC 4443 §2.1: types below 128).
  if (ipv6 ? (type < 1 || type > 4) : (type != 3 && type != 11 && type != 12)) return false;
  const uint8_t* inner = icmp + 8;
  uint16_t inner_ihl;
  if (ipv6) {
    if (room < 8 + kIpv6HeaderLen + 8 || (inner[0] >> 4) != 6 || inner[6] != kIpProtoTcp) {
      return false;
    }
    inner_ihl = kIpv6HeaderLen;
  } else {
    if (room < 8 + kIpv4HeaderLen || (inner[0] >> 4) != 4 || inner[9] != kIpProtoTcp) {
      return false;
    }
    inner_ihl = static_cast<uint16_t>((inner[0] & 0x0f) * 4);
    // RFC 792: the quote holds the IP header and at least 8 bytes of data
    // (ports and seq); a first fragment only, or there are no ports.
    if (inner_ihl < kIpv4HeaderLen || room < 8 + inner_ihl + 8 ||
        (LoadBe16(inner + 6) & 0x1fff) != 0) {
      return false;
    }
  }
  const uint8_t* tcp = inner + inner_ihl;
  q->type = type;
  q->addr_len = ipv6 ? 16 : 4;
  q->src_addr = inner + (ipv6 ? 8 : 12);
  q->dst_addr = inner + (ipv6 ? 24 : 16);
  q->src_port = LoadBe16(tcp);
  q->dst_port = LoadBe16(tcp + 2);
  q->seq_offset = static_cast<uint16_t>(tcp + 4 - v.frame);
  return true;
}

void RewriteIcmpQuotedSeq(PacketView& v, const IcmpTcpQuote& q, uint32_t seq) {
  uint8_t* field = v.frame + q.seq_offset;
  uint8_t* csum = v.frame + v.l4_offset + 2;
  const uint32_t old = LoadBe32(field);
  StoreBe32(field, seq);
  // The seq sits at an even offset of the ICMP message (8 + IHL + 4), so it
  // is two aligned 16-bit words of the checksum (ICMPv6's pseudo-header
  // does not change).
  StoreBe16(csum, ChecksumUpdate32(LoadBe16(csum), old, seq));
}

bool MayHideTcp(const PacketView& v) {
  if (v.l3 == L3::kOther) return false;
  switch (v.l4_proto) {
    case kIpProtoTcp:
    case kIpProtoAh:
      return true;
    // IPv6 extension headers: hop-by-hop 0, routing 43, fragment 44,
    // destination options 60, mobility 135, HIP 139, shim6 140,
    // experimental 253/254.
    case 0:
    case 43:
    case 44:
    case 60:
    case 135:
    case 139:
    case 140:
    case 253:
    case 254:
      return v.ipv6();
    default:
      return false;
  }
}

}  // namespace moat::net
