#include "moat/net/tcp_options.h"

#include "moat/net/bytes.h"

namespace moat::net {

ParseError ParseTcpOptions(const uint8_t* tcp, uint16_t tcp_header_len, TcpOptions* out) {
  *out = TcpOptions{};
  uint16_t i = kTcpHeaderLen;
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
