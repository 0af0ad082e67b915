#pragma once
// A checked view of an Ethernet frame: ParseFrame() validates every length
// once, and afterwards no accessor can read outside the frame. Offsets, not
// pointers, so a view is small and can be rebuilt after the frame moves.

#include <cstddef>
#include <cstdint>

#include "moat/net/bytes.h"
#include "moat/net/checksum.h"
#include "moat/net/seqnum.h"

namespace moat::net {

// Every way a frame can be malformed, in the order the parser meets them.
#define MOAT_PARSE_ERRORS(X)                                                   \
  X(kOk, "ok")                                                                 \
  X(kTruncatedEthernet, "frame shorter than an Ethernet header")               \
  X(kTruncatedVlan, "802.1Q/802.1ad tag cut short")                            \
  X(kTooManyVlans, "more than two VLAN tags")                                  \
  X(kTruncatedIpv4, "IPv4 header cut short")                                   \
  X(kIpv4BadVersion, "IPv4 ethertype but version != 4")                        \
  X(kIpv4IhlTooSmall, "IPv4 IHL below 5")                                      \
  X(kIpv4TotalLengthTooLong, "IPv4 total length beyond the frame")             \
  X(kIpv4TotalLengthTooShort, "IPv4 total length below the header length")     \
  X(kTruncatedIpv6, "IPv6 header cut short")                                   \
  X(kIpv6BadVersion, "IPv6 ethertype but version != 6")                        \
  X(kIpv6PayloadTooLong, "IPv6 payload length beyond the frame")               \
  X(kIpv6ExtHeaderTruncated, "IPv6 extension header cut short")                \
  X(kIpv6TooManyExtHeaders, "more than 8 IPv6 extension headers")              \
  X(kTruncatedTcp, "TCP header cut short")                                     \
  X(kTcpDataOffsetTooSmall, "TCP data offset below 5")                         \
  X(kTcpDataOffsetBeyondPacket, "TCP data offset beyond the datagram")         \
  X(kTcpOptionTruncated, "TCP option kind without a length byte")              \
  X(kTcpOptionLengthTooSmall, "TCP option length 0 or 1")                      \
  X(kTcpOptionPastHeader, "TCP option runs past the header")                   \
  X(kTcpOptionBadLength, "TCP option length wrong for its kind")

enum class ParseError : uint8_t {
#define MOAT_PARSE_ERROR_ENUM(name, text) name,
  MOAT_PARSE_ERRORS(MOAT_PARSE_ERROR_ENUM)
#undef MOAT_PARSE_ERROR_ENUM
};

inline constexpr size_t kNumParseErrors = 0
#define MOAT_PARSE_ERROR_COUNT(name, text) +1
    MOAT_PARSE_ERRORS(MOAT_PARSE_ERROR_COUNT)
#undef MOAT_PARSE_ERROR_COUNT
    ;

// Stable snake_case name ("truncated_ethernet") for counters.
const char* ParseErrorName(ParseError e);
// Human description.
const char* ParseErrorText(ParseError e);

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;
inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoIcmpv6 = 58;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;
inline constexpr uint8_t kTcpEce = 0x40;
inline constexpr uint8_t kTcpCwr = 0x80;

inline constexpr uint16_t kEthernetHeaderLen = 14;
inline constexpr uint16_t kVlanTagLen = 4;
inline constexpr uint16_t kIpv4HeaderLen = 20;
inline constexpr uint16_t kIpv6HeaderLen = 40;
inline constexpr uint16_t kTcpHeaderLen = 20;
inline constexpr uint16_t kTcpMaxHeaderLen = 60;

// What a TCP segment's options say (RFC 9293 §3.2; parsed by
// ParseTcpOptions in tcp_options.h). All zero/false when there are none.
struct TcpOptions {
  bool has_mss = false;
  uint16_t mss = 0;
  bool has_wscale = false;
  uint8_t wscale = 0;  // clamped to 14 (RFC 7323 §2.3)
  bool sack_permitted = false;
  bool has_timestamps = false;
  uint32_t tsval = 0;
  uint32_t tsecr = 0;
  uint8_t ts_offset = 0;  // of TSval, from the TCP header start
  uint8_t sack_blocks = 0;
  uint8_t sack_offset = 0;  // of the first left edge, from the TCP header start
  bool has_fastopen = false;
  uint8_t fastopen_cookie_len = 0;
  uint8_t unknown_count = 0;
};

enum class L3 : uint8_t { kOther, kIpv4, kIpv6 };

// How far ParseFrame got, also when it returned an error: what a caller
// may still read of a malformed frame to decide whether it concerns it (a
// bump in the wire passes on whatever it does not protect, malformed or
// not). Each level includes the ones before it.
enum class Reach : uint8_t {
  kNone,       // not through the link layer, or an IP header cut short
  kNotIp,      // the link layer, every VLAN tag: the frame is not IP
  kAddresses,  // the IP addresses: l3, ip(), src_addr(), dst_addr()
  kPorts,      // the TCP header: tcp(), src_port(), dst_port()
};

struct PacketView {
  uint8_t* frame = nullptr;
  uint16_t frame_len = 0;
  uint8_t vlan_count = 0;
  uint16_t vlan_tci[2] = {};
  uint16_t vlan_tpid[2] = {};
  Reach reach = Reach::kNone;
  uint16_t ethertype = 0;  // innermost
  L3 l3 = L3::kOther;
  uint16_t l3_offset = 0;
  uint16_t l3_end = 0;  // end of the IP datagram; Ethernet padding follows
  uint8_t l4_proto = 0;
  bool is_fragment = false;
  bool is_tcp = false;
  uint16_t l4_offset = 0;
  uint16_t tcp_header_len = 0;
  uint16_t payload_offset = 0;
  uint16_t payload_len = 0;
  // Parsed once here (ParseFrame must walk them anyway to reject malformed
  // lists), so nobody parses them twice. Describes the options as they
  // were received: offsets stay right after in-place rewrites, values do
  // not.
  TcpOptions opts;

