#include "moat/net/packet.h"

#include "moat/net/tcp_options.h"

namespace moat::net {
namespace {

constexpr const char* kNames[] = {
#define MOAT_PARSE_ERROR_NAME(name, text) #name,
    MOAT_PARSE_ERRORS(MOAT_PARSE_ERROR_NAME)
#undef MOAT_PARSE_ERROR_NAME
};
constexpr const char* kTexts[] = {
#define MOAT_PARSE_ERROR_TEXT(name, text) text,
    MOAT_PARSE_ERRORS(MOAT_PARSE_ERROR_TEXT)
#undef MOAT_PARSE_ERROR_TEXT
};

// IPv6 extension headers that moat walks over (RFC 8200 §4). Anything else
// is treated as the upper layer: an unknown next header is passed through
// as "not TCP" rather than guessed at.
constexpr uint8_t kIpv6HopByHop = 0;
constexpr uint8_t kIpv6Routing = 43;
constexpr uint8_t kIpv6Fragment = 44;
constexpr uint8_t kIpv6DestOpts = 60;
constexpr int kMaxIpv6ExtHeaders = 8;

// "kTruncatedEthernet" -> "truncated_ethernet", built once.
struct SnakeNames {
  char names[kNumParseErrors][48];
  constexpr SnakeNames() : names() {
    for (size_t i = 0; i < kNumParseErrors; ++i) {
      const char* src = kNames[i] + 1;  // drop the 'k'
      size_t o = 0;
      for (size_t j = 0; src[j] != '\0' && o + 2 < sizeof(names[i]); ++j) {
        char c = src[j];
        if (c >= 'A' && c <= 'Z') {
          if (j != 0) names[i][o++] = '_';
          c = static_cast<char>(c - 'A' + 'a');
        }
        names[i][o++] = c;
      }
      names[i][o] = '\0';
    }
  }
};
constexpr SnakeNames kSnake;

}  // namespace

const char* ParseErrorName(ParseError e) {
  const auto i = static_cast<size_t>(e);
  return i < kNumParseErrors ? kSnake.names[i] : "unknown";
}

const char* ParseErrorText(ParseError e) {
  const auto i = static_cast<size_t>(e);
  return i < kNumParseErrors ? kTexts[i] : "unknown";
}

ParseError ParseFrame(uint8_t* frame, uint16_t len, PacketView* v) {
  *v = PacketView{};
  v->frame = frame;
  v->frame_len = len;
  if (len < kEthernetHeaderLen) return ParseError::kTruncatedEthernet;
  uint16_t off = 12;
  uint16_t type = LoadBe16(frame + off);
  // An error found early that does not stop the walk: the caller still
  // learns what the frame carries (Reach).
  ParseError deferred = ParseError::kOk;
  while (type == kEtherTypeVlan || type == kEtherTypeQinQ) {
    if (off + 2 + kVlanTagLen > len) return ParseError::kTruncatedVlan;
    if (v->vlan_count == 2) {
      deferred = ParseError::kTooManyVlans;  // bounded by the frame length
    } else {
      v->vlan_tpid[v->vlan_count] = type;
      v->vlan_tci[v->vlan_count] = LoadBe16(frame + off + 2);
      ++v->vlan_count;
    }
    off += kVlanTagLen;
    type = LoadBe16(frame + off);
  }
  off += 2;
  v->ethertype = type;
  v->l3_offset = off;

  uint8_t proto;
  uint16_t l4;
  if (type == kEtherTypeIpv4) {
    if (off + kIpv4HeaderLen > len) return ParseError::kTruncatedIpv4;
    const uint8_t* ip = frame + off;
    if ((ip[0] >> 4) != 4) return ParseError::kIpv4BadVersion;
    v->l3 = L3::kIpv4;
    v->reach = Reach::kAddresses;
    const uint16_t ihl = static_cast<uint16_t>((ip[0] & 0x0f) * 4);
    if (ihl < kIpv4HeaderLen) return ParseError::kIpv4IhlTooSmall;
    const uint16_t total = LoadBe16(ip + 2);
    if (off + total > len) return ParseError::kIpv4TotalLengthTooLong;
    if (total < ihl) return ParseError::kIpv4TotalLengthTooShort;
    v->l3 = L3::kIpv4;
    v->l3_end = static_cast<uint16_t>(off + total);
    proto = ip[9];
    // MF set or a non-zero offset: a fragment (RFC 791 §3.1). Only the
    // first carries the TCP header, and moat does not reassemble.
    v->is_fragment = (LoadBe16(ip + 6) & 0x3fff) != 0;
    l4 = static_cast<uint16_t>(off + ihl);
  } else if (type == kEtherTypeIpv6) {
    if (off + kIpv6HeaderLen > len) return ParseError::kTruncatedIpv6;
    const uint8_t* ip = frame + off;
    if ((ip[0] >> 4) != 6) return ParseError::kIpv6BadVersion;
    v->l3 = L3::kIpv6;
    v->reach = Reach::kAddresses;
    const uint16_t payload = LoadBe16(ip + 4);
    if (off + kIpv6HeaderLen + payload > len) return ParseError::kIpv6PayloadTooLong;
    v->l3 = L3::kIpv6;
    v->l3_end = static_cast<uint16_t>(off + kIpv6HeaderLen + payload);
    proto = ip[6];
    l4 = static_cast<uint16_t>(off + kIpv6HeaderLen);
    for (int n = 0;; ++n) {
      if (proto != kIpv6HopByHop && proto != kIpv6Routing && proto != kIpv6DestOpts &&
          proto != kIpv6Fragment) {
        break;
      }
      if (n == kMaxIpv6ExtHeaders) return ParseError::kIpv6TooManyExtHeaders;
      if (l4 + 8 > v->l3_end) return ParseError::kIpv6ExtHeaderTruncated;
      const uint8_t* ext = frame + l4;
      if (proto == kIpv6Fragment) {
        // RFC 8200 §4.5: fixed 8 bytes. Even an atomic fragment (offset 0,
        // M=0) is a fragment to moat: no state is built from it.
        v->is_fragment = true;
        proto = ext[0];
        l4 = static_cast<uint16_t>(l4 + 8);
        break;
      }
      const uint16_t ext_len = static_cast<uint16_t>((ext[1] + 1) * 8);
      if (l4 + ext_len > v->l3_end) return ParseError::kIpv6ExtHeaderTruncated;
      proto = ext[0];
      l4 = static_cast<uint16_t>(l4 + ext_len);
    }
  } else {
    v->reach = Reach::kNotIp;
    return deferred;  // ARP, LLDP, ...: not ours to judge
  }
  v->l4_proto = proto;
  v->l4_offset = l4;
  if (proto != kIpProtoTcp || v->is_fragment) return deferred;

  if (l4 + kTcpHeaderLen > v->l3_end) return ParseError::kTruncatedTcp;
  v->reach = Reach::kPorts;
  const uint8_t* tcp = frame + l4;
  const uint16_t doff = static_cast<uint16_t>((tcp[12] >> 4) * 4);
  if (doff < kTcpHeaderLen) return ParseError::kTcpDataOffsetTooSmall;
  if (l4 + doff > v->l3_end) return ParseError::kTcpDataOffsetBeyondPacket;
  if (doff > kTcpHeaderLen) {
    const ParseError e = ParseTcpOptions(tcp, doff, &v->opts);
    if (e != ParseError::kOk) return e;
  }
  if (deferred != ParseError::kOk) return deferred;  // never claims TCP
  v->is_tcp = true;
  v->tcp_header_len = doff;
  v->payload_offset = static_cast<uint16_t>(l4 + doff);
  v->payload_len = static_cast<uint16_t>(v->l3_end - v->payload_offset);
  return ParseError::kOk;
}

namespace {
// One's complement has two zeros: a field of 0x0000 and one of 0xFFFF are
// the same checksum to a receiver that sums the whole header (RFC 1071
// §1; RFC 1624 §3 on how -0 arises from incremental updates). Senders do
// put 0xFFFF on the wire where a full computation gives 0x0000.
bool SameChecksum(uint16_t computed, uint16_t stored) {
  return computed == stored || (computed == 0x0000 && stored == 0xffff);
}
}  // namespace

bool VerifyIpv4HeaderChecksum(const PacketView& v) {
  const uint8_t* ip = v.ip();
  return SameChecksum(Ipv4HeaderChecksum(ip, (ip[0] & 0x0f) * 4u), LoadBe16(ip + 10));
}

namespace {
uint16_t ComputeTcpChecksum(const PacketView& v) {
  return v.ipv6() ? TcpChecksumV6(v.src_addr(), v.dst_addr(), v.tcp(), v.tcp_len())
                  : TcpChecksumV4(v.src_addr(), v.dst_addr(), v.tcp(), v.tcp_len());
}
}  // namespace

bool VerifyTcpChecksum(const PacketView& v) {
  return SameChecksum(ComputeTcpChecksum(v), v.tcp_checksum());
}

void FillIpv4HeaderChecksum(PacketView& v) {
  uint8_t* ip = v.ip();
  StoreBe16(ip + 10, Ipv4HeaderChecksum(ip, (ip[0] & 0x0f) * 4u));
}

void FillTcpChecksum(PacketView& v) { StoreBe16(v.tcp() + 16, ComputeTcpChecksum(v)); }

uint8_t IpEcn(const PacketView& v) {
  const uint8_t* ip = v.ip();
  // IPv6: version(4) | traffic class(8) | flow label(20); the class's low
  // two bits are bits 5..4 of the second byte.
  return static_cast<uint8_t>(v.ipv6() ? (ip[1] >> 4) & 3 : ip[1] & 3);
}

void ClearIpEcn(PacketView& v) {
  uint8_t* ip = v.ip();
  if (v.ipv6()) {
    ip[1] = static_cast<uint8_t>(ip[1] & ~0x30);
    return;
  }
  const uint16_t old_word = LoadBe16(ip);
  const uint16_t new_word = static_cast<uint16_t>(old_word & ~0x0003);
  if (old_word == new_word) return;
  StoreBe16(ip, new_word);
  StoreBe16(ip + 10, ChecksumUpdate16(LoadBe16(ip + 10), old_word, new_word));
}

void FillIpLength(PacketView& v) {
  if (v.ipv6()) {
    StoreBe16(v.ip() + 4, static_cast<uint16_t>(v.l3_end - v.l3_offset - kIpv6HeaderLen));
  } else {
    StoreBe16(v.ip() + 2, static_cast<uint16_t>(v.l3_end - v.l3_offset));
  }
}

}  // namespace moat::net
