#include "moat/net/tcp_options.h"

#include "moat/net/bytes.h"

namespace moat::net {

namespace {

// The two layouts nearly every segment carries, recognised by their first
// words so the general walk below has nothing (or only SACK blocks) left:
//   NOP NOP TS [NOP NOP SACK]        Linux, BSD, macOS: every segment once
//                                    timestamps are on (RFC 7323 App. A)
//   MSS SACK-perm TS NOP WS          Linux's SYN and SYN-ACK
// Either is a well-formed list, so taking it whole changes no verdict.
constexpr uint32_t kNopNopTs = 0x0101080a;
constexpr uint32_t kSackPermTs = 0x0402080a;
constexpr uint32_t kNopWs = 0x010303;
constexpr uint32_t kNopNopSack = 0x010105;

// Returns the offset after the prefix it recognised (kTcpHeaderLen if none).
inline uint16_t ParseCommonPrefix(const uint8_t* tcp, uint16_t tcp_header_len,
                                  TcpOptions* out) {
  const uint16_t room = static_cast<uint16_t>(tcp_header_len - kTcpHeaderLen);
  const uint8_t* o = tcp + kTcpHeaderLen;
  if (room >= 12 && LoadBe32(o) == kNopNopTs) {
    out->has_timestamps = true;
    out->tsval = LoadBe32(o + 4);
    out->tsecr = LoadBe32(o + 8);
    out->ts_offset = kTcpHeaderLen + 4;
    // Then often NOP NOP SACK with 1-3 blocks (RFC 2018 §3: with
    // timestamps at most 3 fit).
    if (room >= 12 + 4 + 8 && (LoadBe32(o + 12) >> 8) == kNopNopSack) {
      const uint8_t len = o[15];
      const uint8_t blocks = static_cast<uint8_t>((len - 2) / 8);
      if (len >= 10 && (len - 2) % 8 == 0 && blocks <= 3 && 14 + len <= room) {
        out->sack_blocks = blocks;
        out->sack_offset = kTcpHeaderLen + 16;
        return static_cast<uint16_t>(kTcpHeaderLen + 14 + len);
      }
    }
    return kTcpHeaderLen + 12;
  }
  if (room >= 20 && o[0] == kOptMss && o[1] == 4 && LoadBe32(o + 4) == kSackPermTs &&
      (LoadBe32(o + 16) >> 8) == kNopWs) {
    out->has_mss = true;
    out->mss = LoadBe16(o + 2);
    out->sack_permitted = true;
    out->has_timestamps = true;
    out->tsval = LoadBe32(o + 8);
    out->tsecr = LoadBe32(o + 12);
    out->ts_offset = kTcpHeaderLen + 8;
    out->has_wscale = true;
    out->wscale = o[19] > kMaxWscale ? kMaxWscale : o[19];
    return kTcpHeaderLen + 20;
  }
  return kTcpHeaderLen;
}

}  // namespace

ParseError ParseTcpOptions(const uint8_t* tcp, uint16_t tcp_header_len, TcpOptions* out) {
  *out = TcpOptions{};
  if (tcp_header_len == kTcpHeaderLen) return ParseError::kOk;
  uint16_t i = ParseCommonPrefix(tcp, tcp_header_len, out);
  while (i < tcp_header_len) {
    const uint8_t kind = tcp[i];
    if (kind == kOptEol) break;  // the rest is padding
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    if (i + 1 >= tcp_header_len) return ParseError::kTcpOptionTruncated;
    const uint8_t len = tcp[i + 1];
    // A length below 2 would loop forever or step backwards.
    if (len < 2) return ParseError::kTcpOptionLengthTooSmall;
    if (i + len > tcp_header_len) return ParseError::kTcpOptionPastHeader;
    const uint8_t* body = tcp + i + 2;
    switch (kind) {
      case kOptMss:
        if (len != 4) return ParseError::kTcpOptionBadLength;
        out->has_mss = true;
        out->mss = LoadBe16(body);
        break;
      case kOptWscale:
        if (len != 3) return ParseError::kTcpOptionBadLength;
        out->has_wscale = true;
        // RFC 7323 §2.3: use 14 for any larger shift (and log it; we count
        // nothing here, the value is still usable).
        out->wscale = body[0] > kMaxWscale ? kMaxWscale : body[0];
        break;
      case kOptSackPermitted:
        if (len != 2) return ParseError::kTcpOptionBadLength;
        out->sack_permitted = true;
        break;
      case kOptSack:
        // RFC 2018 §3: 8 bytes per block; at most 4 fit in 40 bytes.
        if ((len - 2) % 8 != 0 || len == 2 || (len - 2) / 8 > kMaxSackBlocks) {
          return ParseError::kTcpOptionBadLength;
        }
        out->sack_blocks = static_cast<uint8_t>((len - 2) / 8);
        out->sack_offset = static_cast<uint8_t>(i + 2);
        break;
      case kOptTimestamps:
        if (len != 10) return ParseError::kTcpOptionBadLength;
        out->has_timestamps = true;
        out->tsval = LoadBe32(body);
        out->tsecr = LoadBe32(body + 4);
        out->ts_offset = static_cast<uint8_t>(i + 2);
        break;
      case kOptFastOpen:
        // RFC 7413 §4.1.1: empty (cookie request) or a 4..16 byte cookie.
        if (len != 2 && (len < 6 || len > 18)) return ParseError::kTcpOptionBadLength;
        out->has_fastopen = true;
        out->fastopen_cookie_len = static_cast<uint8_t>(len - 2);
        break;
      case kOptExperimental:
        if (len >= 4 && LoadBe16(body) == kFastOpenExid) {
          out->has_fastopen = true;
          out->fastopen_cookie_len = static_cast<uint8_t>(len - 4);
        } else {
          ++out->unknown_count;
        }
        break;
      default:
        ++out->unknown_count;
        break;
    }
    i += len;
  }
  return ParseError::kOk;
}

}  // namespace moat::net