  uint8_t* ip() const { return frame + l3_offset; }
  uint8_t* tcp() const { return frame + l4_offset; }
  uint8_t* payload() const { return frame + payload_offset; }
  uint8_t addr_len() const { return l3 == L3::kIpv6 ? 16 : 4; }
  bool ipv6() const { return l3 == L3::kIpv6; }
  uint8_t* src_addr() const { return ip() + (ipv6() ? 8 : 12); }
  uint8_t* dst_addr() const { return ip() + (ipv6() ? 24 : 16); }
  uint8_t* src_mac() const { return frame + 6; }
  uint8_t* dst_mac() const { return frame; }

  uint16_t src_port() const { return LoadBe16(tcp()); }
  uint16_t dst_port() const { return LoadBe16(tcp() + 2); }
  SeqNum seq() const { return SeqNum(LoadBe32(tcp() + 4)); }
  SeqNum ack() const { return SeqNum(LoadBe32(tcp() + 8)); }
  uint8_t tcp_flags() const { return tcp()[13]; }
  uint16_t window() const { return LoadBe16(tcp() + 14); }
  uint16_t tcp_checksum() const { return LoadBe16(tcp() + 16); }
  uint16_t tcp_len() const { return static_cast<uint16_t>(l3_end - l4_offset); }
  // Sequence space the segment occupies: payload plus one each for SYN, FIN.
  uint32_t seg_len() const {
    return payload_len + ((tcp_flags() & kTcpSyn) ? 1 : 0) + ((tcp_flags() & kTcpFin) ? 1 : 0);
  }

  // In-place rewrites that keep the TCP checksum right incrementally.
  void RewriteTcp16(uint16_t offset, uint16_t v) {
    uint8_t* p = tcp() + offset;
    const uint16_t old = LoadBe16(p);
    StoreBe16(p, v);
    StoreTcpChecksum(offset, ChecksumUpdate16(SwapIfOdd(offset, tcp_checksum()), old, v));
  }
  void RewriteTcp32(uint16_t offset, uint32_t v) {
    uint8_t* p = tcp() + offset;
    const uint32_t old = LoadBe32(p);
    StoreBe32(p, v);
    StoreTcpChecksum(offset, ChecksumUpdate32(SwapIfOdd(offset, tcp_checksum()), old, v));
  }
  void SetSeq(SeqNum s) { RewriteTcp32(4, s.value()); }
  void SetAck(SeqNum s) { RewriteTcp32(8, s.value()); }
  void SetWindow(uint16_t w) { RewriteTcp16(14, w); }

 private:
  // A field at an odd offset (possible inside TCP options) straddles the
  // 16-bit words the checksum sums. One's-complement sums commute with a
  // byte swap (RFC 1071 §2(A)): in the byte-swapped domain such a field
  // adds up like an aligned one, so update there and swap back.
  static uint16_t SwapIfOdd(uint16_t offset, uint16_t csum) {
    return (offset & 1) ? __builtin_bswap16(csum) : csum;
  }
  void StoreTcpChecksum(uint16_t field_offset, uint16_t csum) {
    StoreBe16(tcp() + 16, SwapIfOdd(field_offset, csum));
  }
};

// Several in-place TCP field rewrites with one checksum update at the end
// (RFC 1624 eqn. 3 over the sum of all changes), for the splice's per-
// segment rewrites: PacketView::RewriteTcp32 updates the checksum field per
// field, and each update waits for the previous one's store. Fields at odd
// offsets (inside options) are summed in the byte-swapped domain, where
// they are aligned (RFC 1071 §2(A)), and swapped back once.
class TcpRewriter {
 public:
  static constexpr uint16_t kSeqOffset = 4;
  static constexpr uint16_t kAckOffset = 8;
  static constexpr uint16_t kWindowOffset = 14;

