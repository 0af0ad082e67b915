#include "moat/net/builder.h"

#include <cstring>

#include "moat/net/bytes.h"
#include "moat/net/checksum.h"
#include "moat/net/packet.h"

namespace moat::net {
namespace {

// Sum of n bytes (n even, small: addresses, options) as big-endian 16-bit
// words, inline; ChecksumAccumulate's call and fold cost more at this size.
inline uint32_t SumWords(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i < n; i += 2) sum += LoadBe16(p + i);
  return sum;
}

// The TCP pseudo-header (RFC 9293 §3.1) summed and folded but not
// complemented: what a NIC doing TX checksum offload starts from.
inline uint16_t PseudoHeaderSum(uint32_t addr_sum, size_t tcp_len) {
  return static_cast<uint16_t>(
      ~ChecksumFinish(addr_sum + kIpProtoTcp + static_cast<uint32_t>(tcp_len)));
}

}  // namespace

size_t BuildTcpFrame(uint8_t* buf, size_t cap, const TcpFrameSpec& s, Checksums checksums) {
  const bool full = checksums == Checksums::kFull;
  if (s.options_len % 4 != 0 || s.options_len > 40 || s.vlan_count > 2) return 0;
  const size_t l2 = kEthernetHeaderLen + kVlanTagLen * s.vlan_count;
  const size_t l3 = s.ipv6 ? kIpv6HeaderLen : kIpv4HeaderLen;
  const size_t tcp_len = kTcpHeaderLen + s.options_len + s.payload_len;
  const size_t total = l2 + l3 + tcp_len;
  if (total > cap || l3 + tcp_len > 0xffff) return 0;

  // Copy what may alias the output before the headers overwrite it.
  uint8_t src[16], dst[16];
  const size_t alen = s.ipv6 ? 16 : 4;
  std::memcpy(src, s.src_addr, alen);
  std::memcpy(dst, s.dst_addr, alen);
  // Both addresses, summed once for the IPv4 header and the pseudo-header.
  const uint32_t addr_sum = SumWords(src, alen) + SumWords(dst, alen);
  // Options without payload are summed here, from the source, before the
  // copies below may overwrite it (it may alias the output).
  const uint32_t options_sum = s.payload_len != 0 || !full ? 0 : SumWords(s.options, s.options_len);
  uint8_t* tcp = buf + l2 + l3;
  if (s.payload_len) std::memmove(tcp + kTcpHeaderLen + s.options_len, s.payload, s.payload_len);
  if (s.options_len) std::memmove(tcp + kTcpHeaderLen, s.options, s.options_len);

  std::memcpy(buf, s.dst_mac.b, 6);
  std::memcpy(buf + 6, s.src_mac.b, 6);
  size_t off = 12;
  for (int i = 0; i < s.vlan_count; ++i) {
    StoreBe16(buf + off, s.vlan_tpid[i]);
    StoreBe16(buf + off + 2, s.vlan_tci[i]);
    off += kVlanTagLen;
  }
  StoreBe16(buf + off, s.ipv6 ? kEtherTypeIpv6 : kEtherTypeIpv4);
  uint8_t* ip = buf + l2;
  if (s.ipv6) {
    StoreBe32(ip, (6u << 28) | (static_cast<uint32_t>(s.tos_tclass) << 20));
    StoreBe16(ip + 4, static_cast<uint16_t>(tcp_len));
    ip[6] = kIpProtoTcp;
    ip[7] = s.ttl;
    std::memcpy(ip + 8, src, 16);
    std::memcpy(ip + 24, dst, 16);
  } else {
    ip[0] = 0x45;
    ip[1] = s.tos_tclass;
    StoreBe16(ip + 2, static_cast<uint16_t>(l3 + tcp_len));
    StoreBe16(ip + 4, s.ip_id);
    StoreBe16(ip + 6, 0x4000);  // DF
    ip[8] = s.ttl;
    ip[9] = kIpProtoTcp;
    std::memcpy(ip + 12, src, 4);
    std::memcpy(ip + 16, dst, 4);
    // From the values, not by reading back the header just written with
    // small stores: wide loads of those stall on store forwarding.
    const uint32_t sum = (0x4500u | s.tos_tclass) + static_cast<uint32_t>(l3 + tcp_len) +
                         s.ip_id + 0x4000u + ((static_cast<uint32_t>(s.ttl) << 8) | kIpProtoTcp) +
                         addr_sum;
    StoreBe16(ip + 10, full ? ChecksumFinish(sum) : 0);
  }
  StoreBe16(tcp, s.src_port);
  StoreBe16(tcp + 2, s.dst_port);
  StoreBe32(tcp + 4, s.seq);
  StoreBe32(tcp + 8, s.ack);
  tcp[12] = static_cast<uint8_t>(((kTcpHeaderLen + s.options_len) / 4) << 4);
  tcp[13] = s.flags;
  StoreBe16(tcp + 14, s.window);
  StoreBe16(tcp + 18, 0);  // urgent pointer
  if (!full) {
    // The NIC sums the segment itself, starting from the pseudo-header sum.
    StoreBe16(tcp + 16, PseudoHeaderSum(addr_sum, tcp_len));
    return total;
  }
  // RFC 9293 §3.1: pseudo-header, header fields (from the values, as for
  // IPv4 above), then options and payload as copied into place.
  const uint8_t off_byte = static_cast<uint8_t>(((kTcpHeaderLen + s.options_len) / 4) << 4);
  uint32_t sum = addr_sum + kIpProtoTcp + static_cast<uint32_t>(tcp_len) + s.src_port +
                 s.dst_port + (s.seq >> 16) + (s.seq & 0xffff) + (s.ack >> 16) +
                 (s.ack & 0xffff) + ((static_cast<uint32_t>(off_byte) << 8) | s.flags) + s.window;
  if (s.payload_len) {
    sum = ChecksumAccumulate(tcp + kTcpHeaderLen, s.options_len + s.payload_len, sum);
  } else {
    sum += options_sum;
  }
  StoreBe16(tcp + 16, ChecksumFinish(sum));
  return total;
}

