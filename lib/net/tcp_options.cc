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

bool TcpOptionWriter::Room(size_t n) {
  if (overflow_ || len_ + n > cap_) {
    overflow_ = true;
    return false;
  }
  return true;
}

TcpOptionWriter& TcpOptionWriter::Mss(uint16_t mss) {
  if (Room(4)) {
    buf_[len_] = kOptMss;
    buf_[len_ + 1] = 4;
    StoreBe16(buf_ + len_ + 2, mss);
    len_ += 4;
  }
  return *this;
}

TcpOptionWriter& TcpOptionWriter::WindowScale(uint8_t shift) {
  if (Room(3)) {
    buf_[len_] = kOptWscale;
    buf_[len_ + 1] = 3;
    buf_[len_ + 2] = shift;
    len_ += 3;
  }
  return *this;
}

TcpOptionWriter& TcpOptionWriter::SackPermitted() {
  if (Room(2)) {
    buf_[len_] = kOptSackPermitted;
    buf_[len_ + 1] = 2;
    len_ += 2;
  }
  return *this;
}

TcpOptionWriter& TcpOptionWriter::Timestamps(uint32_t tsval, uint32_t tsecr) {
  if (Room(10)) {
    buf_[len_] = kOptTimestamps;
    buf_[len_ + 1] = 10;
    StoreBe32(buf_ + len_ + 2, tsval);
    StoreBe32(buf_ + len_ + 6, tsecr);
    len_ += 10;
  }
  return *this;
}

TcpOptionWriter& TcpOptionWriter::SackBlocks(const uint32_t* edges, int n) {
  if (n <= 0 || n > kMaxSackBlocks) {
    overflow_ = true;
    return *this;
  }
  const size_t bytes = 2 + 8 * static_cast<size_t>(n);
  if (Room(bytes)) {
    buf_[len_] = kOptSack;
    buf_[len_ + 1] = static_cast<uint8_t>(bytes);
    for (int k = 0; k < 2 * n; ++k) StoreBe32(buf_ + len_ + 2 + 4 * k, edges[k]);
    len_ += bytes;
  }
  return *this;
}

TcpOptionWriter& TcpOptionWriter::Nop() {
  if (Room(1)) buf_[len_++] = kOptNop;
  return *this;
}

size_t TcpOptionWriter::Finish() {
  while (!overflow_ && len_ % 4 != 0) Nop();
  return overflow_ || len_ > 40 ? 0 : len_;
}

}  // namespace moat::net