  explicit TcpRewriter(PacketView& v) : v_(v) {}
  TcpRewriter(const TcpRewriter&) = delete;
  TcpRewriter& operator=(const TcpRewriter&) = delete;
  ~TcpRewriter() { Finish(); }

  // The fields moat rewrites, by name (RFC 9293 §3.1 header layout).
  void SetSeq(SeqNum s) { Set32(kSeqOffset, s.value()); }
  void SetAck(SeqNum s) { Set32(kAckOffset, s.value()); }
  void SetWindow(uint16_t w) { Set16(kWindowOffset, w); }
  // A 32-bit value inside the options (a SACK edge, TSval, TSecr), at an
  // offset from TcpOptions (ts_offset, sack_offset), which may be odd.
  void SetOption32(uint16_t offset, uint32_t value) { Set32(offset, value); }

  // Any field, by offset from the TCP header start.
  void Set32(uint16_t offset, uint32_t value) {
    uint8_t* p = v_.tcp() + offset;
    const uint32_t old = LoadBe32(p);
    StoreBe32(p, value);
    Acc(offset) += static_cast<uint16_t>(~(old >> 16)) + static_cast<uint16_t>(~old & 0xffff) +
                   (value >> 16) + (value & 0xffff);
  }
  void Set16(uint16_t offset, uint16_t value) {
    uint8_t* p = v_.tcp() + offset;
    const uint16_t old = LoadBe16(p);
    StoreBe16(p, value);
    Acc(offset) += static_cast<uint16_t>(~old) + value;
  }
  // A 16-bit word the checksum covers outside the TCP header: the
  // pseudo-header's TCP length (RFC 9293 §3.1) of a segment that grows.
  void SetPseudoHeaderWord(uint16_t old_word, uint16_t new_word) {
    even_ += static_cast<uint16_t>(~old_word) + uint32_t{new_word};
  }
  // Writes the checksum; the destructor calls it if nobody did.
  void Finish() {
    if (even_ == 0 && odd_ == 0) return;
    uint32_t sum = static_cast<uint16_t>(~v_.tcp_checksum()) + even_ +
                   __builtin_bswap16(Fold(odd_));
    StoreBe16(v_.tcp() + 16, static_cast<uint16_t>(~Fold(sum)));
    even_ = odd_ = 0;
  }

 private:
  static uint16_t Fold(uint32_t s) {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(s);
  }
  uint32_t& Acc(uint16_t offset) { return (offset & 1) ? odd_ : even_; }

  PacketView& v_;
  uint32_t even_ = 0;
  uint32_t odd_ = 0;
};

// Parses Ethernet, up to two VLAN tags, IPv4/IPv6 (skipping IPv6 hop-by-hop,
// routing and destination-options headers) and TCP. Non-IP frames parse with
// l3 == kOther; IP that is not TCP, or a fragment, parses with is_tcp false.
// TCP options are checked for well-formedness too (ParseTcpOptions), so a
// kOk TCP view never carries a malformed option list.
// On an error, `reach` says what is still valid. Frames with more than two
// VLAN tags are walked to the end of their tags (only the first two are
// recorded) and the rest is parsed, so that kTooManyVlans comes with the
// addresses and ports when they are there.
ParseError ParseFrame(uint8_t* frame, uint16_t len, PacketView* out);

// The ECN field (RFC 3168 §5): the low two bits of the IPv4 TOS byte or of
// the IPv6 traffic class.
inline constexpr uint8_t kEcnNotEct = 0;
inline constexpr uint8_t kEcnEct1 = 1;
inline constexpr uint8_t kEcnEct0 = 2;
inline constexpr uint8_t kEcnCe = 3;
// For an IPv4 or IPv6 view.
uint8_t IpEcn(const PacketView& v);
// Sets the ECN field to Not-ECT and keeps the DSCP; the IPv4 header
// checksum is updated incrementally (RFC 1624). IPv6 has no header checksum
// and the traffic class is not in the TCP pseudo-header.
void ClearIpEcn(PacketView& v);

bool VerifyIpv4HeaderChecksum(const PacketView& v);
bool VerifyTcpChecksum(const PacketView& v);
void FillIpv4HeaderChecksum(PacketView& v);
void FillTcpChecksum(PacketView& v);
// Recomputes IP total/payload length from l3_end (after a resize).
void FillIpLength(PacketView& v);

}  // namespace moat::net