size_t BuildReplyInPlace(PacketView& v, size_t cap, const TcpReplySpec& r, Checksums checksums) {
  const bool full = checksums == Checksums::kFull;
  if (r.options_len % 4 != 0 || r.options_len > 40 || !v.is_tcp) return 0;
  const bool ipv6 = v.ipv6();
  const size_t l3 = ipv6 ? kIpv6HeaderLen : kIpv4HeaderLen;
  if (v.l4_offset != v.l3_offset + l3) return 0;
  const size_t tcp_len = kTcpHeaderLen + r.options_len;
  const size_t total = v.l4_offset + tcp_len;
  if (total > cap) return 0;

  uint8_t* f = v.frame;
  uint8_t mac[6];
  std::memcpy(mac, f, 6);
  std::memcpy(f, f + 6, 6);
  std::memcpy(f + 6, mac, 6);

  uint8_t* ip = f + v.l3_offset;
  uint32_t addr_sum;
  if (ipv6) {
    addr_sum = SumWords(ip + 8, 32);  // before the swap: no reads of fresh stores
    uint64_t a[2], b[2];
    std::memcpy(a, ip + 8, 16);
    std::memcpy(b, ip + 24, 16);
    std::memcpy(ip + 8, b, 16);
    std::memcpy(ip + 24, a, 16);
    StoreBe32(ip, 6u << 28);
    StoreBe16(ip + 4, static_cast<uint16_t>(tcp_len));
    ip[6] = kIpProtoTcp;
    ip[7] = 64;
  } else {
    addr_sum = SumWords(ip + 12, 8);
    uint32_t a, b;
    std::memcpy(&a, ip + 12, 4);
    std::memcpy(&b, ip + 16, 4);
    std::memcpy(ip + 12, &b, 4);
    std::memcpy(ip + 16, &a, 4);
    const uint32_t ip_total = static_cast<uint32_t>(l3 + tcp_len);
    StoreBe32(ip, 0x45000000u | ip_total);
    StoreBe32(ip + 4, 0x4000);  // ID 0, DF
    StoreBe32(ip + 8, (64u << 24) | (static_cast<uint32_t>(kIpProtoTcp) << 16));
    // From the values, as BuildTcpFrame does.
    const uint32_t sum = 0x4500u + ip_total + 0x4000u + ((64u << 8) | kIpProtoTcp) + addr_sum;
    StoreBe16(ip + 10, full ? ChecksumFinish(sum) : 0);
  }
  uint8_t* tcp = f + v.l4_offset;
  const uint16_t src_port = LoadBe16(tcp + 2);  // the reply's
  const uint16_t dst_port = LoadBe16(tcp);
  StoreBe16(tcp, src_port);
  StoreBe16(tcp + 2, dst_port);
  StoreBe32(tcp + 4, r.seq);
  StoreBe32(tcp + 8, r.ack);
  const uint8_t off_byte = static_cast<uint8_t>((tcp_len / 4) << 4);
  tcp[12] = off_byte;
  tcp[13] = r.flags;
  StoreBe16(tcp + 14, r.window);
  StoreBe16(tcp + 18, 0);
  if (r.options_len) std::memcpy(tcp + kTcpHeaderLen, r.options, r.options_len);
  if (!full) {
    StoreBe16(tcp + 16, PseudoHeaderSum(addr_sum, tcp_len));
    return total;
  }
  const uint32_t sum = addr_sum + kIpProtoTcp + static_cast<uint32_t>(tcp_len) + src_port +
                       dst_port + (r.seq >> 16) + (r.seq & 0xffff) + (r.ack >> 16) +
                       (r.ack & 0xffff) + ((static_cast<uint32_t>(off_byte) << 8) | r.flags) +
                       r.window + SumWords(r.options, r.options_len);
  StoreBe16(tcp + 16, ChecksumFinish(sum));
  return total;
}

}  // namespace moat::net
